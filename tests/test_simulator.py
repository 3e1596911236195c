import json
from pathlib import Path

import pytest

from simulator.loop import Conversation, add_user_turn
from simulator.run import SimulationConfig, simulate
from userlm import END_OF_CONVERSATION
from userlm.io import UserError
from userlm.records import load_transcripts
from userlm.scenarios import load_scenarios

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "scenarios" / "smoke"
TINY = ["samples=2", "max_turns=2"]


def small_run(tmp_path, name, *extra, **kw):
    from userlm.config import load_config

    cfg = load_config(SimulationConfig, None, [f"scenarios={SMOKE}", f"out={tmp_path / name}", *TINY, *extra])
    return simulate(cfg, **kw), cfg


def test_shipped_scenarios_are_valid_and_diverse():
    scenarios = load_scenarios(ROOT / "scenarios")
    assert len(scenarios) >= 20
    # Enough new tokens for a user turn to finish (a cut-off turn would read as a short, human one).
    assert all(s.user_sampling.max_new_tokens >= 128 for s in scenarios + load_scenarios(SMOKE))
    assert {"non-english", "role-confusion", "coding", "health", "travel"} <= {t for s in scenarios for t in s.tags}
    assert any(s.opening for s in scenarios) and any(not s.opening for s in scenarios)


@pytest.mark.parametrize("text,match", [
    ("id: a\n", "missing required field 'description'"),
    ("id: a\ndescription: b\nmax_turn: 3\n", "unknown field 'max_turn'"),
    ("id: a\ndescription: b\nsamples: many\n", "field 'samples' must be int"),
    ("id: a\ndescription: b\nuser_sampling: {temperature: -1}\n", "temperature >= 0"),
    ("id: [unclosed\n", "invalid YAML"),
])
def test_bad_scenario_gives_one_line_naming_file_and_field(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=match) as e:
        load_scenarios(path)
    assert "bad.yaml" in str(e.value) and "\n" not in str(e.value)


def test_stop_reasons():
    scenario = load_scenarios(SMOKE)[0]
    conv = Conversation(scenario, 0, 1)
    add_user_turn(conv, f"thanks, that's all {END_OF_CONVERSATION}", 5, 0.1)
    assert conv.stop_reason == "user_ended" and conv.user_turns == ["thanks, that's all"]
    conv = Conversation(scenario, 0, 1)
    add_user_turn(conv, "hello", 1, 0.1)
    add_user_turn(conv, "Hello ", 1, 0.1)
    assert conv.stop_reason == "repeated_turn"
    conv = Conversation(scenario, 0, 1)
    add_user_turn(conv, "   ", 0, 0.1)
    assert conv.stop_reason == "empty_turn"
    conv = Conversation(scenario, 0, 1)
    add_user_turn(conv, "the the the the " * 10, 40, 0.1)
    assert conv.stop_reason == "degenerate_turn"


def test_a_turn_cut_at_max_new_tokens_is_marked_truncated_and_counted():
    from evaluators.metrics import truncated_share
    from evaluators.reference import transcript_units

    conv = Conversation(load_scenarios(SMOKE)[0], 0, 1)
    add_user_turn(conv, "i need a recipe with eggs and", 7, 0.1, truncated=True)
    add_user_turn(conv, "thanks, got it", 4, 0.1)
    assert [t["truncated"] for t in conv.turns] == [True, False]
    record = {"scenario_id": "s", "sample": 0, "turns": conv.turns, "stop_reason": "max_turns"}
    assert truncated_share(transcript_units([record])) == 0.5


