"""Fast tier: the conversation loop, the hf scheduler, --resume and data-parallel sharding on the tiny
real-architecture model of conftest.py (random Qwen2 weights, a real BPE tokenizer). The same behaviours on
the embedded SmolLM2 are the slow tests of test_simulator.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.run import SimulationConfig, simulate
from userlm.config import load_config
from userlm.io import UserError
from userlm.records import load_transcripts

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "scenarios" / "smoke"
STOPS = {"user_ended", "max_turns", "empty_turn", "repeated_turn", "degenerate_turn"}


def tiny_run(tiny_model, out, *extra, **kw):
    cfg = load_config(SimulationConfig, None, [f"scenarios={SMOKE}", f"out={out}", "samples=2", "max_turns=2",
                                               f"user=prompted:{tiny_model}", f"assistant={tiny_model}", *extra])
    return simulate(cfg, **kw)


def comparable(records):
    """Transcripts without their timings (the only field that differs between two identical runs)."""
    return sorted(json.dumps({**r, "turns": [{**t, "latency_s": 0} for t in r["turns"]]}) for r in records)


def test_loop_writes_every_conversation_deterministically_and_resumes_a_killed_run(tiny_model, tmp_path):
    out = tiny_run(tiny_model, tmp_path / "a")
    records = load_transcripts(out)
    assert sorted((r["scenario_id"], r["sample"]) for r in records) == [
        ("smoke-greeting", 0), ("smoke-greeting", 1), ("smoke-recipe", 0), ("smoke-recipe", 1)]
    for r in records:
        assert r["stop_reason"] in STOPS and r["user_kind"] == "prompted" and r["n_user_turns"] <= 2
        assert all({"role", "text", "tokens", "latency_s"} <= set(t) for t in r["turns"])
        assert r["user_told_intent"] == bool(r["scenario_intent"])
    greeting = next(r for r in records if r["scenario_id"] == "smoke-greeting")
    assert greeting["turns"][0] == {"role": "assistant", "text": "Hi! How can I help you today?", "tokens": 0,
                                    "latency_s": 0.0}
    assert any(t["tokens"] > 0 for r in records for t in r["turns"] if t["role"] == "user")  # the model spoke
    run = json.loads((out / "run.json").read_text())
    assert run["finished_at"] and run["total_conversations"] == 4 and run["generated_tokens"] > 0

    assert comparable(load_transcripts(tiny_run(tiny_model, tmp_path / "b"))) == comparable(records)  # same seed
    other_seed = load_transcripts(tiny_run(tiny_model, tmp_path / "c", "seed=1"))
    assert comparable(other_seed) != comparable(records)

    # Killed mid-write: one whole conversation and a torn line survive; --resume finishes the rest exactly once,
    # with the texts the uninterrupted run wrote (a conversation's text depends only on its seed).
    lines = (out / "transcripts.jsonl").read_text().splitlines(keepends=True)
    (out / "transcripts.jsonl").write_text(lines[0] + lines[1][:40])
    with pytest.raises(UserError, match="--resume"):
        tiny_run(tiny_model, out)
    tiny_run(tiny_model, out, resume=True)
    assert comparable(load_transcripts(out)) == comparable(records)
    with pytest.raises(UserError, match="different config"):
        tiny_run(tiny_model, out, "seed=5", resume=True)


def test_scheduler_matches_generate_keeps_seeds_and_reuses_kv(tiny_model):
    """The token-level scheduler against transformers' own greedy `generate` (see scheduler_check.py)."""
    from scheduler_check import check_scheduler_against_generate

    from userlm.backends import get_backend

    check_scheduler_against_generate(get_backend("hf", tiny_model, quantization="none", max_batch=3,
                                                 static_cache="off"))


def test_shared_prefix_reuse_gives_a_whole_prefills_tokens(tiny_model):
    """`shared_prefix`: a prompt that opens like a recent one (a long system prompt) starts from that prompt's
    keys/values; its logits stay within float error of a whole prefill and its tokens, greedy or sampled, are
    the same. Only the last few prompts are kept, and a short common opening is computed afresh."""
    import torch

    from userlm.backends import GenerationRequest, Sampling
    from userlm.backends.hf import SHARED_PREFIX_MIN, HFBackend
    from userlm.backends.prompt_ids import common_prefix

    whole = HFBackend(tiny_model, max_batch=3, static_cache="off")
    shared = HFBackend(tiny_model, max_batch=3, static_cache="off", shared_prefix=2)
    system = {"role": "system", "content": "You are a patient travel agent who plans cheap trips by train, "
                                           "asks about the budget first and answers in short lists. " * 2}
    chats = [[system, {"role": "user", "content": f"Plan {i + 2} days in city {i}{', cheaply' * (i % 2)}."}]
             for i in range(5)]
    assert shared._prompt("k", GenerationRequest(chats[1], Sampling(), seed=0))[1] == 0  # nothing prefilled yet
    with torch.inference_mode():
        first = shared._prefill("a", GenerationRequest(chats[0], Sampling(), seed=0))
        second = shared._prefill("b", GenerationRequest(chats[1], Sampling(), seed=0))
        alone = whole._prefill("b", GenerationRequest(chats[1], Sampling(), seed=0))
    common = next(i for i, (a, b) in enumerate(zip(first[0].ids, second[0].ids)) if a != b)
    assert common >= SHARED_PREFIX_MIN and shared._prompt("c", GenerationRequest(chats[2], Sampling(), seed=0))[1] \
        == common  # the system prompt and the user turn's opening
    assert torch.allclose(second[2], alone[2], atol=1e-5) and second[2].argmax() == alone[2].argmax()
    for a, b in zip(second[1], alone[1]):
        assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-5)
    assert len(shared.recent) == 2  # bounded: the last two prompts
    for sampling in (Sampling(temperature=0.0, top_p=1.0, max_new_tokens=12), Sampling(max_new_tokens=12)):
        requests = [GenerationRequest(c, sampling, seed=i) for i, c in enumerate(chats)]
        assert [g.text for g in shared.generate(requests)] == [g.text for g in whole.generate(requests)]
    short = [[{"role": "user", "content": f"Hi {i}"}] for i in range(3)]  # only the chat template's tokens shared
    shared.generate([GenerationRequest(c, Sampling(max_new_tokens=2), seed=0) for c in short[:2]])
    ids, reused, _ = shared._prompt("d", GenerationRequest(short[2], Sampling(), seed=0))
    assert reused == 0 and 0 < common_prefix(shared.recent[-1][0], ids) < SHARED_PREFIX_MIN


