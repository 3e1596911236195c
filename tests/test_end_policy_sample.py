"""The end policy's sample mode (userlm/end_policy.py): people's end rate per user turn fitted on train, a draw from
the conversation's seed at each end decision (reproducible, at the fitted rate, never before the user spoke), its
JSON and bad files, `train end_policy=sampled`, and self-play ending where the draws say."""

import json

import pytest
from test_end_policy import assert_refused, thanks_data  # noqa: F401 (a fixture)
from test_guardrails import scripted_users  # noqa: F401 (a fixture)
from test_tiny_simulation import SMOKE, tiny_run

from simulator.run import SimulationConfig, simulate
from userlm.config import load_config
from userlm.end_policy import POLICY_KIND, end_draw, load_policy, summary, write_policy
from userlm.records import load_run


def sample_file(path, hazard, **over):
    path.write_text(json.dumps({"kind": POLICY_KIND, "mode": "sample", "hazard": hazard, **over}))
    return path


def history(user_turns):
    return [t for k in range(user_turns) for t in ({"role": "user", "content": f"q{k}"}, {"role": "assistant", "content": "a"})]


def test_fit_reads_people_end_rate_per_user_turn(thanks_data, tmp_path):  # noqa: F811
    # thanks_data: 1, 2 or 3 questions, then "thanks" and the end: ends only after the 2nd, 3rd or 4th user turn
    policy = write_policy(thanks_data, tmp_path / "p.json", "sample")
    h = policy["hazard"]
    assert policy["mode"] == "sample" and h[0] == 0.0 and h[-1] == 1.0 and all(0 < x < 1 for x in h[1:-1])
    assert 0 < policy["validation"]["f1"] < 1 and "threshold" not in policy
    loaded = load_policy(tmp_path / "p.json")
    assert loaded.mode == "sample" and list(loaded.hazard) == h and loaded.describe()["hazard"] == h
    assert "sampled at people's end rate" in summary(policy, tmp_path / "p.json")


def test_draws_are_the_seeds_and_at_the_rate(tmp_path):
    policy = load_policy(sample_file(tmp_path / "p.json", [0.0, 0.3, 1.0]))
    assert not any(policy.ends(history(1), s) for s in range(300))  # rate 0 after the first user turn
    assert all(policy.ends(history(3), s) and policy.ends(history(9), s) for s in range(300))  # the last rate on
    ends = [policy.ends(history(2), s) for s in range(4000)]
    assert 0.27 < sum(ends) / len(ends) < 0.33
    assert ends == [policy.ends(history(2), s) for s in range(4000)] and end_draw(5, 2) == end_draw(5, 2) != end_draw(6, 2)
    assert not policy.ends(history(2)[:-1], 0) and not policy.ends([{"role": "assistant", "content": "hi"}], 0)


@pytest.mark.parametrize("over,field", [({"mode": "x"}, "mode"), ({"hazard": [0.5, 2]}, "hazard"),
                                        ({"hazard": []}, "hazard"), ({"hazard": ["a"]}, "hazard"),
                                        ({"hazard": 0.5}, "hazard")])
def test_bad_sample_policy_is_one_line_naming_the_field(tmp_path, capsys, over, field, tiny_model):
    assert_refused(sample_file(tmp_path / "bad.json", **{"hazard": [0.5], **over}), field, tmp_path, capsys, tiny_model)


def test_self_play_ends_where_the_draws_say(tiny_model, tmp_path, scripted_users):  # noqa: F811
    scripted_users.script = {k: [f"question number {k} about paris"] for k in range(12)}
    for name, hazard, stop, turns in (("first", [1.0], "user_ended", 1), ("second", [0.0, 1.0], "user_ended", 2),
                                      ("never", [0.0], "max_turns", 4)):
        cfg = load_config(SimulationConfig, None, [
            f"scenarios={SMOKE}", f"out={tmp_path / name}", "samples=1", "max_turns=4", "user_backend=user_script",
            "assistant_backend=ai_script", f"user=prompted:{tiny_model}", f"assistant={tiny_model}",
            f"end_policy={sample_file(tmp_path / f'{name}.json', hazard)}"])
        info, records = load_run(simulate(cfg))
        assert info["end_policy"]["mode"] == "sample" and info["end_policy"]["hazard"] == hazard
        assert [(r["stop_reason"], r["n_user_turns"]) for r in records] == [(stop, turns)] * len(records)


def test_train_sampled_writes_a_sample_policy_that_simulate_uses(tiny_model, thanks_data, tmp_path):  # noqa: F811
    from trainer.train import TrainConfig, train

    out = tmp_path / "adapter"
    manifest = train(load_config(TrainConfig, None, [
        f"base_model={tiny_model}", f"data_dir={thanks_data}", f"output_dir={out}", "max_length=96", "max_steps=1",
        "per_device_train_batch_size=2", "max_eval_examples=2", "eval_steps=100000", "lora_r=4", "end_policy=sampled"]))
    assert manifest["end_policy"]["mode"] == "sample" and manifest["end_policy"]["hazard"][0] == 0.0
    info, _ = load_run(tiny_run(tiny_model, tmp_path / "run", f"user={out}"))
    assert info["end_policy"]["mode"] == "sample" and info["end_policy"]["file"] == str(out / "end_policy.json")
