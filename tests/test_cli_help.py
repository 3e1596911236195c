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
                                          ("evaluators.classifier_config", "ClassifierConfig")])
def test_every_config_field_has_help_and_a_flag(module, name):
    import importlib

    cls = getattr(importlib.import_module(module), name)
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f"{name}.{f.name}"
    cls()  # the defaults pass their own checks


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