@pytest.mark.slow
def test_prompted_baseline_run_is_complete_deterministic_and_resumable(tmp_path):
    out, cfg = small_run(tmp_path, "a")
    records = load_transcripts(out)
    assert sorted((r["scenario_id"], r["sample"]) for r in records) == [
        ("smoke-greeting", 0), ("smoke-greeting", 1), ("smoke-recipe", 0), ("smoke-recipe", 1)]
    for r in records:
        assert r["stop_reason"] in {"user_ended", "max_turns", "empty_turn", "repeated_turn", "degenerate_turn"}
        assert r["user_kind"] == "prompted" and r["n_user_turns"] <= 2
        assert all({"role", "text", "tokens", "latency_s"} <= set(t) for t in r["turns"])
    greeting = next(r for r in records if r["scenario_id"] == "smoke-greeting")
    assert greeting["turns"][0] == {"role": "assistant", "text": "Hi! How can I help you today?", "tokens": 0,
                                    "latency_s": 0.0}
    run = json.loads((out / "run.json").read_text())
    assert run["user_model"]["sha256"] and run["versions"]["transformers"] and "finished_at" in run

    # Same seed, same transcripts.
    out_b, _ = small_run(tmp_path, "b")
    strip = lambda rs: sorted(json.dumps({**r, "turns": [{**t, "latency_s": 0} for t in r["turns"]]}) for r in rs)
    assert strip(load_transcripts(out_b)) == strip(records)

    # Killed mid-write: one whole conversation plus a torn line survive; --resume finishes the rest exactly once.
    lines = (out / "transcripts.jsonl").read_text().splitlines(keepends=True)
    (out / "transcripts.jsonl").write_text(lines[0] + lines[1][:40])
    with pytest.raises(UserError, match="--resume"):
        small_run(tmp_path, "a")
    small_run(tmp_path, "a", resume=True)
    resumed = load_transcripts(out)
    assert sorted((r["scenario_id"], r["sample"]) for r in resumed) == sorted(
        (r["scenario_id"], r["sample"]) for r in records)
    with pytest.raises(UserError, match="different config"):
        small_run(tmp_path, "a", "seed=5", resume=True)


@pytest.mark.slow
def test_openai_backend_against_a_real_loopback_server(tmp_path):
    from loopback_openai_server import serve

    server, calls = serve("embedded:smollm2-135m-instruct")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        out, _ = small_run(tmp_path, "o", "backend=openai", f"backend_options={{base_url: '{url}', concurrency: 4}}",
                           "user=prompted:smollm2", "assistant=smollm2")
    finally:
        server.shutdown()
    records = load_transcripts(out)
    assert len(records) == 4 and calls["n"] >= 8
    assert all(t["text"] for r in records for t in r["turns"] if t["role"] == "assistant")


def test_openai_backend_unreachable_is_one_line_error(tmp_path):
    with pytest.raises(UserError, match="openai backend"):
        small_run(tmp_path, "x", "backend=openai", "backend_options={base_url: 'http://127.0.0.1:9/v1', retries: 0, "
                  "timeout_s: 2}", "user=prompted:m", "assistant=m")


def test_backend_options_are_typed_and_old_fields_name_their_replacement(tmp_path):
    from userlm.backends import backend_options
    from userlm.config import load_config

    assert backend_options(["hf", "openai"], {"retries": "0", "timeout_s": 2}) == {
        "hf": {}, "openai": {"retries": 0, "timeout_s": 2.0}}
    with pytest.raises(UserError, match="backend option 'retries'.*must be int"):
        backend_options(["openai"], {"retries": "many"})
    with pytest.raises(UserError, match="not an option of the hf backend"):
        backend_options(["hf"], {"base_url": "http://x"})
    with pytest.raises(UserError, match="unknown backend 'tgi'"):
        backend_options(["tgi"], {})
    (tmp_path / "old.yaml").write_text("openai_base_url: http://127.0.0.1:8000/v1\n")
    with pytest.raises(UserError, match="'openai_base_url' was replaced: use backend_options: {base_url: ...}"):
        load_config(SimulationConfig, tmp_path / "old.yaml")


