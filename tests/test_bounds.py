"""Issue 27 item 4: bounds and types on every numeric option and scenario field, duplicate YAML keys refused,
unknown `compare --set` fields refused. Fast: every case fails before a model loads (the ones that hung or
planned 10^12 jobs on the old code are checked where the config is built, so the old code fails, not hangs)."""

import dataclasses

import pytest
from conftest import SMOKE_SCENARIOS, cli, one_line_error

from userlm.io import UserError

pytestmark = pytest.mark.usefixtures("keep_thread_settings")


@pytest.mark.parametrize("argv, needles", [
    (["data", "prepare", "--dedup-min-words", "-5"], ["dedup_min_words", "--dedup-min-words", ">= 1", "-5"]),
    (["data", "prepare", "--test-fraction", "-0.5", "--validation-fraction", "0.4"], ["test_fraction", "0 to 1"]),
    (["data", "prepare", "--validation-fraction", "1.5"], ["validation_fraction", "0 to 1"]),
    (["data", "prepare", "--set", "test_fraction=nan"], ["test_fraction", "nan"]),
    (["data", "prepare", "--max-trees-per-source", "0"], ["max_trees_per_source", ">= 1"]),
    (["evaluate", "perplexity", "--model", "m", "--data", "d", "--limit", "-1"], ["limit", ">= 0", "-1"]),
    (["evaluate", "perplexity", "--model", "m", "--data", "d", "--max-words", "-1"], ["max_words", ">= 0"]),
    (["train", "--data-dir", "d", "--max-train-examples", "0"], ["max_train_examples", ">= 1"]),
    (["train", "--data-dir", "d", "--weight-decay", "-1"], ["weight_decay", ">= 0"]),
    (["train", "--data-dir", "d", "--intent-share", "2"], ["intent_share", "0 to 1"]),
    (["evaluate", "train-classifier", "--data", "nowhere", "--max-per-class-per-source", "0"],
     ["max_per_class_per_source", ">= 1"]),
])
def test_numeric_options_out_of_bounds_are_one_line_errors(tmp_path, capsys, argv, needles):
    # a missing source or data dir: the old code, which took these values, stops there instead of working
    prepare = ["--source", tmp_path / "none.json", "--out", tmp_path / "o"] if argv[:2] == ["data", "prepare"] else []
    code, err = cli(capsys, *argv, *prepare)
    assert code == 2
    one_line_error(err, *needles)
    assert not (tmp_path / "o").exists()


def test_every_numeric_config_field_has_bounds():
    """Each int or float field of every command's config states its bounds (seeds excepted: any int is a seed)."""
    from evaluators.classifier_config import ClassifierConfig
    from evaluators.perplexity import PerplexityConfig
    from simulator.run import SimulationConfig
    from trainer.train import TrainConfig
    from userlm.config import field_types
    from userlm.data.prepare import PrepareConfig
    from workflows.compare import CompareConfig
    from workflows.flags import base_type
    from workflows.intents import IntentsConfig

    unbounded = [f"{cls.__name__}.{f.name}" for cls in (ClassifierConfig, PerplexityConfig, SimulationConfig,
                                                        TrainConfig, PrepareConfig, CompareConfig, IntentsConfig)
                 for f in dataclasses.fields(cls) if base_type(field_types(cls)[f.name]) in (int, float)
                 and f.name != "seed" and "min" not in f.metadata and "max" not in f.metadata]
    assert not unbounded


def test_intents_batch_size_and_limit_must_be_positive(tmp_path):
    from workflows.intents import IntentsConfig

    with pytest.raises(UserError, match=r"batch_size.*--batch-size.*>= 1, got -1"):  # spun forever before
        IntentsConfig(data_dir=str(tmp_path), batch_size=-1)
    with pytest.raises(UserError, match=r"'limit'.*>= 1, got -1"):
        IntentsConfig(data_dir=str(tmp_path), limit=-1)
    with pytest.raises(UserError, match=r"max_copied.*0 to 1"):
        IntentsConfig(data_dir=str(tmp_path), max_copied=1.5)


def test_samples_and_max_turns_have_upper_bounds(tmp_path, capsys):
    from simulator.run import SimulationConfig
    from userlm.scenarios import MAX_SAMPLES, load_scenarios

    with pytest.raises(UserError, match=rf"'samples'.*1 to {MAX_SAMPLES}, got 1000000000000"):
        SimulationConfig(samples=10**12)  # the old code planned 10^12 jobs in memory (3 GB in 19 s)
    with pytest.raises(UserError, match=r"'max_turns'.*1 to 1000"):
        SimulationConfig(max_turns=10**6)
    with pytest.raises(UserError, match=r"'batch_size'.*>= 1"):
        SimulationConfig(batch_size=0)
    for field, value in (("samples", 1000000000000), ("max_turns", 5000), ("samples", 0)):
        path = tmp_path / f"{field}.yaml"
        path.write_text(f"id: s\ndescription: d\n{field}: {value}\n")
        with pytest.raises(UserError, match=rf"{path}: field '{field}' must be 1 to"):
            load_scenarios(path)
    assert load_scenarios(SMOKE_SCENARIOS)  # the shipped ones pass


@pytest.mark.parametrize("text, line", [
    ("samples: 2\nseed: 1\nsamples: 3\n", 3),
    ("backend_options:\n  timeout_s: 5\n  timeout_s: 6\n", 3),
])
def test_duplicate_keys_in_a_config_file_are_refused(tmp_path, capsys, text, line):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    code, err = cli(capsys, "simulate", "--config", path, "--out", tmp_path / "r", "--user", tmp_path / "none")
    assert code == 2 and not (tmp_path / "r").exists()
    one_line_error(err, str(path), "duplicate key", f"line {line}")


def test_duplicate_keys_in_scenarios_and_thresholds_are_refused(tmp_path, capsys):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("- id: a\n  description: x\n  samples: 2\n  samples: 300\n")
    code, err = cli(capsys, "simulate", "--scenarios", scenario, "--out", tmp_path / "r", "--user", tmp_path / "none")
    assert code == 2
    one_line_error(err, "s.yaml:4", "duplicate key 'samples'")
    thresholds = tmp_path / "t.yaml"
    thresholds.write_text("human_likeness:\n  max_regression: 0.1\nhuman_likeness:\n  max_regression: 0.9\n")
    from workflows.compare import load_thresholds

    with pytest.raises(UserError, match=r"t.yaml.*duplicate key 'human_likeness' on line 3 \(first on line 1\)"):
        load_thresholds(str(thresholds))


def test_yaml_merge_keys_may_still_override():
    from userlm.yamlio import load_yaml

    assert load_yaml("b: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\n")["d"] == {"x": 3, "y": 2}
    with pytest.raises(Exception, match="duplicate key 'a'"):
        load_yaml("{a: 1, a: 2}")


@pytest.mark.parametrize("item, needle", [("bogus=1", "unknown field 'bogus'"), ("samples=0", "samples must be"),
                                          ("seed=x", "field 'seed' must be int")])
def test_compare_set_is_checked_even_when_both_sides_are_runs(tmp_path, capsys, item, needle):
    code, err = cli(capsys, "compare", tmp_path / "a", tmp_path / "b", "--scenarios", SMOKE_SCENARIOS,
                    "--set", item, "--out", tmp_path / "o")
    assert code == 2
    one_line_error(err, "--set", needle)


def test_help_shows_the_bounds(capsys):
    code = None
    try:
        cli(capsys, "data", "prepare", "--help")
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr().out
    assert code == 0 and "(default: 8; >= 1)" in " ".join(out.split())
