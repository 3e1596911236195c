"""`userlm` command line: flags made from the config dataclasses (flags.py), heavy imports in the handlers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from userlm.config import to_dict
from userlm.io import UserError, check_replaceable, overwrite_allowed
from userlm.quiet import quiet_library_noise
from userlm.threads import configure_threads
from workflows.entry import exit_code, interrupts_raise
from workflows.flags import add_config_file_flags, add_config_flags, config_from_args


def _console():
    from rich.console import Console

    return Console(stderr=False)


def cmd_data_prepare(args) -> int:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from userlm.data.prepare import PrepareConfig, prepare
    from userlm.data.stats import data_stats, print_stats

    cfg = config_from_args(PrepareConfig, args)
    check_replaceable(cfg.out, kind="userlm-prepared-data")  # before reading the sources, not after
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("reading trees", total=None)
        manifest = prepare(cfg, progress=lambda n: bar.update(task, description=f"{n:,} trees"))
    print_stats(data_stats(cfg.out), _console())
    for src in manifest["sources"]:
        for note in src["notes"]:
            print(f"note: {note}")
    print(f"wrote {cfg.out} ({manifest['seconds']} s, content hash {manifest['content_hash'][:12]})")
    return 0


def cmd_data_intents(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from workflows.intents import IntentsConfig, write_intents

    cfg = config_from_args(IntentsConfig, args)
    with Progress(TextColumn("[bold]intents[/bold]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("", total=None)
        summary = write_intents(cfg, progress=lambda n, total: bar.update(task, completed=n, total=total))
    print(f"{summary['examples']} examples: {summary['written_now']} written, {summary['from_cache']} from cache; "
          f"usable {summary['usable']}, flagged {summary['flagged'] or 'none'}; mean {summary['mean_words']} words "
          f"(writer {summary['writer']}) -> {cfg.data_dir}/intents.jsonl")
    return 0


def cmd_data_stats(args) -> int:
    from userlm.data.stats import data_stats, print_stats

    stats = data_stats(args.dir)
    if args.json:
        print(json.dumps(stats["splits"], indent=2))
    else:
        print_stats(stats, _console())
    return 0


def cmd_data_end_policy(args) -> int:
    from userlm.end_policy import summary, write_policy

    print(summary(write_policy(args.dir, args.out, args.mode), args.out))
    return 0


def cmd_train(args) -> int:
    from trainer.train import TrainConfig, train

    train(config_from_args(TrainConfig, args), resume=args.resume)
    return 0


def cmd_simulate(args) -> int:
    from simulator.run import SimulationConfig, simulate

    simulate(config_from_args(SimulationConfig, args), resume=args.resume)
    return 0


def cmd_evaluate(args) -> int:
    from evaluators.run import EvaluateConfig, evaluate_run

    evaluate_run(**to_dict(config_from_args(EvaluateConfig, args)), console=_console())
    return 0


def cmd_evaluate_perplexity(args) -> int:
    from evaluators.perplexity import PerplexityConfig, perplexity_of, perplexity_summary

    result = perplexity_of(**to_dict(config_from_args(PerplexityConfig, args)))
    print(json.dumps(result) if args.json else perplexity_summary(result))
    return 0


def cmd_train_classifier(args) -> int:
    from evaluators.classifier import ClassifierConfig, train_classifier

    cfg = config_from_args(ClassifierConfig, args)
    if cfg.out:
        check_replaceable(cfg.out, kind="userlm-ai-voice-classifier")  # before training, not after
    train_classifier(cfg, console=_console())
    return 0


# Files a command writes into a directory it did not create, and a string each of them holds: one that lacks
# it was not written by userlm and is not overwritten without --overwrite.
OWN_FILE_MARKERS = {"report.md": "# User-model comparison (", "report.html": "<title>userlm report</title>",
                    "compare.json": '"paired_conversations"', "compare.md": "paired conversations. Verdict:"}


def _check_own_files(paths) -> None:
    for path in map(Path, paths):
        if overwrite_allowed.get() or not path.exists():
            continue
        if path.is_dir():
            raise UserError(f"{path}: is a directory; choose another --out")
        head = path.read_bytes()[:65536].decode("utf-8", errors="ignore")
        marker = OWN_FILE_MARKERS.get(path.name, '"p_ai"')
        if marker not in head:
            raise UserError(f"{path}: exists and was not written by userlm; choose another --out, "
                            f"or pass --overwrite to replace it")


def cmd_score_texts(args) -> int:
    from evaluators.classifier import score_texts_file

    _check_own_files([args.out or Path(args.file).with_suffix(".scored.jsonl")])
    score_texts_file(args.file, args.out, classifier=args.classifier)
    return 0


def cmd_report(args) -> int:
    from evaluators.report import write_report

    _check_own_files([Path(args.out) / "report.md", Path(args.out) / "report.html"])
    write_report(args.runs, args.out, console=_console())
    return 0


def cmd_compare(args) -> int:
    from workflows.compare import CompareConfig, compare_main

    cfg = config_from_args(CompareConfig, args)
    _check_own_files([Path(cfg.out) / "compare.json", Path(cfg.out) / "compare.md"])
    return compare_main(cfg, console=_console())  # 0, 1 for a regression, 2


def cmd_demo(args) -> int:
    from workflows.demo import DemoConfig, run_demo

    run_demo(**to_dict(config_from_args(DemoConfig, args)), console=_console())
    return 0


def _command(sub, name: str, help: str, func, config: type | None = None, positional: tuple[str, ...] = (),
             overwrite: bool = False) -> argparse.ArgumentParser:
    """A subcommand running `func`; with a `config` dataclass, a flag per field (its `positional` fields as
    arguments), `--config` and `--set`; then `--overwrite` where asked."""
    p = sub.add_parser(name, help=help)
    if config is not None:
        add_config_flags(p, config, positional)
        add_config_file_flags(p, config)
    if overwrite:
        _add_overwrite_arg(p)
    p.set_defaults(func=func)
    return p


def _add_simulate_args(p: argparse.ArgumentParser) -> None:
    from simulator.run import SimulationConfig

    add_config_flags(p, SimulationConfig)
    add_config_file_flags(p, SimulationConfig)
    p.add_argument("--resume", action="store_true", help="finish an interrupted run in --out")
    _add_overwrite_arg(p)
    _add_threads_arg(p)
    p.set_defaults(func=cmd_simulate)


def _add_overwrite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace an output directory that userlm did not write (default: refuse)")


def _add_threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=argparse.SUPPRESS,
                   help="CPU threads for torch (default: the cores available to this process, shared among the "
                        "processes of a launch on this host; env USERLM_THREADS)")


def build_parser() -> argparse.ArgumentParser:
    from evaluators.classifier_config import ClassifierConfig
    from evaluators.perplexity import PerplexityConfig
    from evaluators.run import EvaluateConfig
    from trainer.train import TrainConfig
    from userlm.data.prepare import PrepareConfig
    from workflows.compare import CompareConfig
    from workflows.demo import DemoConfig
    from workflows.intents import IntentsConfig

    parser = argparse.ArgumentParser(prog="userlm", description="Build and judge user models (LLMs that play the human).")
    _add_threads_arg(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="prepare conversation data").add_subparsers(dest="data_command", required=True)
    _command(data, "prepare", "real conversations -> user-model training splits", cmd_data_prepare, PrepareConfig,
             overwrite=True)
    _command(data, "intents", "an instruct model writes each conversation's high-level intent", cmd_data_intents,
             IntentsConfig, positional=("data_dir",))
    p = _command(data, "stats", "describe a prepared directory", cmd_data_stats)
    p.add_argument("dir", help="a prepared data directory")
    p.add_argument("--json", action="store_true", help="print the per-split counts as JSON")
    p = _command(data, "end-policy", "fit a learned end policy (when people stop) on a prepared dir's recorded ends",
                 cmd_data_end_policy)
    p.add_argument("dir", help="a prepared data directory whose source records ends (ShareGPT)")
    p.add_argument("--out", required=True, help="the policy JSON to write (e.g. ADAPTER_DIR/end_policy.json)")
    from userlm.end_policy import MODES  # stdlib and userlm.io only: --help stays instant

    p.add_argument("--mode", choices=MODES, default="threshold",
                   help="threshold: end where six features' p(end) >= the validation F1-best threshold; sample: end "
                        "at people's end rate a user turn, drawn from the conversation's seed (default: %(default)s)")

    p = _command(sub, "train", "train a user-model adapter (TRL SFT + LoRA/QLoRA)", cmd_train, TrainConfig)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")

    _add_simulate_args(sub.add_parser("simulate", help="self-play between a user model and an assistant"))

    ev = sub.add_parser("evaluate", help="score how human a run's simulated user is",
                        description="`userlm evaluate RUN_DIR` is short for `userlm evaluate run RUN_DIR`.")
    ev_sub = ev.add_subparsers(dest="evaluate_command", required=True)
    _command(ev_sub, "run", "evaluate one run directory (the default: `userlm evaluate RUN_DIR`)", cmd_evaluate,
             EvaluateConfig, positional=("run_dir",))
    p = _command(ev_sub, "perplexity", "perplexity of a model or adapter on real held-out human turns",
                 cmd_evaluate_perplexity, PerplexityConfig)
    p.add_argument("--json", action="store_true", help='print {"perplexity" (per word), "words", "examples", ...}')
    _command(ev_sub, "train-classifier", "train the AI-voice classifier on real data", cmd_train_classifier,
             ClassifierConfig, overwrite=True)
    p = _command(ev_sub, "score-texts", "P(AI) for each {\"text\": ...} line of a JSONL file", cmd_score_texts)
    p.add_argument("file", help='a JSONL file of {"text": ...} lines')
    p.add_argument("--out", help="output JSONL (default: FILE.scored.jsonl)")
    p.add_argument("--classifier", help="AI-voice classifier dir (default: the cached default)")
    _add_overwrite_arg(p)

    p = _command(sub, "report", "compare evaluated runs in markdown + HTML", cmd_report)
    p.add_argument("runs", nargs="+", help="evaluated run directories, one row each")
    p.add_argument("--out", default="results/report", help="where report.md and report.html go")
    _add_overwrite_arg(p)
    _command(sub, "compare", "regression check: is CANDIDATE worse than BASELINE? (exit 1 if so)", cmd_compare,
             CompareConfig, positional=("baseline", "candidate"), overwrite=True)
    _command(sub, "demo", "the whole job on the embedded defaults, offline", cmd_demo, DemoConfig)
    for leaf in _leaf_parsers(parser):
        if leaf.get_default("func") not in (cmd_simulate, cmd_data_stats, cmd_report):
            _add_threads_arg(leaf)
    return parser


def _leaf_parsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from _leaf_parsers(child) if any(
                    isinstance(a, argparse._SubParsersAction) for a in child._actions) else [child]


EVALUATE_COMMANDS = {"run", "perplexity", "train-classifier", "score-texts", "-h", "--help"}


def run(argv: list[str] | None, parser: argparse.ArgumentParser) -> int:
    """Exit 0 on success, 2 on any error (one line on stderr, no traceback; USERLM_TRACEBACK=1 shows it),
    130 on Ctrl-C; `compare` returns 1 for a regression."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) > 1 and argv[0] == "evaluate" and argv[1] not in EVALUATE_COMMANDS:
        argv.insert(1, "run")
    args = parser.parse_args(argv)
    token = overwrite_allowed.set(bool(getattr(args, "overwrite", False)))
    try:
        interrupts_raise()  # installed by the entry point (entry.py) before the imports
        configure_threads(getattr(args, "threads", None))
        quiet_library_noise()  # the log shows the command's stages, not known library warnings
        return args.func(args)
    except BaseException as e:  # noqa: BLE001 - one line and an exit code, never a traceback
        return exit_code(e)
    finally:
        overwrite_allowed.reset(token)


def main(argv: list[str] | None = None) -> int:
    return run(argv, build_parser())


def simulate_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simulate", description="Self-play between a user model and an assistant.")
    _add_simulate_args(parser)
    return run(argv, parser)


if __name__ == "__main__":
    from workflows.entry import main as guarded_main

    sys.exit(guarded_main())