@pytest.mark.slow
def test_hf_scheduler_matches_generate_keeps_seeds_and_reuses_kv():
    """The token-level scheduler against transformers' own greedy `generate`; a row's sampled text does not
    depend on its batch-mates; a turn that reuses the conversation's KV cache equals one computed afresh."""
    import torch

    from userlm.backends import GenerationRequest, Sampling, get_backend
    from userlm.backends.hf import HFBackend

    backend = get_backend("hf", "embedded:smollm2-135m-instruct", quantization="none", max_batch=3)
    assert backend.step() == []  # an idle side of the loop is stepped too
    tok = backend.tokenizer
    chats = [[{"role": "user", "content": f"Tell me about idea {i}{', briefly' * (i % 3)}."}] for i in range(5)]
    greedy = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=24)
    outs = backend.generate([GenerationRequest(c, greedy, seed=i) for i, c in enumerate(chats)])  # 5 rows, 3 slots
    for chat, out in zip(chats, outs):
        ids = tok(tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True), return_tensors="pt",
                  add_special_tokens=False)
        with torch.inference_mode():
            ref = backend.model.generate(**ids, max_new_tokens=24, do_sample=False, eos_token_id=backend.stop_ids)
        assert out.text == tok.decode(ref[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

    hot = Sampling(temperature=0.9, top_p=0.9, max_new_tokens=16)
    alone = backend.generate([GenerationRequest(chats[0], hot, seed=7)])[0].text
    crowded = backend.generate([GenerationRequest(c, hot, seed=7 if i == 0 else i) for i, c in enumerate(chats)])
    assert crowded[0].text == alone

    backend.submit(("conv", "user"), GenerationRequest(chats[0], greedy, seed=1))
    first = []
    while not first:
        first = backend.step()
    follow_up = chats[0] + [{"role": "assistant", "content": first[0][1].text}, {"role": "user", "content": "Why?"}]
    backend.submit(("conv", "user"), GenerationRequest(follow_up, greedy, seed=1))
    assert len(backend.kept[("conv", "user")][0]) > 20  # the first turn's prompt and answer stay cached
    second = []
    while not second:
        second = backend.step()
    backend.release("conv")
    assert not backend.kept
    fresh = HFBackend.__new__(HFBackend)
    fresh.__dict__.update({**backend.__dict__, "kept": {}, "rows": [], "cache": None, "mask": None})
    fresh.waiting = type(backend.waiting)()
    assert fresh.generate([GenerationRequest(follow_up, greedy, seed=1)])[0].text == second[0][1].text


@pytest.mark.slow
def test_data_parallel_simulation_under_accelerate_launch(tmp_path):
    """Two processes (gloo on the CPU) split the conversations, write shards, and process 0 merges them in plan
    order, as a one-process run orders them; --resume after a crash keeps what was written and finishes each
    remaining conversation once. (Texts are not compared: a conversation's random draws depend only on its
    seed, but floating-point sums differ in the last bits with the batch's make-up.)"""
    import os
    import subprocess
    import sys

    def launch(out, *extra):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_cpu_threads_per_process", "1", "-m", "workflows.cli", "simulate", "--scenarios", str(SMOKE),
               "--out", str(out), "--samples", "2", "--max-turns", "2", *extra]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr[-3000:]

    out = tmp_path / "dp"
    launch(out)
    merged = load_transcripts(out)
    assert json.loads((out / "run.json").read_text())["processes"] == 2
    assert not list((out / "shards").glob("*.jsonl"))
    single, _ = small_run(tmp_path, "one")
    key = lambda r: (r["scenario_id"], r["sample"], r["seed"])
    assert [key(r) for r in merged] == [key(r) for r in load_transcripts(single)]

    # Crash: process 0 had merged nothing, process 1's shard holds one conversation and a torn line.
    lines = (out / "transcripts.jsonl").read_text().splitlines(keepends=True)
    (out / "transcripts.jsonl").write_text(lines[0])
    (out / "shards").mkdir(exist_ok=True)
    (out / "shards" / "rank-1.jsonl").write_text(lines[3] + lines[2][:30])
    launch(out, "--resume")
    resumed = load_transcripts(out)
    assert [key(r) for r in resumed] == [key(r) for r in merged]
    assert resumed[0]["turns"] == merged[0]["turns"] and resumed[3]["turns"] == merged[3]["turns"]
