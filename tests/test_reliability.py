"""Issue 17: never destroy a user's files, never drop data silently, never answer bad input with a traceback.
Fast tests: no model is loaded (each failing case stops before one would be)."""

import json
import os
import subprocess
import sys

from pathlib import Path

import pytest
from conftest import msg, write_trees

from workflows.cli import build_parser, main, run

SMOKE_SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios" / "smoke"
TREE = {"message_tree_id": "t1", "prompt": msg("p1", "prompter", "How do I boil an egg?", [
    msg("a1", "assistant", "Boil it for 8 minutes.", [msg("p2", "prompter", "And a soft one?")])])}


def cli(capsys, *argv):
    """Run the CLI in-process; return (exit code, stderr lines)."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def one_line_error(err, *needles):
    assert len(err) == 1 and err[0].startswith("error: ") and "unexpected" not in err[0], err
    for needle in needles:
        assert str(needle) in err[0], err
    return err[0]


@pytest.fixture
def source(tmp_path):
    return write_trees(tmp_path / "x.trees.jsonl", [TREE])


# 1. --out never deletes what it did not write


def test_prepare_refuses_a_directory_of_user_files_and_keeps_them(tmp_path, capsys, source):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    code, err = cli(capsys, "data", "prepare", "--source", source, "--out", out)
    assert code == 2
    one_line_error(err, out, "--overwrite")
    assert (out / "thesis.tex").read_text() == "years of work"
    assert not list(tmp_path.glob(".mine.partial-*"))


def test_prepare_out_dot_and_project_root_are_refused(tmp_path, capsys, source, monkeypatch):
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / "notes.txt").write_text("keep")
    monkeypatch.chdir(project)
    for out, extra in ((".", []), (".", ["--overwrite"]), (str(project), ["--overwrite"])):
        code, err = cli(capsys, "data", "prepare", "--source", source, "--out", out, *extra)
        assert code == 2
        one_line_error(err)
    monkeypatch.chdir(tmp_path)
    code, err = cli(capsys, "data", "prepare", "--source", source, "--out", project, "--overwrite")
    assert code == 2 and ".git" in one_line_error(err, project)
    assert (project / "notes.txt").read_text() == "keep" and (project / ".git").is_dir()


def test_prepare_replaces_its_own_output_an_empty_dir_or_with_overwrite(tmp_path, capsys, source):
    out = tmp_path / "data"
    out.mkdir()  # empty
    assert cli(capsys, "data", "prepare", "--source", source, "--out", out)[0] == 0
    first = json.loads((out / "manifest.json").read_text())
    assert first["kind"] == "userlm-prepared-data"
    assert cli(capsys, "data", "prepare", "--source", source, "--out", out, "--seed", "1")[0] == 0
    assert json.loads((out / "manifest.json").read_text())["config"]["seed"] == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "old.txt").write_text("x")
    assert cli(capsys, "data", "prepare", "--source", source, "--out", other, "--overwrite")[0] == 0
    assert not (other / "old.txt").exists() and (other / "manifest.json").exists()


def test_leftover_partial_directories_of_killed_runs_are_cleaned(tmp_path, capsys, source):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = tmp_path / f".data.partial-{dead.pid}-abc123"
    leftover.mkdir()
    (leftover / "train.jsonl").write_text("{}\n")
    legacy = tmp_path / ".data.partial-k2j3h4"  # v0.1 naming (no process id)
    legacy.mkdir()
    alive = tmp_path / f".data.partial-{os.getpid()}-zzz"  # a live writer's scratch is left alone
    alive.mkdir()
    assert cli(capsys, "data", "prepare", "--source", source, "--out", tmp_path / "data")[0] == 0
    assert not leftover.exists() and not legacy.exists() and alive.exists()


def test_simulate_refuses_an_unrelated_run_json_and_a_foreign_directory(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "run.json").write_text('{"my": "own file"}\n')
    code, err = cli(capsys, "simulate", "--scenarios", SMOKE_SCENARIOS, "--out", out, "--samples", 1)
    assert code == 2
    one_line_error(err, "run.json", "--overwrite")
    assert json.loads((out / "run.json").read_text()) == {"my": "own file"}
    (out / "run.json").unlink()
    (out / "paper.pdf").write_text("keep")
    code, err = cli(capsys, "simulate", "--scenarios", SMOKE_SCENARIOS, "--out", out, "--samples", 1)
    assert code == 2 and (out / "paper.pdf").read_text() == "keep"


def test_train_classifier_refuses_before_training(tmp_path, capsys):
    out = tmp_path / "clf"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    code, err = cli(capsys, "evaluate", "train-classifier", "--set", f"out={out}")
    assert code == 2
    one_line_error(err, out)
    assert (out / "keep.txt").exists()


# 5. exit codes: 0 success, 2 any error, compare 1 for a regression only


def test_any_exception_is_exit_2_and_one_line(capsys):
    def boom(args):
        raise ValueError("something\nwent wrong")

    parser = build_parser()
    parser._subparsers._group_actions[0].choices["report"].set_defaults(func=boom)
    assert run(["report", "x"], parser) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "ValueError" in err[0] and "Traceback" not in err[0]


def test_compare_adapter_without_manifest_is_an_error_not_a_regression(tmp_path, capsys):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    code, err = cli(capsys, "compare", adapter, adapter, "--scenarios", SMOKE_SCENARIOS, "--out", tmp_path / "c")
    assert code == 2
    one_line_error(err, "manifest.json")


def test_corrupt_manifest_is_exit_2_naming_file_and_line(tmp_path, capsys, source):
    out = tmp_path / "d"
    assert cli(capsys, "data", "prepare", "--source", source, "--out", out)[0] == 0
    (out / "manifest.json").write_text('{\n "counts": {},\n "content_hash": \n')
    code, err = cli(capsys, "data", "stats", out)
    assert code == 2
    one_line_error(err, "manifest.json:4")
    (out / "manifest.json").write_text('{"kind": "userlm-prepared-data"}')
    code, err = cli(capsys, "data", "stats", out)
    assert code == 2 and "'counts'" in one_line_error(err, "manifest.json")


def test_exit_codes_in_a_real_process(tmp_path, source):
    run_cli = lambda *a: subprocess.run([sys.executable, "-m", "workflows.cli", *map(str, a)],
                                        capture_output=True, text=True)
    assert run_cli("data", "prepare", "--source", source, "--out", tmp_path / "ok").returncode == 0
    r = run_cli("data", "stats", tmp_path / "nothing")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
