"""What report.html draws, as one JSON object: each run's conversations (with the P(AI) of every scored user
turn and, in replay runs, the real person's turn beside the model's), turn lengths, where conversations end,
per-scenario results, and the same for the real people."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from evaluators.metrics import METRICS, words
from evaluators.stops import stop_reason
from evaluators.tables import fmt
from userlm.io import read_jsonl


def _records(run_dir: Path) -> list[dict]:
    path = run_dir / "transcripts.jsonl"
    return list(read_jsonl(path)) if path.exists() else []


def _user_texts(record: dict) -> list[str]:
    return [t["text"] for t in record.get("turns", []) if t.get("role") == "user"]


def _p_ai_by_turn(records: list[dict], p_ai: list | None) -> list[list]:
    """P(AI) per user turn of each record: evaluate scored the run's user turns in transcript order."""
    counts = [len(_user_texts(r)) for r in records]
    if not p_ai or len(p_ai) != sum(counts):
        return [[None] * n for n in counts]  # not scored by the classifier (or another run's scores): none shown
    out, i = [], 0
    for n in counts:
        out.append(list(p_ai[i: i + n]))
        i += n
    return out


def _replay_items(record: dict, p_of: dict) -> list[dict]:
    """The real conversation in order; at each real user turn the model's turn beside the person's."""
    real_turns = record.get("real_turns") or []
    points = {p["index"]: p for p in record.get("points", []) if isinstance(p, dict)}
    items = []
    for i, turn in enumerate(real_turns + [None]):
        point = points.get(i)
        if turn is not None and turn.get("role") != "user":
            items.append({"role": turn.get("role", "assistant"), "text": turn.get("text", "")})
        elif point is not None or turn is not None:
            point = point or {}
            generated = point.get("generated")
            items.append({"role": "user", "text": generated, "real": point.get("real", (turn or {}).get("text")),
                          "p_ai": p_of.get(generated), "ended": bool(point.get("ended")),
                          "person_ended": point.get("person_ended"), "truncated": bool(point.get("truncated"))})
    return items


def _end_turn(record: dict, items: list[dict] | None) -> int | None:
    """The user turn (1-based) at which the simulated user ended, or None where it did not end."""
    if items is not None:
        n = 0
        for item in items:
            if item["role"] == "user":
                if item.get("ended"):
                    return n + 1
                n += item.get("text") is not None
        return None
    return len(_user_texts(record)) if stop_reason(record) == "user_ended" else None


def run_data(report: dict, run_dir: Path) -> dict:
    records = _records(run_dir)
    p_turns = _p_ai_by_turn(records, report.get("p_ai_run"))
    conversations, scenarios = [], {}
    for record, ps in zip(records, p_turns):
        texts = _user_texts(record)
        p_of = dict(zip(texts, ps))
        replay = bool(record.get("points"))
        if replay:
            items = _replay_items(record, p_of)
        else:
            items, k = [], 0
            for t in record.get("turns", []):
                item = {"role": t.get("role"), "text": t.get("text", "")}
                if t.get("role") == "user":
                    item.update(p_ai=ps[k], truncated=bool(t.get("truncated")))
                    k += 1
                items.append(item)
        sid = str(record.get("scenario_id", "?"))
        cid = record.get("conversation_id") or f"{sid} #{record.get('sample', len(conversations))}"
        end_turn = _end_turn(record, items if replay else None)
        conversations.append({"id": str(cid), "scenario": sid, "stop": stop_reason(record) if "stop_reason" in record else "?",
                              "replay": replay, "end_turn": end_turn, "user_turns": len(texts),
                              "intent": record.get("scenario_intent"), "items": items})
        s = scenarios.setdefault(sid, {"n": 0, "user_turns": 0, "words": [], "p_ai": [], "ended": 0})
        s["n"] += 1
        s["user_turns"] += len(texts)
        s["words"] += [words(t) for t in texts]
        s["p_ai"] += [p for p in ps if p is not None]
        s["ended"] += end_turn is not None
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None
    per_scenario = {sid: {"conversations": s["n"], "mean_user_turns": round(s["user_turns"] / s["n"], 3),
                          "mean_turn_words": mean(s["words"]), "human_likeness":
                              None if not s["p_ai"] else round(1 - mean(s["p_ai"]), 4),
                          "ended_share": round(s["ended"] / s["n"], 4)} for sid, s in scenarios.items()}
    return {"label": report["label"], "user": str(report.get("user_model", "")),
            "mode": "replay" if any(c["replay"] for c in conversations) else "self-play",
            "turn_words": report.get("turn_words_run") or [], "p_ai": report.get("p_ai_run") or [],
            "stop_reasons": dict(Counter(c["stop"] for c in conversations)),
            "end_turns": [c["end_turn"] for c in conversations if c["end_turn"] is not None],
            "conversation_turns": [c["user_turns"] for c in conversations],
            "scenarios": per_scenario, "conversations": conversations}


def report_data(reports: list[dict], run_dirs: list[str], verdict: tuple[str, list[str]]) -> dict:
    from evaluators.verdict import PEOPLE, headline_names

    ref = next((r for r in reports if r.get("turn_words_reference")), {})
    return {
        "people": {"label": PEOPLE, "turn_words": ref.get("turn_words_reference") or [],
                   "p_ai": ref.get("p_ai_reference") or [],
                   "conversation_turns": ref.get("conversation_turns_reference") or []},
        "metrics": [{"name": m.name, "direction": m.direction, "description": m.description,
                     "values": {r["label"]: fmt(r["metrics"].get(m.name, {}).get("run")) for r in reports}}
                    for m in METRICS.values() if any(m.name in r["metrics"] for r in reports)],
        "headline": headline_names(reports), "verdict": {"summary": verdict[0], "lines": verdict[1]},
        "runs": [run_data(r, Path(d)) for r, d in zip(reports, run_dirs)],
    }


def script_json(data: dict) -> str:
    """JSON safe inside <script>: no '<', '>' or '&' survive, so no text in a turn can close the element."""
    return json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace(
        "&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
