"""The learned end policy (userlm/end_policy.py, simulator/end_decision.py): its features, fit and threshold on
data whose ends are predictable, its JSON, bad files, sources without ends; in --replay and self-play it ends
exactly where it says and is recorded; without one nothing changes."""

import json
import math

import pytest
from conftest import cli, one_line_error, sharegpt_file
from test_guardrails import AI, scripted_users  # noqa: F401 (a fixture)
from test_tiny_replay import data_dir, replay  # noqa: F401 (a fixture)
from test_tiny_simulation import SMOKE, comparable, tiny_run

from simulator.replay_plan import plan_points
from simulator.run import SimulationConfig, simulate
from userlm.config import load_config
from userlm.data.prepare import PrepareConfig, prepare, read_split
from userlm.end_policy import (
    FEATURES,
    POLICY_KIND,
    end_decisions,
    features,
    fit_for_adapter,
    load_policy,
    write_policy,
)
from userlm.io import UserError
from userlm.records import load_run


def policy_file(path, coefficients=(10, 0, 0, 0, 0, 0), intercept=-15.0, threshold=0.5, **over):
    """A hand-made policy: with the default, p(end) > 0.99 from the 2nd user turn on, < 0.01 before."""
    path.write_text(json.dumps({"kind": POLICY_KIND, "features": list(FEATURES), "means": [0.0] * 6,
                                "scales": [1.0] * 6, "coefficients": list(coefficients), "intercept": intercept,
                                "threshold": threshold, **over}))
    return path


def test_features_of_constructed_histories():
    h = [{"role": "user", "content": "how do I sort a list"}, {"role": "assistant", "content": "Use sorted(). Ok?"}]
    assert features(h) == [1.0, math.log1p(3), math.log1p(6), 0.0, 1.0, 0.0]
    h += [{"role": "user", "content": "Thanks, perfect"}, {"role": "assistant", "content": "```py\nx\n```"}]
    assert features(h) == [2.0, math.log1p(3), math.log1p(2), 1.0, 0.0, 1.0]
    assert features([{"role": "user", "text": "hi"}, {"role": "assistant", "text": "Hello?"}])[:2] == [1.0, math.log1p(1)]


def test_end_decisions_are_replays_points(data_dir):  # noqa: F811
    for ex in read_split(data_dir, "test") + read_split(data_dir, "train"):
        assert end_decisions(ex) == [(p["index"], p["person_ended"]) for p in plan_points(ex)
                                     if p["decision"] and p["person_ended"] is not None]


@pytest.fixture
def thanks_data(tmp_path):
    """ShareGPT conversations that end exactly after the user thanks: the policy can learn it."""
    records = [(f"c{i}", [*[x for k in range(1 + i % 3) for x in (
        ("human", f"question {k} about topic {i}: how does part {k} of item {i} work"), ("gpt", f"It works like {k}."))],
        ("human", "thanks, perfect"), ("gpt", "You're welcome.")]) for i in range(60)]
    out = tmp_path / "thanks"
    prepare(PrepareConfig(sources=[sharegpt_file(tmp_path / "t.json", records)], out=str(out),
                          validation_fraction=0.25, test_fraction=0.1))
    return out


def test_fit_threshold_and_json_round_trip(thanks_data, tmp_path):
    policy = write_policy(thanks_data, tmp_path / "p.json")
    assert policy["validation"]["f1"] == 1.0 > policy["validation"]["always_end_f1"]
    assert policy["fitted_on"]["decisions"] > policy["fitted_on"]["ends"] > 0 and policy["data_content_hash"]
    loaded = load_policy(tmp_path / "p.json")
    assert loaded.threshold == policy["threshold"] and list(loaded.coefficients) == policy["coefficients"]
    for ex in read_split(thanks_data, "test"):
        assert [loaded.ends(ex["messages"][:i]) for i, _ in end_decisions(ex)] == [e for _, e in end_decisions(ex)]
    assert not loaded.ends(ex["messages"][:1])  # not a decision: the user has not spoken after an AI turn
    with pytest.raises(UserError, match="already exists"):
        write_policy(thanks_data, tmp_path / "p.json")


def test_sources_without_ends_are_refused_or_skipped(source, tmp_path, capsys):
    data = tmp_path / "oasst"
    prepare(PrepareConfig(sources=[str(source)], out=str(data), validation_fraction=0, test_fraction=0))
    code, err = cli(capsys, "data", "end-policy", data, "--out", tmp_path / "p.json")
    assert code == 2 and not (tmp_path / "p.json").exists()
    one_line_error(err, str(data), "records where people stopped")
    (tmp_path / "adapter").mkdir()
    assert "records where people stopped" in fit_for_adapter(data, tmp_path / "adapter")["skipped"]
    assert not (tmp_path / "adapter" / "end_policy.json").exists()


@pytest.mark.parametrize("over,field", [({"coefficients": [1, 2]}, "coefficients"), ({"threshold": 2}, "threshold"),
                                        ({"kind": "x"}, "kind"), ({"scales": [0] * 6}, "scales"),
                                        ({"features": ["a"]}, "features"), ({"intercept": "x"}, "intercept")])
def test_bad_policy_file_is_one_line_naming_file_and_field(tmp_path, capsys, over, field, tiny_model):
    assert_refused(policy_file(tmp_path / "bad.json", **over), field, tmp_path, capsys, tiny_model)


