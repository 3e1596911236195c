"""Every command documents every option, and the flags made from the config dataclasses build the same
config as YAML and `--set` do."""

import argparse
import dataclasses

import pytest

from workflows.cli import build_parser


def _parsers(parser, path=("userlm",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def test_every_option_of_every_command_has_help():
    seen = 0
    for path, parser in _parsers(build_parser()):
        text = parser.format_help()  # formats (a stray % in a help text would raise here)
        assert text.startswith("usage:")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help and action.help != argparse.SUPPRESS, f"{' '.join(path)}: {name} has no help"
            seen += 1
    assert seen > 100


@pytest.mark.parametrize("module, name", [("userlm.data.prepare", "PrepareConfig"), ("trainer.train", "TrainConfig"),
                                          ("simulator.run", "SimulationConfig"), ("workflows.intents", "IntentsConfig"),
                                          ("evaluators.classifier_config", "ClassifierConfig"),
                                          ("evaluators.run", "EvaluateConfig"),
                                          ("evaluators.perplexity", "PerplexityConfig"),
                                          ("workflows.compare", "CompareConfig"), ("workflows.demo", "DemoConfig")])
def test_every_config_field_has_help_and_a_flag(module, name):
    import importlib

    cls = getattr(importlib.import_module(module), name)
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f"{name}.{f.name}"
    required = {f.name: "x" for f in dataclasses.fields(cls) if f.default is f.default_factory is dataclasses.MISSING}
    cls(**required)  # the defaults pass their own checks


def test_flags_yaml_and_set_build_one_config(tmp_path):
    from simulator.run import SimulationConfig
    from userlm.io import UserError
    from workflows.flags import config_from_args

    parser = build_parser()
    (tmp_path / "c.yaml").write_text("samples: 3\nbackend_options: {base_url: 'http://h/v1'}\n")
    args = parser.parse_args(["simulate", "--config", str(tmp_path / "c.yaml"), "--set", "seed=4", "--max-turns", "2",
                              "--static-cache", "off", "--backend-arg", "retries=0", "--backend-arg", "api_key=k"])
    cfg = config_from_args(SimulationConfig, args)
    assert (cfg.samples, cfg.seed, cfg.max_turns, cfg.static_cache) == (3, 4, 2, "off")
    assert cfg.backend_options == {"base_url": "http://h/v1", "retries": "0", "api_key": "k"}
    with pytest.raises(SystemExit):  # argparse's own usage error, exit 2
        parser.parse_args(["simulate", "--static-cache", "maybe"])
    with pytest.raises(UserError, match="field 'static_cache' must be one of auto, on, off"):
        SimulationConfig(static_cache="maybe")
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        config_from_args(SimulationConfig, parser.parse_args(["simulate", "--backend-arg", "retries"]))


def test_old_flag_spellings_still_parse():
    from userlm.data.prepare import PrepareConfig
    from workflows.flags import config_from_args
    from workflows.intents import IntentsConfig

    parser = build_parser()
    args = parser.parse_args(["data", "prepare", "--source", "sharegpt", "--source", "x.json", "--lang", "en",
                              "--branches", "best", "--seed", "2", "--skip-bad", "--out", "o"])
    cfg = config_from_args(PrepareConfig, args)
    assert (cfg.sources, cfg.lang, cfg.branches, cfg.seed, cfg.skip_bad, cfg.out) == (
        ["sharegpt", "x.json"], ["en"], "best", 2, True, "o")
    assert config_from_args(PrepareConfig, parser.parse_args(["data", "prepare"])).skip_bad is False
    args = parser.parse_args(["data", "intents", "d", "--split-limit", "train=200", "--split-limit", "test=40",
                              "--limit", "5", "--backend", "openai", "--model", "m"])
    cfg = config_from_args(IntentsConfig, args)
    assert (cfg.data_dir, cfg.split_limits, cfg.limit, cfg.backend, cfg.model) == (
        "d", {"train": 200, "test": 40}, 5, "openai", "m")


def test_a_rechecked_flag_value_names_the_real_flag():
    from simulator.run import SimulationConfig
    from userlm.config import load_config
    from userlm.io import UserError

    with pytest.raises(UserError, match="^--backend-arg: field 'backend_options' must be dict"):
        load_config(SimulationConfig, values_from_cli={"backend_options": "x"})


def test_base_type_reads_through_optional_and_generics():
    from typing import Literal

    from workflows.flags import base_type

    assert base_type(dict[str, int] | None) is dict and base_type(int | None) is int and base_type(list) is list
    assert base_type(Literal["a", "b"]) is Literal and base_type(str) is str


def _captured(parser, *path):
    """Run the CLI with the handler at `path` replaced by one that returns its parsed args."""
    seen = {}
    leaf = parser
    for name in path:
        leaf = next(a for a in leaf._actions if isinstance(a, argparse._SubParsersAction)).choices[name]

    def handler(args):
        seen["args"] = args
        return 0

    leaf.set_defaults(func=handler)
    return seen


def test_evaluate_perplexity_compare_and_demo_flags_build_their_configs(tmp_path):
    from evaluators.perplexity import PerplexityConfig
    from evaluators.run import EvaluateConfig
    from workflows.cli import run
    from workflows.compare import CompareConfig
    from workflows.demo import DemoConfig
    from workflows.flags import config_from_args

    parser = build_parser()
    seen = _captured(parser, "evaluate", "run")
    assert run(["evaluate", "r", "--reference", "d", "--user-model", "u", "--base-model", "b", "--evaluators",
                "ai_voice,behaviour"], parser) == 0  # `userlm evaluate RUN_DIR` is `evaluate run RUN_DIR`
    assert config_from_args(EvaluateConfig, seen["args"]) == EvaluateConfig(
        run_dir="r", reference="d", user_model="u", base_model="b", evaluators="ai_voice,behaviour")
    args = parser.parse_args(["evaluate", "perplexity", "--model", "m", "--data", "d", "--split", "validation",
                              "--limit", "6", "--max-words", "192", "--base-model", "b", "--json"])
    assert args.json and config_from_args(PerplexityConfig, args) == PerplexityConfig(
        model="m", data_dir="d", split="validation", limit=6, max_words=192, base_model="b")
    args = parser.parse_args(["compare", "base", "cand", "--scenarios", "s", "--thresholds", "t.yaml", "--out", "o",
                              "--reference", "d", "--classifier", "c", "--samples", "6", "--seed", "3",
                              "--set", "max_turns=2", "--set", "assistant=a", "--overwrite"])
    assert args.overwrite and config_from_args(CompareConfig, args) == CompareConfig(
        baseline="base", candidate="cand", scenarios="s", thresholds="t.yaml", out="o", reference="d",
        classifier="c", samples=6, seed=3, sim_overrides=["max_turns=2", "assistant=a"])
    assert config_from_args(CompareConfig, parser.parse_args(["compare", "b", "c", "--scenarios", "s"])) == \
        CompareConfig(baseline="b", candidate="c", scenarios="s", out="results/compare", seed=0)
    assert config_from_args(DemoConfig, parser.parse_args(["demo", "--quick", "--workdir", "w"])) == \
        DemoConfig(workdir="w", quick=True)
    assert config_from_args(DemoConfig, parser.parse_args(["demo"])) == DemoConfig(workdir="work/demo", quick=False)


def test_a_yaml_config_sets_the_new_commands_fields_under_their_flags(tmp_path):
    from evaluators.perplexity import PerplexityConfig
    from workflows.compare import CompareConfig
    from workflows.flags import config_from_args

    parser = build_parser()
    (tmp_path / "p.yaml").write_text("model: m\ndata_dir: d\nlimit: 5\nmax_words: 100\n")
    args = parser.parse_args(["evaluate", "perplexity", "--config", str(tmp_path / "p.yaml"), "--set", "split=train",
                              "--max-words", "64"])
    assert config_from_args(PerplexityConfig, args) == PerplexityConfig(
        model="m", data_dir="d", split="train", limit=5, max_words=64)
    # compare's --set is the simulation override it always was; its own fields come from flags or --config
    (tmp_path / "c.yaml").write_text("scenarios: s\nseed: 7\nsim_overrides: [max_turns=3]\n")
    cfg = config_from_args(CompareConfig, parser.parse_args(["compare", "b", "c", "--config", str(tmp_path / "c.yaml")]))
    assert (cfg.scenarios, cfg.seed, cfg.sim_overrides) == ("s", 7, ["max_turns=3"])


@pytest.mark.parametrize("argv, needle", [
    (["evaluate", "perplexity", "--data", "d"], "missing required field(s): model (--model)"),
    (["compare", "b", "c"], "missing required field(s): scenarios (--scenarios)"),
    (["evaluate", "perplexity", "--config", "{yaml}"], "field 'split' must be one of train, validation, test"),
    (["demo", "--config", "{yaml}"], "unknown field 'model' (known: quick, workdir)"),
    (["evaluate", "run", "r", "--set", "reference"], "expected key=value"),
])
def test_a_bad_value_for_a_new_config_is_one_line_and_exit_2(tmp_path, capsys, argv, needle):
    from workflows.cli import main

    (tmp_path / "bad.yaml").write_text("model: m\ndata_dir: d\nsplit: dev\n")
    assert main([a.replace("{yaml}", str(tmp_path / "bad.yaml")) for a in argv]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    with pytest.raises(SystemExit) as e:  # a value argparse can check is its own usage error, exit 2
        build_parser().parse_args(["evaluate", "perplexity", "--model", "m", "--data", "d", "--limit", "many"])
    assert e.value.code == 2


@pytest.mark.parametrize("outcome, code", [({"exit_code": 0}, 0), ({"exit_code": 1}, 1), (RuntimeError("x"), 2)])
def test_compare_exit_codes_pass_through_the_config(tmp_path, monkeypatch, capsys, outcome, code):
    import workflows.compare as C
    from workflows.cli import main

    calls = []

    def fake_compare(**kwargs):
        calls.append(kwargs)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(C, "compare", fake_compare)
    assert main(["compare", "b", "c", "--scenarios", "s", "--set", "max_turns=2", "--out", str(tmp_path)]) == code
    assert calls[0]["sim_overrides"] == ["max_turns=2"] and calls[0]["baseline"] == "b" and "console" in calls[0]