def test_openai_backend_against_a_real_loopback_server(tiny_model, tmp_path):
    from loopback_openai_server import serve

    server, calls = serve(tiny_model)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        cfg = load_config(SimulationConfig, None, [f"scenarios={SMOKE}", f"out={tmp_path / 'o'}", "samples=2",
                                                   "max_turns=2", "backend=openai",
                                                   f"backend_options={{base_url: '{url}', concurrency: 4}}", "user=prompted:tiny", "assistant=tiny"])
        records = load_transcripts(simulate(cfg))
    finally:
        server.shutdown()
    assert len(records) == 4 and calls["n"] >= 4  # every conversation asked the server at least once
    assert all(r["stop_reason"] in STOPS for r in records)
    assert any(t["text"] for r in records for t in r["turns"] if t["role"] == "assistant" and t["tokens"])


def test_two_processes_shard_merge_in_plan_order_and_resume(tiny_model, tmp_path):
    """`accelerate launch` with two gloo processes: each takes every second conversation into its shard,
    process 0 merges them in the one-process run's order; after a crash, --resume keeps what either process
    wrote and runs each missing conversation once."""

    def launch(out, *extra):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_cpu_threads_per_process", "1", "-m", "workflows.cli", "simulate", "--scenarios", str(SMOKE),
               "--out", str(out), "--samples", "2", "--max-turns", "2", "--user", f"prompted:{tiny_model}",
               "--assistant", tiny_model, *extra]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""})  # gloo, any host
        assert done.returncode == 0, done.stderr[-3000:]

    out = tmp_path / "dp"
    launch(out)
    merged = load_transcripts(out)
    assert json.loads((out / "run.json").read_text())["processes"] == 2
    assert not list((out / "shards").glob("*.jsonl"))
    single = load_transcripts(tiny_run(tiny_model, tmp_path / "one"))
    key = lambda r: (r["scenario_id"], r["sample"], r["seed"])
    assert [key(r) for r in merged] == [key(r) for r in single]

    # Crash: process 0 had merged nothing, process 1's shard holds one conversation and a torn line.
    lines = (out / "transcripts.jsonl").read_text().splitlines(keepends=True)
    (out / "transcripts.jsonl").write_text(lines[0])
    (out / "shards").mkdir(exist_ok=True)
    (out / "shards" / "rank-1.jsonl").write_text(lines[3] + lines[2][:30])
    launch(out, "--resume")
    resumed = load_transcripts(out)
    assert [key(r) for r in resumed] == [key(r) for r in merged]
    assert resumed[0]["turns"] == merged[0]["turns"] and resumed[3]["turns"] == merged[3]["turns"]


def test_runs_simulated_together_write_what_each_run_writes_alone(tiny_model, tmp_path):
    """simulate_together shares the tiny model's backend between two users and the assistant (one batch), and
    each run's transcripts and run.json are the ones `simulate` writes for it alone; a finished pair resumes
    as done, and two runs into one directory are refused."""
    from simulator.run import simulate_together
    from userlm.records import load_run

    users = [f"prompted:{tiny_model}", f"base:{tiny_model}"]
    cfgs = lambda root: [load_config(SimulationConfig, None, [
        f"scenarios={SMOKE}", f"out={root / str(n)}", "samples=2", "max_turns=2", f"user={user}",
        f"assistant={tiny_model}"]) for n, user in enumerate(users)]
    alone = [simulate(cfg) for cfg in cfgs(tmp_path / "alone")]
    together = simulate_together(cfgs(tmp_path / "together"))
    for a, t in zip(alone, together):
        assert comparable(load_transcripts(t)) == comparable(load_transcripts(a))
        info_a, info_t = load_run(a)[0], load_run(t)[0]
        assert info_t["generated_tokens"] == info_a["generated_tokens"] > 0
        assert info_t["identity"] == info_a["identity"]
    assert {load_transcripts(t)[0]["user_kind"] for t in together} == {"prompted", "base"}
    before = [(t / "transcripts.jsonl").read_bytes() for t in together]
    simulate_together(cfgs(tmp_path / "together"), resume=True)
    assert [(t / "transcripts.jsonl").read_bytes() for t in together] == before
    with pytest.raises(UserError, match="different out"):
        simulate_together([cfgs(tmp_path / "x")[0]] * 2)
