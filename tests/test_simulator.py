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
    # Room for a conversation to end where the user model chooses (people average 6.8 turns in ShareGPT).
    assert all(s.max_turns >= 8 for s in scenarios + load_scenarios(SMOKE))
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
    # hf options that have their own config field are refused, not silently overridden by a --backend-arg
    for key, flag in (("dtype", "--dtype"), ("quantization", "--quantization"), ("max_batch", "--batch-size"),
                      ("static_cache", "--static-cache")):
        with pytest.raises(UserError, match=f"backend option '{key}' has its own setting: use {flag} "):
            load_config(SimulationConfig, None, [f"backend_options={{{key}: x}}"])
    with pytest.raises(UserError, match="use --dtype"):
        SimulationConfig(backend_options={"compile_decode": "off", "dtype": "float32"})
    assert SimulationConfig(backend_options={"compile_decode": "off"}).backend_options == {"compile_decode": "off"}
    (tmp_path / "old.yaml").write_text("openai_base_url: http://127.0.0.1:8000/v1\n")
    with pytest.raises(UserError, match="'openai_base_url' was replaced: use backend_options: {base_url: ...}"):
        load_config(SimulationConfig, tmp_path / "old.yaml")


@pytest.mark.slow
def test_hf_scheduler_matches_generate_keeps_seeds_and_reuses_kv():
    """The same check as the fast tier's, on the embedded SmolLM2 (see scheduler_check.py)."""
    from scheduler_check import check_scheduler_against_generate

    from userlm.backends import get_backend

    check_scheduler_against_generate(get_backend("hf", "embedded:smollm2-135m-instruct", quantization="none",
                                                 max_batch=3))
