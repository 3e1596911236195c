"""`userlm` command line. Heavy libraries are imported inside the handlers so `--help` is instant."""

from __future__ import annotations

import argparse
import sys


def _console():
    from rich.console import Console

    return Console(stderr=False)


def cmd_data_prepare(args) -> int:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from userlm.data.prepare import PrepareConfig, prepare
    from workflows.flags import config_from_args

    cfg = config_from_args(PrepareConfig, args)
    from userlm.io import check_replaceable

    check_replaceable(cfg.out, kind="userlm-prepared-data")  # before reading the sources, not after
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("reading trees", total=None)
        manifest = prepare(cfg, progress=lambda n: bar.update(task, description=f"{n:,} trees"))
    from userlm.data.stats import data_stats, print_stats

    print_stats(data_stats(cfg.out), _console())
    for src in manifest["sources"]:
        for note in src["notes"]:
            print(f"note: {note}")
    print(f"wrote {cfg.out} ({manifest['seconds']} s, content hash {manifest['content_hash'][:12]})")
    return 0


def cmd_data_intents(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from workflows.flags import config_from_args
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
    import json

    from userlm.data.stats import data_stats, print_stats

    stats = data_stats(args.dir)
    if args.json:
        print(json.dumps(stats["splits"], indent=2))
    else:
        print_stats(stats, _console())
    return 0


def cmd_train(args) -> int:
    from trainer.train import TrainConfig, train
    from workflows.flags import config_from_args

    cfg = config_from_args(TrainConfig, args)
    train(cfg, resume=args.resume)
    return 0


def cmd_simulate(args) -> int:
    from simulator.run import SimulationConfig, simulate
    from workflows.flags import config_from_args

    cfg = config_from_args(SimulationConfig, args)
    simulate(cfg, resume=args.resume)
    return 0


def cmd_evaluate(args) -> int:
    from evaluators.run import evaluate_run

    evaluate_run(args.run_dir, reference=args.reference, classifier=args.classifier, user_model=args.user_model,
                 base_model=args.base_model, evaluators=args.evaluators, console=_console())
    return 0


def cmd_evaluate_perplexity(args) -> int:
    import json

    from evaluators.perplexity import perplexity_of

    result = perplexity_of(args.model, args.data, args.split, limit=args.limit, max_length=args.max_length,
                           base_model=args.base_model)
    if args.json:
        print(json.dumps(result))
    else:
        base = result.get("base")
        print(f"{args.model}: perplexity {result['perplexity']:.3f} on {result['tokens']:,} target tokens of "
              f"{result['examples']} {args.split} examples" + (f"; base {base['model']}: {base['perplexity']:.3f}"
                                                               if base else ""))
        if "intent" in result:
            i = result["intent"]
            print(f"on the {i['examples']} examples with written intents: {i['perplexity_with_intent']:.3f} with "
                  f"the intent, {i['perplexity_without_intent']:.3f} without")
    return 0


def cmd_train_classifier(args) -> int:
    from evaluators.classifier import ClassifierConfig, train_classifier
    from workflows.flags import config_from_args

    cfg = config_from_args(ClassifierConfig, args)
    if cfg.out:
        from userlm.io import check_replaceable

        check_replaceable(cfg.out, kind="userlm-ai-voice-classifier")  # before training, not after
    train_classifier(cfg, console=_console())
    return 0


# Files a command writes into a directory it did not create, and a string each of them holds: one that lacks
# it was not written by userlm and is not overwritten without --overwrite.
OWN_FILE_MARKERS = {"report.md": "# User-model comparison (", "report.html": "<title>userlm report</title>",
                    "compare.json": '"paired_conversations"', "compare.md": "paired conversations. Verdict:"}


def _check_own_files(paths) -> None:
    from pathlib import Path

    from userlm.io import UserError, overwrite_allowed

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
    from pathlib import Path

    from evaluators.classifier import score_texts_file

    _check_own_files([args.out or Path(args.file).with_suffix(".scored.jsonl")])
    score_texts_file(args.file, args.out, classifier=args.classifier)
    return 0


def cmd_report(args) -> int:
    from pathlib import Path

    from evaluators.report import write_report

    _check_own_files([Path(args.out) / "report.md", Path(args.out) / "report.html"])
    write_report(args.runs, args.out, console=_console())
    return 0


def cmd_compare(args) -> int:
    from pathlib import Path

    from workflows.compare import compare_main

    _check_own_files([Path(args.out) / "compare.json", Path(args.out) / "compare.md"])
    return compare_main(args, console=_console())


def cmd_demo(args) -> int:
    from workflows.demo import run_demo

    run_demo(workdir=args.workdir, quick=args.quick, console=_console())
    return 0


def _add_config_args(p: argparse.ArgumentParser, cls: type, positional: tuple[str, ...] = ()) -> None:
    from workflows.flags import add_config_file_flags, add_config_flags

    add_config_flags(p, cls, positional)
    add_config_file_flags(p, cls)


def _add_simulate_args(p: argparse.ArgumentParser) -> None:
    from simulator.run import SimulationConfig

    _add_config_args(p, SimulationConfig)
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
    from trainer.train import TrainConfig
    from userlm.data.prepare import PrepareConfig
    from workflows.intents import IntentsConfig

    parser = argparse.ArgumentParser(prog="userlm", description="Build and judge user models (LLMs that play the human).")
    _add_threads_arg(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="prepare conversation data").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("prepare", help="real conversations -> user-model training splits")
    _add_config_args(p, PrepareConfig)
    _add_overwrite_arg(p)
    p.set_defaults(func=cmd_data_prepare)
    p = data.add_parser("intents", help="an instruct model writes each conversation's high-level intent")
    _add_config_args(p, IntentsConfig, positional=("data_dir",))
    p.set_defaults(func=cmd_data_intents)
    p = data.add_parser("stats", help="describe a prepared directory")
    p.add_argument("dir", help="a prepared data directory")
    p.add_argument("--json", action="store_true", help="print the per-split counts as JSON")
    p.set_defaults(func=cmd_data_stats)

    p = sub.add_parser("train", help="train a user-model adapter (TRL SFT + LoRA/QLoRA)")
    _add_config_args(p, TrainConfig)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    p.set_defaults(func=cmd_train)

    _add_simulate_args(sub.add_parser("simulate", help="self-play between a user model and an assistant"))

    ev = sub.add_parser("evaluate", help="score how human a run's simulated user is",
                        description="`userlm evaluate RUN_DIR` is short for `userlm evaluate run RUN_DIR`.")
    ev_sub = ev.add_subparsers(dest="evaluate_command", required=True)
    p = ev_sub.add_parser("run", help="evaluate one run directory (the default: `userlm evaluate RUN_DIR`)")
    p.add_argument("run_dir", help="a finished simulation run directory")
    p.add_argument("--reference", help="prepared data dir with real held-out human turns")
    p.add_argument("--classifier", help="AI-voice classifier dir (default: the cached default)")
    p.add_argument("--user-model", help="user model for perplexity (default: the run's user model)")
    p.add_argument("--base-model", help="base model for perplexity beside it")
    p.add_argument("--evaluators", help="comma-separated names (default: all)")
    p.set_defaults(func=cmd_evaluate)
    p = ev_sub.add_parser("perplexity", help="perplexity of a model or adapter on real held-out human turns")
    p.add_argument("--model", required=True, help="adapter dir, model ref, base:MODEL or prompted:MODEL")
    p.add_argument("--data", required=True, help="prepared data dir")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"], help="which split to score")
    p.add_argument("--limit", type=int, default=0, help="examples at most, sampled with seed 0 (0 = all)")
    p.add_argument("--max-length", dest="max_length", type=int, default=384, help="tokens per example at most")
    p.add_argument("--base-model", dest="base_model", help="score this model beside it (default: an adapter's base)")
    p.add_argument("--json", action="store_true", help='print {"perplexity", "tokens", "examples", ...}')
    p.set_defaults(func=cmd_evaluate_perplexity)
    p = ev_sub.add_parser("train-classifier", help="train the AI-voice classifier on real data")
    _add_config_args(p, ClassifierConfig)
    _add_overwrite_arg(p)
    p.set_defaults(func=cmd_train_classifier)
    p = ev_sub.add_parser("score-texts", help="P(AI) for each {\"text\": ...} line of a JSONL file")
    p.add_argument("file", help='a JSONL file of {"text": ...} lines')
    p.add_argument("--out", help="output JSONL (default: FILE.scored.jsonl)")
    p.add_argument("--classifier", help="AI-voice classifier dir (default: the cached default)")
    _add_overwrite_arg(p)
    p.set_defaults(func=cmd_score_texts)

    p = sub.add_parser("report", help="compare evaluated runs in markdown + HTML")
    p.add_argument("runs", nargs="+", help="evaluated run directories, one row each")
    p.add_argument("--out", default="results/report", help="where report.md and report.html go")
    _add_overwrite_arg(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="regression check: is CANDIDATE worse than BASELINE? (exit 1 if so)")
    p.add_argument("baseline", help="a finished run, or an adapter dir (simulated and cached)")
    p.add_argument("candidate", help="a finished run, or an adapter dir (simulated and cached)")
    p.add_argument("--scenarios", required=True, help="scenario YAML file or folder both sides are simulated on")
    p.add_argument("--thresholds", help="YAML of per-metric thresholds (default: built in)")
    p.add_argument("--out", default="results/compare", help="where compare.json and compare.md go")
    p.add_argument("--reference", help="prepared data dir: real humans for turn_length_w1 and the table, and the "
                                       "classifier trained on its train split")
    p.add_argument("--classifier", help="AI-voice classifier dir (default: the one for --reference's data)")
    p.add_argument("--samples", type=int, help="conversations per scenario (default: the scenario files')")
    p.add_argument("--seed", type=int, default=0, help="simulation seed (default: 0)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="simulation config override")
    _add_overwrite_arg(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("demo", help="the whole job on the embedded defaults, offline")
    p.add_argument("--workdir", default="work/demo", help="where every stage's output goes (default: work/demo)")
    p.add_argument("--quick", action="store_true", help="a few-minute variant")
    p.set_defaults(func=cmd_demo)
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
    import os

    from userlm.io import UserError, overwrite_allowed

    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) > 1 and argv[0] == "evaluate" and argv[1] not in EVALUATE_COMMANDS:
        argv.insert(1, "run")
    args = parser.parse_args(argv)
    token = overwrite_allowed.set(bool(getattr(args, "overwrite", False)))
    try:
        from userlm.threads import configure_threads

        configure_threads(getattr(args, "threads", None))
        from userlm.quiet import quiet_library_noise

        quiet_library_noise()  # the log shows the command's stages, not known library warnings
        return args.func(args)
    except UserError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is saved; run the same command again (with --resume) to continue",
              file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - any error is one line and exit 2, never a traceback
        if os.environ.get("USERLM_TRACEBACK"):
            import traceback

            traceback.print_exc()
        elif isinstance(e, OSError) and e.filename is not None:
            print(f"error: {e.filename}: {e.strerror or _one_line(str(e))}", file=sys.stderr)
        else:
            print(f"error: unexpected {type(e).__name__}: {_one_line(str(e))} "
                  f"(a bug; USERLM_TRACEBACK=1 shows where)", file=sys.stderr)
        return 2
    finally:
        overwrite_allowed.reset(token)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500] or "(no message)"


def main(argv: list[str] | None = None) -> int:
    return run(argv, build_parser())


def simulate_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simulate", description="Self-play between a user model and an assistant.")
    _add_simulate_args(parser)
    return run(argv, parser)


if __name__ == "__main__":
    sys.exit(main())
