"""Fast tier: `simulate --replay` on the tiny real-architecture model of conftest.py (and a scripted batch backend
where a behaviour needs a user that ends or must show its prompts): the run format, seeds, --resume, intents in
the system prompt, end decisions at each point, long histories cut and counted, bad input."""

import json

import pytest
from conftest import cli, one_line_error, sharegpt_file

from simulator.run import SimulationConfig, simulate
from userlm import END_OF_CONVERSATION
from userlm.data.intents import INTENTS_FILE
from userlm.data.prepare import PrepareConfig, prepare, read_split
from userlm.io import UserError, append_jsonl
from userlm.records import end_decisions, load_run, paired_turns


@pytest.fixture
def data_dir(tmp_path):
    """ShareGPT (it records where people stopped): 12 conversations of 2-3 human turns, a third of them held
    out, intents for every test conversation but one."""
    records = [(f"c{i}", [("human", f"hey, can you help me plan a trip to city {i} for {i + 2} days"),
                          ("gpt", f"Sure! Here is a plan for city {i}."),
                          ("human", f"cheaper please, i only have {100 * i} dollars"),
                          ("gpt", "Here is a cheaper plan."), *([("human", "thanks!")] if i % 3 == 0 else [])])
               for i in range(12)]
    out = tmp_path / "data"
    prepare(PrepareConfig(sources=[sharegpt_file(tmp_path / "s.json", records)], out=str(out),
                          validation_fraction=0.2, test_fraction=0.4))
    for ex in read_split(out, "test")[1:]:
        append_jsonl(out / INTENTS_FILE, {"example_id": ex["id"], "split": "test", "key": ex["id"], "writer": "t",
                                          "intent": f"You want a cheap trip plan ({ex['id']}).", "flags": []})
    return out


def replay(tiny_model, data_dir, out, *extra, user=None, **kw):
    from userlm.config import load_config

    cfg = load_config(SimulationConfig, None, [f"replay={data_dir}", f"out={out}", f"user={user or 'prompted:' + tiny_model}",
                                               "batch_size=3", *extra])
    return simulate(cfg, **kw)


def texts(out):
    """Each conversation's generated turns, by sample (a resumed run appends in the order conversations end)."""
    return {r["sample"]: [p["generated"] for p in r["points"]] for r in load_run(out)[1]}


def test_replay_writes_the_run_format_is_seeded_and_resumes(tiny_model, data_dir, tmp_path):
    out = replay(tiny_model, data_dir, tmp_path / "a", "limit=3")
    info, records = load_run(out)
    test = read_split(data_dir, "test")
    assert info["mode"] == "replay" and info["total_conversations"] == len(records) == 3 < len(test)
    assert info["replay"]["data_content_hash"] and info["config"]["replay"] == str(data_dir)
    assert [r["sample"] for r in records] == list(range(len(records)))
    by_id = {ex["id"]: ex for ex in test}
    for r in records:
        ex = by_id[r["conversation_id"]]
        assert r["scenario_id"] == "replay:test" and r["stop_reason"] == "replayed" and r["end_recorded"]
        assert r["real_turns"] == [{"role": m["role"], "text": m["content"]} for m in ex["messages"]]
        users = [i for i, m in enumerate(ex["messages"]) if m["role"] == "user"]
        final = [len(ex["messages"])] if ex["messages"][-1]["role"] == "assistant" else []
        assert [p["index"] for p in r["points"]] == users + final
        assert [p["decision"] for p in r["points"]] == [False] + [True] * (len(users) - 1 + len(final))
        assert [p["person_ended"] for p in r["points"]] == [False] * len(users) + [True] * len(final)
        assert all(p["real"] == (ex["messages"][p["index"]]["content"] if p["index"] < len(ex["messages"]) else None)
                   for p in r["points"])
        # the real AI turns in place, the model's turn at each real human turn it wrote
        written = [p for p in r["points"] if p["real"] is not None and p["generated"] is not None]
        assert [t["text"] for t in r["turns"] if t["role"] == "user"] == [p["generated"] for p in written]
        assert [t["real"] for t in r["turns"] if t["role"] == "user"] == [p["real"] for p in written]
        assert [t["text"] for t in r["turns"] if t["role"] == "assistant"] == [
            m["content"] for m in ex["messages"] if m["role"] == "assistant"]
    assert any(p["tokens"] > 0 for r in records for p in r["points"])
    assert texts(replay(tiny_model, data_dir, tmp_path / "b", "limit=3")) == texts(out)  # same seed, same text
    other_seed = load_run(replay(tiny_model, data_dir, tmp_path / "c", "limit=3", "seed=1"))[1]
    assert {r["sample"]: [p["generated"] for p in r["points"]] for r in other_seed} != texts(out)
    # --limit is a seeded choice of trees, the same for every seed: two seeds replay the same contexts
    assert [r["conversation_id"] for r in other_seed] == [r["conversation_id"] for r in records]
    # evaluate reads it like any run
    from evaluators.run import evaluate_run

    report = evaluate_run(str(out), reference=str(data_dir), evaluators="behaviour,diversity")
    assert report["conversations"] == len(records) and report["stop_reasons"] == {"replayed": len(records)}
    assert "reference" in report["metrics"]["echo_rate"]  # people's echo_rate in the same contexts beside the run's

    # killed mid-write: --resume finishes the rest once, with the uninterrupted run's text
    lines = (out / "transcripts.jsonl").read_text().splitlines(keepends=True)
    (out / "transcripts.jsonl").write_text(lines[0] + lines[1][:40])
    with pytest.raises(UserError, match="--resume"):
        replay(tiny_model, data_dir, out, "limit=3")
    replay(tiny_model, data_dir, out, "limit=3", resume=True)
    assert texts(out) == texts(tmp_path / "b") and len(load_run(out)[1]) == len(records)
    with pytest.raises(UserError, match="different config"):
        replay(tiny_model, data_dir, out, "limit=3", "seed=5", resume=True)