def assert_refused(bad, field, tmp_path, capsys, tiny_model):
    """`bad` refused by load_policy and by `simulate --end-policy` (exit 2), each as one line naming it and `field`."""
    with pytest.raises(UserError, match=f"{bad}: end policy field '{field}'"):
        load_policy(bad)
    code, err = cli(capsys, "simulate", "--scenarios", SMOKE, "--user", f"prompted:{tiny_model}", "--assistant",
                    tiny_model, "--out", tmp_path / "run", "--end-policy", bad)
    assert code == 2
    one_line_error(err, str(bad), field)


def test_replay_ends_where_the_policy_says(tiny_model, data_dir, tmp_path):  # noqa: F811
    path = policy_file(tmp_path / "p.json")
    info, records = load_run(replay(tiny_model, data_dir, tmp_path / "r", f"end_policy={path}", "limit=3"))
    assert info["end_policy"]["sha256"] and info["end_policy"]["threshold"] == 0.5
    assert "mode" not in info["identity"]["end_policy"]  # described as before sample mode: old runs resume
    assert info["identity"]["end_policy"]["lm_ends"] == "drop" and "file" not in info["identity"]["end_policy"]
    for r in records:
        for p in r["points"]:
            users = sum(m["role"] == "user" for m in r["real_turns"][:p["index"]])
            assert (p["end_by"] == "policy") == (p["decision"] and users >= 2)
            if p["end_by"] == "policy":
                assert p["ended"] and p["generated"] is None and p["tokens"] == 0
        assert "end_policy" in r
    assert any(p["end_by"] == "policy" for r in records for p in r["points"])


def test_replay_lm_ends_dropped_or_kept(tiny_model, data_dir, tmp_path, scripted_users):  # noqa: F811
    scripted_users.script = {}  # every try a bare end marker
    never = policy_file(tmp_path / "never.json", intercept=-50.0)
    for mode, by in (("drop", "model"), ("keep", "model")):
        out = replay(tiny_model, data_dir, tmp_path / mode, "backend=user_script", "limit=2", f"end_policy={never}",
                     f"end_policy_lm_ends={mode}")
        records = load_run(out)[1]
        assert all(p["ended"] and p["end_by"] == by for r in records for p in r["points"])
        points = sum(len(r["points"]) for r in records)  # openings too: the policy governs every end
        counts = [r["end_policy"] for r in records]
        resampled = sum(c.get("lm_end_resampled", 0) for c in counts)
        assert resampled == (3 * points if mode == "drop" else 0)


def test_self_play_ends_where_the_policy_says(tiny_model, tmp_path, scripted_users):  # noqa: F811
    scripted_users.script = {k: [f"question number {k} about paris"] for k in range(12)}
    for name, intercept, stop, turns in (("ends", -15.0, "user_ended", 2), ("never", -50.0, "max_turns", 4)):
        cfg = load_config(SimulationConfig, None, [
            f"scenarios={SMOKE}", f"out={tmp_path / name}", "samples=1", "max_turns=4", "user_backend=user_script",
            "assistant_backend=ai_script", f"user=prompted:{tiny_model}", f"assistant={tiny_model}",
            f"end_policy={policy_file(tmp_path / f'{name}.json', intercept=intercept)}"])
        info, records = load_run(simulate(cfg))
        assert info["end_policy"]["threshold"] == 0.5
        for r in records:
            assert (r["stop_reason"], r["n_user_turns"]) == (stop, turns) and r["turns"][-1]["text"] == AI
            assert r["end_by"] == ("policy" if stop == "user_ended" else None)


def test_no_policy_changes_nothing(tiny_model, tmp_path):
    plain = tiny_run(tiny_model, tmp_path / "plain")
    off = tiny_run(tiny_model, tmp_path / "off", "end_policy=off")
    for run in (plain, off):
        info, records = load_run(run)
        assert "end_policy" not in info and "end_policy" not in info["identity"]
        assert not any(k in info["identity"]["config"] for k in ("end_policy", "end_policy_lm_ends"))
        assert all("end_by" not in r and "end_policy" not in r for r in records)
    assert comparable(load_run(plain)[1]) == comparable(load_run(off)[1])


def test_train_writes_the_adapters_policy_and_simulate_uses_it(tiny_model, thanks_data, tmp_path):
    from trainer.train import TrainConfig, train

    out = tmp_path / "adapter"
    manifest = train(load_config(TrainConfig, None, [
        f"base_model={tiny_model}", f"data_dir={thanks_data}", f"output_dir={out}", "max_length=96", "max_steps=1",
        "per_device_train_batch_size=2", "max_eval_examples=2", "eval_steps=100000", "lora_r=4", "end_policy=learned"]))
    assert manifest["end_policy"]["file"] == "end_policy.json" and manifest["end_policy"]["validation"]["f1"] == 1.0
    assert load_policy(out / "end_policy.json").threshold == manifest["end_policy"]["threshold"]
    for setting, used in (("auto", True), ("off", False)):
        info, records = load_run(tiny_run(tiny_model, tmp_path / setting, f"user={out}", f"end_policy={setting}"))
        assert ("end_policy" in info) == used and all(("end_by" in r) == used for r in records)
    assert info["user_kind"] == "adapter" and load_run(tmp_path / "auto")[0]["end_policy"]["file"] == \
        str(out / "end_policy.json")
