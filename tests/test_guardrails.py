"""User-side guardrails (simulator/guardrails.py): each fires and is counted, in self-play and in --replay, on a
scripted user (whose every try is known) and on the tiny real model; off, nothing changes."""

import json
from collections import Counter
from pathlib import Path

import pytest
from test_tiny_replay import data_dir, replay  # noqa: F401 (a fixture)
from test_tiny_simulation import SMOKE, comparable, tiny_run

from simulator.guardrails import Guardrails, cut_words, opens_like_assistant, review
from simulator.run import SimulationConfig, simulate
from userlm import END_OF_CONVERSATION as END
from userlm.config import load_config
from userlm.io import UserError
from userlm.records import load_run

AI = "The capital of France is Paris, a city known for its museums and its food."


def test_review_each_guardrail_alone():
    fired = Counter()
    off = review(None, f"hi there {END}", True, 0, AI, 0, fired)
    assert (off.resample, off.text, off.ended, off.truncated) == (False, "hi there", True, True) and not fired
    g = Guardrails(min_turns=2)
    kept = review(g, f"thanks {END}", False, 0, AI, 0, fired)  # the text stands, the end does not
    assert (kept.resample, kept.text, kept.ended) == (False, "thanks", False) and fired["min_turns"] == 1
    assert review(g, f"thanks {END}", False, 1, AI, 0, fired).ended  # its 2nd turn: the end is taken
    assert review(g, END, False, 0, AI, 0, fired).resample  # a bare end: resampled
    last = review(g, END, False, 0, AI, 3, fired)  # ... until the retries are spent: an empty turn
    assert (last.resample, last.text, last.ended) == (False, "", False) and fired["exhausted"] == 1
    g = Guardrails(no_assistant_opening=1)
    assert opens_like_assistant("Sure! Here it is") and opens_like_assistant("  as an AI, I can't")
    assert not opens_like_assistant("surely not") and not opens_like_assistant("hey, here's my code")
    assert review(g, "Certainly, here is a plan.", False, 1, AI, 0, fired).resample
    assert not review(g, "what about rome?", False, 1, AI, 0, fired).resample
    g = Guardrails(echo_words=8)
    assert review(g, "so the capital of France is Paris, a city known for what?", False, 1, AI, 0, fired).resample
    assert not review(g, "so the capital of France is Paris? ok", False, 1, AI, 0, fired).resample
    capped = review(Guardrails(max_words=3), "one  two three four five", False, 1, AI, 0, fired)
    assert (capped.text, capped.truncated) == ("one  two three", True) and cut_words("a b", 3) == "a b"
    assert fired == Counter(min_turns=3, resampled=3, exhausted=1, assistant_opening=1, echo=1, word_cap=1)


def test_guardrail_options_are_checked():
    assert Guardrails.parse({}) is None and Guardrails.parse({"retries": 5}) is None  # nothing on
    assert Guardrails.parse({"max_words": 40}) == Guardrails(max_words=40)
    for bad in ({"max_word": 3}, {"echo_words": -1}, {"min_turns": "two"}):
        with pytest.raises(UserError, match="user_guardrails"):
            SimulationConfig(user_guardrails=bad)


@pytest.fixture
def scripted_users(monkeypatch):
    """`user_script`: a user whose k-th try at a history is script[k] (by the history's number of messages,
    the system prompt apart); `ai_script`: an assistant that always says AI."""
    import userlm.backends as backends
    from userlm.backends import BatchBackend, Generation

    class User(BatchBackend):
        script, tries = {}, Counter()
        tokenizer = None

        def __init__(self, model: str, **_):
            pass

        def generate_batch(self, requests):
            out = []
            for r in requests:
                turns = [m["content"] for m in r.messages if m["role"] != "system"]
                key = (len(turns), turns[0] if turns else "")
                replies = User.script.get(len(turns), [END])
                out.append(Generation(replies[min(User.tries[key], len(replies) - 1)], 3))
                User.tries[key] += 1
            return out

        def masked_loglikelihood(self, encoded, batch_tokens=None):
            raise NotImplementedError

    class Assistant(User):
        def generate_batch(self, requests):
            return [Generation(AI, 3) for _ in requests]

    monkeypatch.setitem(backends._REGISTRY, "user_script", User)
    monkeypatch.setitem(backends._REGISTRY, "ai_script", Assistant)
    monkeypatch.setattr(backends, "_CACHE", {})
    return User