@pytest.fixture
def scripted(monkeypatch):
    """A batch backend that answers every prompt with `reply` and keeps the prompts it was given."""
    import userlm.backends as backends
    from userlm.backends import BatchBackend, Generation

    class Scripted(BatchBackend):
        reply, prompts = END_OF_CONVERSATION, []
        tokenizer = None

        def __init__(self, model: str):
            pass

        def generate_batch(self, requests):
            Scripted.prompts += [r.messages for r in requests]
            return [Generation(Scripted.reply, 2) for _ in requests]

        def masked_loglikelihood(self, encoded, batch_tokens=None):
            raise NotImplementedError

    monkeypatch.setitem(backends._REGISTRY, "scripted", Scripted)
    monkeypatch.setattr(backends, "_CACHE", {})
    return Scripted


def test_end_decisions_and_intents_reach_the_users_system_prompt(tiny_model, data_dir, tmp_path, scripted):
    intents = {json.loads(line)["example_id"]: json.loads(line)["intent"]
               for line in (data_dir / INTENTS_FILE).read_text().splitlines()}
    out = replay(tiny_model, data_dir, tmp_path / "ends", "backend=scripted")
    for r in load_run(out)[1]:
        assert all(p["ended"] and p["generated"] is None for p in r["points"])  # a user that always ends
        # one end decision after each AI turn: the person went on, but after the last AI turn, where they stopped
        final = len(r["real_turns"])
        assert end_decisions(r) == [(True, p["index"] == final) for p in r["points"][1:]] and not paired_turns(r)
        assert [t["role"] for t in r["turns"]] == ["assistant"] * len(r["turns"])  # no turn where it ended
        assert r["user_told_intent"] == (r["conversation_id"] in intents)
        assert r["scenario_intent"] == intents.get(r["conversation_id"])
    told = [p[0]["content"] for p in scripted.prompts if any(i in p[0]["content"] for i in intents.values())]
    assert len(told) == sum(len(r["points"]) for r in load_run(out)[1] if r["user_told_intent"])
    assert any("cheaper plan" in m["content"] for p in scripted.prompts for m in p)  # the real history before it

    scripted.reply, scripted.prompts = "ok so what next", []
    out = replay(tiny_model, data_dir, tmp_path / "goes-on", "backend=scripted", f"user=base:{tiny_model}",
                 "with_intent=true")
    records = load_run(out)[1]
    assert len(records) == len(read_split(data_dir, "test")) - 1  # the one without an intent left out
    assert not any(p["ended"] for r in records for p in r["points"])
    assert all(paired_turns(r) == [(p["real"], "ok so what next") for p in r["points"] if p["real"]] for r in records)
    assert not any(r["user_told_intent"] for r in records)  # an untrained base model is not told the intent
    assert not any(i in p[0]["content"] for p in scripted.prompts for i in intents.values())
    # max_turns: the first points of each conversation; the rest counted, the turns cut before them
    info, records = load_run(replay(tiny_model, data_dir, tmp_path / "first", "backend=scripted", "max_turns=1"))
    assert all(len(r["points"]) == 1 and [t["role"] for t in r["turns"]] == ["user", "assistant"] for r in records)
    assert info["replay"]["points_left_out"] == info["replay"]["points"] * 2  # two more points each here


def test_long_history_is_cut_from_the_left_and_counted(tiny_model, tmp_path):
    from simulator.replay_plan import fit_history, prompt_tokens
    from userlm.backends import get_backend

    records = [(f"c{i}", [("human", "first " * 150), ("gpt", "long answer " * 200), ("human", "short follow-up"),
                          ("gpt", "ok")]) for i in range(8)]
    data = tmp_path / "data"
    prepare(PrepareConfig(sources=[sharegpt_file(tmp_path / "s.json", records)], out=str(data),
                          validation_fraction=0, test_fraction=0.9))
    out = replay(tiny_model, data, tmp_path / "cut", "context_tokens=300")
    info, records = load_run(out)
    cut = [p for r in records for p in r["points"] if p["cut"]]
    assert info["replay"]["points_cut"] == len(cut) > 0
    assert all(p["index"] > 0 for p in cut)  # the opening has no history to cut
    tokenizer = get_backend("hf", tiny_model, quantization="none", dtype="auto", max_batch=32,
                            static_cache="auto").tokenizer
    history = [{"role": m["role"], "content": m["content"]} for m in read_split(data, "test")[0]["messages"]]
    messages, n = fit_history(tokenizer, history[:3], "sys", 140)
    assert n >= 1 and prompt_tokens(tokenizer, messages) <= 140 and messages[-1]["content"].endswith("follow-up")


def test_bad_replay_input_is_one_line(data_dir, tmp_path, capsys, tiny_model):
    base = ["simulate", "--user", f"prompted:{tiny_model}", "--out", tmp_path / "r"]
    code, err = cli(capsys, *base, "--replay", tmp_path / "nowhere")
    assert code == 2 and one_line_error(err, "nowhere", "manifest.json")
    code, err = cli(capsys, *base, "--replay", data_dir, "--split", "dev")
    assert code == 2 and one_line_error(err, "dev", "split")
    (data_dir / INTENTS_FILE).unlink()
    code, err = cli(capsys, *base, "--replay", data_dir, "--with-intent")
    assert code == 2 and one_line_error(err, "intents")
    code, err = cli(capsys, *base, "--replay", data_dir, "--context-tokens", "100")
    assert code == 2 and one_line_error(err, "context_tokens")
