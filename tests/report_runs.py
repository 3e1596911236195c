"""Small constructed runs for the report's tests: a self-play run and a replay run (the replay format of
CONTRACT.md), written as files with the metrics.json that `userlm evaluate` would write."""

from __future__ import annotations

import json
from pathlib import Path

# A turn that would close the report's <script> element if the embedded JSON were not escaped.
NASTY = "see </script><script>window.__pwned = 1</script> & <b>bold</b>"


def _ci(value, lo=None, hi=None, n=4):
    return {"value": value, "ci_low": lo, "ci_high": hi, "n": n}


def _write(run: Path, records: list[dict], metrics: dict, p_ai: list[float], words: list[int]) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "transcripts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    report = {"label": run.name, "run_dir": str(run), "user_model": f"prompted:{run.name}", "metrics": metrics,
              "p_ai_run": p_ai, "p_ai_reference": [0.1, 0.2, 0.3, 0.15, 0.6, 0.05],
              "turn_words_run": words, "turn_words_reference": [3, 7, 12, 5, 40, 2],
              "conversation_turns_reference": [1, 2, 2, 3, 1, 4]}
    (run / "metrics.json").write_text(json.dumps(report))
    return run


def self_play_run(root: Path) -> Path:
    records = []
    for scenario, n_turns in (("recipe", 2), ("greeting", 1)):
        for sample in range(2):
            turns = []
            for k in range(n_turns):
                text = NASTY if (scenario, sample, k) == ("recipe", 0, 0) else f"{scenario} user turn {k} of {sample}"
                turns += [{"role": "user", "text": text, "tokens": 5, "truncated": k == 1},
                          {"role": "assistant", "text": f"assistant reply {k}"}]
            records.append({"scenario_id": f"smoke-{scenario}", "sample": sample, "seed": sample,
                            "stop_reason": "user_ended" if sample else "max_turns", "turns": turns})
    p_ai = [0.9, 0.4, 0.2, 0.7, 0.8, 0.3]
    metrics = {"human_likeness": {"run": _ci(0.45, 0.3, 0.6), "reference": _ci(0.78, 0.7, 0.85)},
               "turn_length_w1": {"run": _ci(12.5, 8.0, 16.0)},
               "termination_rate": {"run": _ci(0.5, 0.1, 0.9), "reference": _ci(1.0)}}
    return _write(root / "self-play", records, metrics, p_ai, [len(t.split()) for r in records for t in
                                                                [x["text"] for x in r["turns"] if x["role"] == "user"]])


def replay_run(root: Path) -> Path:
    real = [{"role": "user", "text": "how do I boil an egg"}, {"role": "assistant", "text": "Put it in water."},
            {"role": "user", "text": "how long"}, {"role": "assistant", "text": "About 8 minutes."}]
    points = [{"index": 0, "real": real[0]["text"], "generated": "egg boiling how", "ended": False,
               "person_ended": None, "decision": False, "truncated": False, "tokens": 4},
              {"index": 2, "real": "how long", "generated": None, "ended": True, "person_ended": False,
               "decision": True, "truncated": False, "tokens": 0},
              {"index": 4, "real": None, "generated": "thanks!", "ended": False, "person_ended": True,
               "decision": True, "truncated": False, "tokens": 2}]
    turns = [{"role": "user", "text": "egg boiling how", "tokens": 4, "truncated": False, "real": real[0]["text"]},
             real[1], real[3], {"role": "user", "text": "thanks!", "tokens": 2, "truncated": False, "real": None}]
    record = {"scenario_id": "replay:test", "sample": 0, "conversation_id": "sharegpt-42", "stop_reason": "replayed",
              "seed": 0, "turns": turns, "real_turns": real, "points": points, "scenario_intent": None,
              "user_told_intent": False, "end_recorded": True}
    metrics = {"human_likeness": {"run": _ci(0.7, 0.5, 0.9), "reference": _ci(0.78, 0.7, 0.85)},
               "turn_length_w1": {"run": _ci(3.0, 1.0, 5.0)}}
    return _write(root / "replay", [record], metrics, [0.35, 0.1], [3, 1])