def test_self_play_guardrails_fire_and_are_recorded(tiny_model, tmp_path, scripted_users):
    scripted_users.script = {0: ["Sure! I can help.", f"paris facts please {END}"],  # the user opens (no greeting)
                             1: ["Sure! I can help.", f"paris facts please {END}"],  # after the greeting
                             2: ["ok: " + AI, "one two three four five six seven"],
                             3: ["ok: " + AI, "one two three four five six seven"],
                             4: [f"bye {END}"], 5: [f"bye {END}"]}
    options = "{min_turns: 2, no_assistant_opening: 1, echo_words: 8, max_words: 5}"
    cfg = load_config(SimulationConfig, None, [f"scenarios={SMOKE}", f"out={tmp_path / 'g'}", "samples=1",
                                               "max_turns=5", "user_backend=user_script", "assistant_backend=ai_script",
                                               f"user=prompted:{tiny_model}", f"assistant={tiny_model}",
                                               f"user_guardrails={options}"])
    info, records = load_run(simulate(cfg))
    for r in records:
        users = [t for t in r["turns"] if t["role"] == "user"]
        assert [t["text"] for t in users] == ["paris facts please", "one two three four five", "bye"]
        assert [t["truncated"] for t in users] == [False, True, False] and r["stop_reason"] == "user_ended"
        assert r["guardrails"] == {"assistant_opening": 1, "resampled": 2, "min_turns": 1, "echo": 1, "word_cap": 1}
    assert info["guardrails"] == {"options": {"min_turns": 2, "no_assistant_opening": 1, "echo_words": 8,
                                              "max_words": 5},
                                  "fired": {"assistant_opening": 2, "echo": 2, "min_turns": 2, "resampled": 4,
                                            "word_cap": 2}}
    assert info["config"]["user_guardrails"]["max_words"] == 5


def test_replay_guardrails_fire_and_are_recorded(tiny_model, data_dir, tmp_path, scripted_users):  # noqa: F811
    scripted_users.script = {}  # every try a bare end marker
    out = replay(tiny_model, data_dir, tmp_path / "r", "backend=user_script", "limit=2",
                 "user_guardrails={min_turns: 9, retries: 2}")
    info, records = load_run(out)
    points = sum(len(r["points"]) for r in records)
    assert all(not p["ended"] and p["generated"] is None for r in records for p in r["points"])
    assert info["guardrails"]["fired"] == {"min_turns": 3 * points, "resampled": 2 * points, "exhausted": points}
    assert sum(r["guardrails"]["exhausted"] for r in records) == points


def test_tiny_model_with_guardrails_and_without(tiny_model, tmp_path):
    plain = tiny_run(tiny_model, tmp_path / "plain")
    records = load_run(plain)[1]
    assert "guardrails" not in json.loads((plain / "run.json").read_text()) and "guardrails" not in records[0]
    assert json.loads((plain / "run.json").read_text())["identity"]["config"].get("user_guardrails") is None
    # guardrails that never fire leave every text as it was (no seed moves)
    wide = tiny_run(tiny_model, tmp_path / "wide", "user_guardrails={max_words: 100000}")
    assert comparable([{k: v for k, v in r.items() if k != "guardrails"} for r in load_run(wide)[1]]) \
        == comparable(records)
    capped = tiny_run(tiny_model, tmp_path / "cap", "user_guardrails={max_words: 3, no_assistant_opening: 1}")
    info, records = load_run(capped)
    assert all(len(t["text"].split()) <= 3 for r in records for t in r["turns"] if t["role"] == "user")
    assert info["guardrails"]["fired"].get("word_cap", 0) == sum(r["guardrails"].get("word_cap", 0) for r in records) > 0
    assert Path(capped / "transcripts.jsonl").exists()
