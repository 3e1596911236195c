"""Fast tier: refusals where runs or real humans are not comparable (evaluators/comparability.py), on real runs
and a real 2-step adapter of the tiny model of conftest.py."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import cli, one_line_error

SMOKE = Path(__file__).resolve().parents[1] / "scenarios" / "smoke"


@pytest.fixture(scope="module")
def work(tiny_model, tmp_path_factory):
    """ShareGPT data prepared with seed 0 and with seed 1 (other split units in test), a 2-step adapter trained
    on the seed-0 train split, and one finished run of the tiny model."""
    from simulator.run import SimulationConfig, simulate
    from trainer.train import TrainConfig, train
    from userlm.config import load_config
    from userlm.data.prepare import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("comparable")
    for seed in (0, 1):
        prepare(PrepareConfig(sources=["sharegpt"], out=str(root / f"data{seed}"), max_trees_per_source=300,
                              seed=seed))
    train(load_config(TrainConfig, None, [f"base_model={tiny_model}", f"data_dir={root / 'data0'}",
                                          f"output_dir={root / 'adapter'}", "max_steps=1", "max_length=64",
                                          "per_device_train_batch_size=8", "gradient_accumulation_steps=8", "eval_steps=100000",
                                          "max_eval_examples=2", "lora_r=4"]))
    simulate(load_config(SimulationConfig, None, [f"out={root / 'run'}", "samples=1", "max_turns=1",
                                                  f"scenarios={SMOKE}", f"user=prompted:{tiny_model}",
                                                  f"assistant={tiny_model}"]))
    return root


def _variant(work: Path, tmp_path: Path, name: str, edit) -> Path:
    """A copy of the finished run whose run.json is changed by `edit` (as another simulation would write it)."""
    out = tmp_path / name
    shutil.copytree(work / "run", out)
    info = json.loads((out / "run.json").read_text())
    edit(info)
    (out / "run.json").write_text(json.dumps(info))
    return out


def _seed(info, seed=1):
    info["config"]["seed"] = info["identity"]["config"]["seed"] = seed


def _scenarios(info):
    info["identity"]["scenarios_sha256"] = "0" * 64


def test_check_comparable_names_each_difference(work):
    from evaluators.comparability import check_comparable

    info = json.loads((work / "run" / "run.json").read_text())
    assert check_comparable(info, json.loads(json.dumps(info))) == []
    other = json.loads(json.dumps(info))
    other["config"]["user"] = "another-adapter"  # the user model is what compare compares: allowed
    assert check_comparable(info, other) == []
    _seed(other)
    other["config"]["max_turns"], other["config"]["assistant"] = 7, "another-assistant"
    reasons = check_comparable(info, other)
    assert [r.split(":")[0] for r in reasons] == ["seed plan (seed)", "max_turns", "assistant"]


@pytest.mark.parametrize("edit,reason", [(_seed, "seed plan (seed): 0 vs 1"), (_scenarios, "scenario hashes")])
def test_compare_refuses_runs_of_another_seed_plan_or_scenario_version(work, tmp_path, capsys, edit, reason):
    other = _variant(work, tmp_path, "other", edit)
    # The refusal comes before the classifier is loaded: a missing one is never reached.
    code, err = cli(capsys, "compare", work / "run", other, "--scenarios", SMOKE, "--out", tmp_path / "c",
                    "--classifier", tmp_path / "no-classifier")
    assert code == 2
    one_line_error(err, "not comparable", reason)


def test_report_warns_in_one_line_when_runs_are_not_comparable(work, tmp_path, capsys):
    from evaluators.report import write_report

    runs = []
    for name, edit in (("a", lambda info: None), ("b", _seed)):
        run = _variant(work, tmp_path, name, edit)
        (run / "metrics.json").write_text(json.dumps({"label": name, "metrics": {}, "reference_dir": None}))
        runs.append(str(run))
    md, _ = write_report(runs, str(tmp_path / "report"))
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("warning: ") and "seed plan (seed): 0 vs 1" in err[0]
    assert "seed plan (seed): 0 vs 1" in md.read_text()


def test_held_out_data_the_adapter_was_trained_on_is_refused_by_content(work, capsys):
    """A reference prepared with another seed puts conversations of the adapter's train split in its test split."""
    adapter = work / "adapter"
    code, err = cli(capsys, "evaluate", "perplexity", "--model", adapter, "--data", work / "data1", "--limit", "2")
    assert code == 2
    one_line_error(err, "data1", "test conversations share a human turn", "training data")
    code, err = cli(capsys, "evaluate", "run", work / "run", "--reference", work / "data1", "--user-model", adapter,
                    "--evaluators", "behaviour")
    assert code == 2
    one_line_error(err, "share a human turn")
    # The data it was trained on, prepared with the same seed: nothing shared, nothing refused.
    from userlm.data.dedup import example_turn_hashes
    from userlm.data.prepare import read_split

    train = {h for ex in read_split(work / "data0", "train") for h in example_turn_hashes(ex)}
    assert not any(example_turn_hashes(ex) & train for ex in read_split(work / "data0", "test"))
    assert any(example_turn_hashes(ex) & train for ex in read_split(work / "data1", "test"))


def test_the_adapter_records_its_training_turns_and_old_adapters_fall_back_to_their_data(work, tmp_path, capsys):
    from userlm.data.dedup import TRAINING_HASHES, example_turn_hashes, read_hashes
    from userlm.data.prepare import read_split

    adapter = work / "adapter"
    trained = read_hashes(adapter / TRAINING_HASHES)
    manifest = json.loads((adapter / "manifest.json").read_text())
    assert trained and manifest["training_turn_hashes"] == {"file": TRAINING_HASHES, "count": len(trained)}
    leaked = sum(bool(example_turn_hashes(ex) & trained) for ex in read_split(work / "data1", "test"))
    code, err = cli(capsys, "evaluate", "perplexity", "--model", adapter, "--data", work / "data1", "--limit", "2")
    one_line_error(err, f"{leaked} of", TRAINING_HASHES)
    # An adapter trained before the hashes file: the train split of the data dir its manifest names.
    old = tmp_path / "old-adapter"
    shutil.copytree(adapter, old)
    (old / TRAINING_HASHES).unlink()
    code, err = cli(capsys, "evaluate", "perplexity", "--model", old, "--data", work / "data1", "--limit", "2")
    assert code == 2
    one_line_error(err, "share a human turn", "the train split of")  # the whole split: a superset


def test_report_compares_runs_of_one_kind_and_warns_on_other_classifiers(work, tmp_path, capsys):
    """A replay and a self-play run differ by design (no warning between them); two runs scored by different
    AI-voice classifiers get one line."""
    from evaluators.report import write_report

    def replay(info):
        info["mode"] = "replay"

    runs = []
    for name, edit, version in (("a", lambda info: None, "c1"), ("b", replay, "c1"), ("c", lambda info: None, "c2")):
        run = _variant(work, tmp_path, name, edit)
        (run / "metrics.json").write_text(json.dumps({"label": name, "metrics": {}, "reference_dir": None,
                                                      "classifier": {"version": version}}))
        runs.append(str(run))
    write_report(runs, str(tmp_path / "report"))
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["warning: the runs were scored by different AI-voice classifiers (c1, c2)"], err
