"""echo_rate on constructed conversations: a user turn that copies 8+ consecutive words of an earlier assistant
turn echoes; 7 words, words from a later turn, or a run across two turns do not. People's row comes from the
same contexts (replay points, or the matched real conversations of a self-play run)."""

import math

import pytest

from evaluators import metrics as M
from evaluators.echo import echo_rate, people_before
from evaluators.like_for_like import attach_sides, people_units
from evaluators.reference import transcript_units
from userlm.echo import echoes

AI = "The capital of France is Paris, a city known for its museums and its food."


def test_echoes_counts_runs_of_eight_words_within_one_turn():
    assert echoes("ok so the capital of France is Paris, a city known for... what else?", [AI])
    assert echoes("THE CAPITAL OF FRANCE IS PARIS A CITY!!", [AI])  # case and punctuation do not hide a copy
    assert not echoes("the capital of France is Paris, a town", [AI])  # 7 words in a row
    assert not echoes("its museums and its food. Tell me more", [AI, "Tell me more about the city please ok"])
    # a run that would span two assistant turns is no copy of either
    assert not echoes("a b c d e f g h", ["a b c d", "e f g h"])
    assert echoes("x a b c d e f g h", ["a b c d e f g h"]) and not echoes("", [AI])


def record(turns, **extra):
    return {"scenario_id": "s", "sample": 0, "stop_reason": "max_turns", "turns": turns, **extra}


def test_echo_rate_reads_only_assistant_turns_before_each_user_turn():
    turns = [{"role": "user", "text": AI}, {"role": "assistant", "text": AI},  # the first user turn came first
             {"role": "user", "text": "so " + AI}, {"role": "user", "text": "thanks, bye"}]
    units = transcript_units([record(turns)])
    assert units[0]["assistant_before"] == [[], [AI], [AI]]
    assert echo_rate(units) == pytest.approx(1 / 3)
    assert M.METRICS["echo_rate"].statistic(M.Inputs())(units) == pytest.approx(1 / 3)
    assert M.METRICS["echo_rate"].direction == 0 and M.METRICS["echo_rate"].reference_row
    assert math.isnan(echo_rate([{"user_turns": ["x"], "ended_by_user": None}]))  # no contexts: not scored


def test_replay_people_row_uses_the_real_contexts():
    real = [{"role": "user", "text": "hi"}, {"role": "assistant", "text": AI},
            {"role": "user", "text": "you said: " + AI}, {"role": "assistant", "text": "ok"}]
    points = [{"index": 0, "real": "hi", "generated": "hello", "decision": False, "person_ended": False},
              {"index": 2, "real": real[2]["text"], "generated": "cool", "decision": True, "person_ended": False},
              {"index": 4, "real": None, "generated": None, "ended": True, "decision": True, "person_ended": True}]
    turns = [{"role": "user", "text": "hello"}, real[1], {"role": "user", "text": "cool"}, real[3]]
    rec = record(turns, points=points, real_turns=real, stop_reason="replayed")
    assert people_before(rec) == [[], [AI]]
    units = transcript_units([rec])
    attach_sides(units)
    assert echo_rate(units) == 0 and echo_rate(people_units(units)) == pytest.approx(1 / 2)


def test_stop_reasons_are_counted_with_the_guardrails_that_fired():
    from evaluators.stops import stop_reasons, stops_markdown

    reasons = stop_reasons([{"stop_reason": s} for s in ("max_turns", "user_ended", "max_turns", "empty_turn")])
    assert reasons == {"max_turns": 2, "empty_turn": 1, "user_ended": 1} and list(reasons)[0] == "max_turns"
    md = stops_markdown([{"label": "a", "stop_reasons": reasons,
                          "guardrails": {"options": {"min_turns": 2}, "fired": {"min_turns": 3}}}])
    assert "| a | 4 | 2 (50%) | 1 (25%) | 1 (25%) |" in md and "- a: user guardrails min_turns=2: min_turns 3" in md
    assert stops_markdown([{"label": "old", "metrics": {}}]) == ""  # a metrics.json written before them
