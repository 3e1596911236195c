"""Replay at the GPU engine's speed (issue 22): a conversation's points share their history's keys/values in the
static engine (`share_prefixes`, userlm/backends/slot_prefill.py), and every point's history is fitted from
per-message token counts (simulator/replay_fit.py) with `fit_history`'s exact answer."""

import simulator.replay_fit as replay_fit
from simulator.replay_fit import fit_points
from simulator.replay_plan import fit_history, prompt_tokens


def prompt_ids(tokenizer, messages):
    from userlm.chat import render_ids

    return render_ids(tokenizer, messages, add_generation_prompt=True)


WORDS = "the user asks about tests and the assistant answers with code and more words here".split()


def conversation(n: int, salt: int = 0) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant",
             "content": " ".join(WORDS[(i * 7 + j + salt) % len(WORDS)] for j in range(4 + (i * 37 + salt) % 60))}
            for i in range(n)]


def test_fit_points_equals_fit_history_at_every_point_with_one_tokenization_a_message(tiny_model, monkeypatch):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    msgs = conversation(31)
    calls = [0]
    count = replay_fit.render_ids
    monkeypatch.setattr(replay_fit, "render_ids", lambda *a: (calls.__setitem__(0, calls[0] + 1), count(*a))[1])
    indexes = list(range(0, 31, 2)) + [31]
    for budget in (80, 150, 400, 100_000):
        for system in ("You are a user.", None):
            at = indexes if system else indexes[1:]  # no system and no history: nothing to render
            got = fit_points(tokenizer, msgs, at, system, budget)
            want = [fit_history(tokenizer, msgs[:i], system, budget) for i in at]
            assert [(m, c) for m, c, _ in got] == want, (budget, system)
            assert all(ids == prompt_ids(tokenizer, m) for m, _, ids in got if ids)  # the prompt's own tokens
            if budget >= 400:  # every point but the opening joins its ids from the messages'
                assert all(ids is not None for (_, _, ids), i in zip(got, at) if i), (budget, system)
    assert calls[0] <= 8 * (31 + 4)  # each message once per (budget, system), not O(log n) prompts a point
    # a template whose counts do not add up (no fences between messages: BPE merges across them) takes the
    # exact path at every point, with the same answers
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    from userlm.chat import speaker_view

    assert replay_fit.message_tokens(tokenizer, speaker_view(msgs, "user", "sys")) is None
    got = fit_points(tokenizer, msgs, indexes, "sys", 150)
    assert got == [(*fit_history(tokenizer, msgs[:i], "sys", 150), None) for i in indexes]


