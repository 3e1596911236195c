"""report.html and the terminal's short table, from small constructed runs (no model): the embedded data (P(AI)
per turn, the person's turn beside the model's in replay, where conversations end, per-scenario results), safe
escaping, the headline table with CIs and the verdict; every metric stays in report.md and the page."""

from __future__ import annotations

import json
import re

from report_runs import NASTY, replay_run, self_play_run


def _data(html: str) -> dict:
    blob = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S).group(1)
    return json.loads(blob)


def test_report_page_embeds_conversations_scores_and_replay_pairs(tmp_path):
    from evaluators.report import write_report

    runs = [self_play_run(tmp_path), replay_run(tmp_path)]
    md, page = write_report([str(r) for r in runs], str(tmp_path / "report"))
    html = page.read_text()
    # The turn with </script> in it neither ends the data element nor injects markup; it survives as text.
    assert "window.__pwned" not in html.split('id="report-data">')[0] and "<script>window" not in html
    data = _data(html)
    self_play, replay = data["runs"]
    first = self_play["conversations"][0]
    assert first["items"][0] == {"role": "user", "text": NASTY, "p_ai": 0.9, "truncated": False}
    assert [i.get("p_ai") for i in first["items"]] == [0.9, None, 0.4, None]
    assert self_play["stop_reasons"] == {"max_turns": 2, "user_ended": 2}
    assert self_play["end_turns"] == [2, 1] and self_play["mode"] == "self-play"
    assert self_play["scenarios"]["smoke-recipe"] == {"conversations": 2, "mean_user_turns": 2.0,
                                                      "mean_turn_words": 6.0, "human_likeness": 0.45,
                                                      "ended_share": 0.5}
    conv = replay["conversations"][0]
    assert replay["mode"] == "replay" and conv["id"] == "sharegpt-42" and conv["end_turn"] == 2
    users = [i for i in conv["items"] if i["role"] == "user"]
    assert [(u["text"], u["real"], u["ended"]) for u in users] == [
        ("egg boiling how", "how do I boil an egg", False), (None, "how long", True), ("thanks!", None, False)]
    assert users[0]["p_ai"] == 0.35 and users[2]["person_ended"] is True
    assert [i["text"] for i in conv["items"] if i["role"] == "assistant"] == ["Put it in water.", "About 8 minutes."]
    assert data["people"]["conversation_turns"] == [1, 2, 2, 3, 1, 4]
    # Every metric in the page's full table and report.md; the verdict on top of both.
    assert all(f"<code>{m}</code>" in html for m in ("human_likeness", "turn_length_w1", "termination_rate"))
    text = md.read_text()
    assert "## All metrics" in text and "termination_rate" in text and data["verdict"]["summary"] in text
    # how each conversation stopped: one row per run, each reason's count and share
    assert "## How conversations stopped" in text and "| max_turns (the turn cap) | user_ended" in text
    assert "| self-play | 4 | 2 (50%) | 2 (50%) | 0 (0%) |" in text and "| replay | 1 | 0 (0%) | 0 (0%) | 1 (100%) |" \
        in text
    assert '<td class="best">0.700' in html  # the run closest to people on a headline metric stands out
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # nothing fetched from a network


def test_report_without_transcripts_or_scores_still_renders(tmp_path):
    from evaluators.report import write_report

    run = self_play_run(tmp_path)
    (run / "transcripts.jsonl").unlink()
    report = json.loads((run / "metrics.json").read_text())
    del report["p_ai_run"]
    (run / "metrics.json").write_text(json.dumps(report))
    data = _data(write_report([str(run)], str(tmp_path / "report"))[1].read_text())
    assert data["runs"][0]["conversations"] == [] and data["runs"][0]["p_ai"] == []


def test_terminal_shows_headline_columns_with_cis_and_a_verdict(tmp_path):
    from rich.console import Console

    from evaluators.report import write_report

    console = Console(record=True, width=100)
    write_report([str(self_play_run(tmp_path)), str(replay_run(tmp_path))], str(tmp_path / "r"), console=console)
    out = console.export_text()
    lines = out.splitlines()
    people = next(i for i, line in enumerate(lines) if "real people" in line)
    assert people < next(i for i, line in enumerate(lines) if "self-play" in line)  # people first
    assert "[0.300, 0.600]" in out and "0.450" in out  # values with their CIs
    assert "Closest to people: replay on 2 of" in out
    assert "human_likeness: people 0.780, replay 0.700, next self-play 0.450" in out
    assert "all of them in" in out


def test_verdict_names_ties_and_a_single_run():
    from evaluators.verdict import verdict

    ci = lambda v: {"value": v, "ci_low": v - 0.1, "ci_high": v + 0.1}
    a = {"label": "a", "metrics": {"role_adherence": {"run": ci(0.5), "reference": ci(0.9)}}}
    b = {"label": "b", "metrics": {"role_adherence": {"run": ci(0.5)}}}
    summary, lines = verdict([a, b], ["role_adherence"])
    assert "tied on role_adherence" in summary and "tie between a, b" in lines[0]
    summary, lines = verdict([a], ["role_adherence"])
    assert summary.startswith("a against real people") and "(0.400 from people)" in lines[0]
