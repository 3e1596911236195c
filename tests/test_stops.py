"""Fast tier: a self-play user that ends before writing a turn is counted apart (evaluators/stops.py), and left
out of termination_rate, while a user that ends after speaking still counts as ending."""

from evaluators.metrics import termination_rate
from evaluators.reference import transcript_units
from evaluators.stops import MEANING, stop_reason, stop_reasons, stops_markdown


def record(sample, stop, user_texts):
    turns = [{"role": "assistant", "text": "Hi! How can I help?"}]
    for text in user_texts:
        turns += [{"role": "user", "text": text}, {"role": "assistant", "text": "Sure."}]
    return {"scenario_id": "s", "sample": sample, "stop_reason": stop, "turns": turns}


def test_an_end_before_the_first_turn_is_not_a_choice_to_end():
    records = [record(0, "user_ended", []), record(1, "user_ended", ["thanks, bye"]),
               record(2, "max_turns", ["a", "b", "c"])]
    assert [stop_reason(r) for r in records] == ["ended_before_speaking", "user_ended", "max_turns"]
    assert stop_reasons(records) == {"ended_before_speaking": 1, "max_turns": 1, "user_ended": 1}
    units = transcript_units(records)
    assert [u["ended_by_user"] for u in units] == [None, True, False]
    assert termination_rate(units) == 0.5  # 1 of the 2 conversations the user spoke in, not 2 of 3
    assert MEANING["ended_before_speaking"] in stops_markdown([{"label": "run", "stop_reasons": stop_reasons(records)}])


def test_the_report_data_reads_the_same_stop_reasons(tmp_path):
    import json

    from evaluators.report_data import run_data

    records = [record(0, "user_ended", []), record(1, "user_ended", ["thanks, bye"])]
    (tmp_path / "transcripts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    data = run_data({"label": "run"}, tmp_path)
    assert data["stop_reasons"] == {"ended_before_speaking": 1, "user_ended": 1}
    assert data["end_turns"] == [1]  # the user that never spoke did not end at a turn