def test_blocks_cut_keeps_a_start_while_it_fits(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    msgs = conversation(41, salt=3)
    indexes = list(range(0, 41, 2))
    latest = fit_points(tokenizer, msgs, indexes, "sys", 300)
    blocks = fit_points(tokenizer, msgs, indexes, "sys", 300, "blocks")
    starts = [cut for _, cut, _ in blocks]
    assert starts == sorted(starts) and len(set(starts)) < len({cut for _, cut, _ in latest})
    for (messages, cut, ids), (_, exact_cut, _), i in zip(blocks, latest, indexes):
        assert prompt_tokens(tokenizer, messages) <= 300 and cut >= exact_cut  # within the budget, fewer turns
        assert ids is None or ids == prompt_ids(tokenizer, messages)
        assert messages[1:] == [{"role": "assistant" if m["role"] == "user" else "user", "content": m["content"]}
                                for m in msgs[cut:i]]
    shared = sum(a[1] == b[1] and a[1] > 0 for a, b in zip(blocks, blocks[1:]))
    assert shared >= 3  # consecutive cut points start at the same turn: their prompts share a prefix


def test_shared_prefixes_feed_each_history_once_with_the_same_tokens(tiny_model):
    """Points of one conversation (each prompt a prefix of the next one's) in one prefill and across prefills
    (drawing on a finished row's slot): greedy tokens as without sharing, far fewer prompt tokens fed."""
    from userlm.backends import GenerationRequest, Sampling
    from userlm.backends.hf import HFBackend
    from userlm.chat import speaker_view

    convs = [conversation(12, salt=s) for s in (0, 5)]
    requests = [GenerationRequest(speaker_view(c[:i], "user", "You are a user."), Sampling(0.0, 1.0, 6 + i), seed=i)
                for c in convs for i in range(1, 12, 2)]
    hot = [GenerationRequest(r.messages, Sampling(0.9, 0.9, 8), seed=50 + n) for n, r in enumerate(requests)]
    results = []
    for share in (False, True):
        backend = HFBackend(tiny_model, max_batch=4, static_cache=True, compile_decode="off")
        backend.slots.share_prefixes = share
        outs = backend.generate(requests) + list(backend.generate(hot))
        results.append(([(o.text, o.tokens) for o in outs], backend.counts["prefill tokens"]))
        assert backend.slots.live() == 0 and not backend.kept
    (plain, fed_plain), (shared, fed_shared) = results
    assert shared == plain
    assert fed_shared < 0.5 * fed_plain, (fed_shared, fed_plain)


def small_data(tmp_path, n=10):
    from conftest import sharegpt_file

    from userlm.data.prepare import PrepareConfig, prepare

    records = [(f"c{i}", [("human", f"plan a trip to city {i} " * 12), ("gpt", "Sure, here is a plan. " * 15),
                          ("human", "cheaper please " * 5), ("gpt", "Here is a cheaper plan. " * 10),
                          ("human", "thanks " * 3), ("gpt", "You are welcome.")]) for i in range(n)]
    data = tmp_path / "data"
    prepare(PrepareConfig(sources=[sharegpt_file(tmp_path / "s.json", records)], out=str(data),
                          validation_fraction=0, test_fraction=0.9))
    return data


def test_replay_on_the_static_engine_shares_and_matches(tiny_model, tmp_path):
    """`simulate --replay` on the static engine (sharing on) writes the texts the dynamic scheduler writes."""
    from simulator.run import SimulationConfig, simulate
    from userlm.config import load_config
    from userlm.records import load_run

    data = small_data(tmp_path)
    texts = {}
    for engine in ("on", "off"):
        cfg = load_config(SimulationConfig, None, [f"replay={data}", f"out={tmp_path / engine}", "limit=4",
                                                   f"user=base:{tiny_model}", "batch_size=6", f"static_cache={engine}",
                                                   "dtype=float32"])  # bf16 kernels round apart
        info, recs = load_run(simulate(cfg))
        texts[engine] = {r["sample"]: [p["generated"] for p in r["points"]] for r in recs}
        assert info["replay"]["history_cut"] == "latest"
    assert texts["on"] == texts["off"]


def test_two_processes_replay_into_shards_merged_in_plan_order(tiny_model, tmp_path):
    """`accelerate launch` with two gloo processes (issue 25: data-parallel replay): each replays every second
    conversation into its shard, process 0 merges them in the one-process run's order (it refused before)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from userlm.records import load_run

    root, data = Path(__file__).resolve().parents[1], small_data(tmp_path, 12)
    args = ["-m", "workflows.cli", "simulate", "--replay", str(data), "--limit", "5", "--max-turns", "2",
            "--user", f"base:{tiny_model}", "--batch-size", "4"]
    env = {**os.environ, "PYTHONPATH": str(root), "CUDA_VISIBLE_DEVICES": ""}  # gloo on the CPU on any host
    for out, launch in ((tmp_path / "one", []), (tmp_path / "dp", ["-m", "accelerate.commands.launch", "--multi_gpu",
                                                                    "--num_processes", "2", "--num_cpu_threads_per_process", "1"])):
        done = subprocess.run([sys.executable, *launch, *args, "--out", str(out)], cwd=root, capture_output=True,
                              text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
    (_, one), (info, dp) = load_run(tmp_path / "one"), load_run(tmp_path / "dp")
    assert info["processes"] == 2 and not list((tmp_path / "dp" / "shards").glob("*.jsonl"))
    key = lambda r: (r["sample"], r["conversation_id"], r["seed"], [p["index"] for p in r["points"]])  # noqa: E731
    assert [key(r) for r in dp] == [key(r) for r in one] and len(one) == 5
    assert json.loads((tmp_path / "dp" / "run.json").read_text())["generated_tokens_process_0"] > 0


def test_runs_with_other_history_cuts_are_not_comparable():
    from evaluators.comparability import check_comparable

    latest, blocks = {"replay": {"history_cut": "latest"}}, {"replay": {"history_cut": "blocks"}}
    assert check_comparable(latest, blocks) == ["replay history cut: latest vs blocks"]
    assert check_comparable(latest, {"replay": {}}) == []  # a run from before the setting: latest, not compared
