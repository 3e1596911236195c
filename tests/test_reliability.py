"""Issue 17: never destroy a user's files, exit codes, command-line values and thread counts (rules 1, 5, 4, 6;
rules 2 and 3, bad input, are test_bad_input.py). Fast tests: no model is loaded (each failing case stops
before one would be)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import SMOKE_SCENARIOS, cli, one_line_error

from workflows.cli import build_parser, run

pytestmark = pytest.mark.usefixtures("keep_thread_settings")


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


def test_prepare_replaces_its_own_output_or_an_empty_dir(tmp_path, capsys, source):
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
    assert cli(capsys, "data", "prepare", "--source", source, "--out", other, "--overwrite")[0] == 2  # issue 27
    assert (other / "old.txt").exists() and not (other / "manifest.json").exists()


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
                                        capture_output=True, text=True, check=False)
    assert run_cli("data", "prepare", "--source", source, "--out", tmp_path / "ok").returncode == 0
    r = run_cli("data", "stats", tmp_path / "nothing")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


# 4. command-line values parsed by their declared type, not as YAML


def test_option_values_are_not_yaml(tmp_path, capsys, source, monkeypatch):
    from trainer.train import TrainConfig
    from userlm.config import load_config

    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "data", "prepare", "--source", source, "--out", "runs/run #1")[0] == 0
    assert (tmp_path / "runs" / "run #1" / "manifest.json").exists() and not (tmp_path / "runs" / "run").exists()
    assert cli(capsys, "data", "prepare", "--source", source, "--set", "out=sets/run #2", "--set", "greeting=no")[0] == 0
    manifest = json.loads((tmp_path / "sets" / "run #2" / "manifest.json").read_text())
    assert manifest["config"]["greeting"] == "no"  # a string field stays a string (YAML would say False)
    foreign = tmp_path / "r #1"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    code, err = cli(capsys, "simulate", "--scenarios", SMOKE_SCENARIOS, "--out", foreign)
    assert code == 2 and "r #1:" in one_line_error(err)
    cfg = load_config(TrainConfig, None, ["learning_rate=5e-4", "max_train_examples=null", "gradient_checkpointing=yes"])
    assert (cfg.learning_rate, cfg.max_train_examples, cfg.gradient_checkpointing) == (5e-4, None, True)
    (tmp_path / "c.yaml").write_text("learning_rate: 5e-4\n")
    assert load_config(TrainConfig, tmp_path / "c.yaml").learning_rate == 5e-4
    code, err = cli(capsys, "train", "--set", "learning_rate=fast")
    assert code == 2
    one_line_error(err, "learning_rate", "fast")


# 6. torch threads from the cores available to this process, per process of a launch, overridable


def _threads_in_subprocess(env_extra, *argv):
    env = {k: v for k, v in os.environ.items() if k not in (
        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "USERLM_THREADS", "LOCAL_WORLD_SIZE", "WORLD_SIZE")}
    code = ("import sys; from userlm.threads import configure_threads; "
            "n = configure_threads(int(sys.argv[1]) if len(sys.argv) > 1 else None); "
            "import torch; print(n, torch.get_num_threads())")
    r = subprocess.run([sys.executable, "-c", code, *argv], env={**env, **env_extra}, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return tuple(map(int, r.stdout.split()))


def test_thread_count_follows_available_cores_launch_and_override(capsys):
    from userlm.threads import available_cores

    cores = available_cores()
    assert cores <= len(os.sched_getaffinity(0))
    assert _threads_in_subprocess({}) == (cores, cores)
    assert _threads_in_subprocess({"LOCAL_WORLD_SIZE": "2"}) == (max(1, cores // 2),) * 2
    assert _threads_in_subprocess({"LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}) == (max(1, cores // 2),) * 2
    assert _threads_in_subprocess({"USERLM_THREADS": "1"}) == (1, 1)
    assert _threads_in_subprocess({"USERLM_THREADS": "2", "OMP_NUM_THREADS": "2"}, "1") == (1, 1)  # --threads wins
    code, err = cli(capsys, "data", "prepare", "--threads", "0", "--source", "x")
    assert code == 2
    one_line_error(err, "threads")


def test_prepare_never_replaces_another_kind_of_userlm_output(tmp_path, capsys, source):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "manifest.json").write_text('{"kind": "userlm-adapter"}')
    (adapter / "adapter_model.safetensors").write_text("hours of training")
    code, err = cli(capsys, "data", "prepare", "--source", source, "--out", adapter)
    assert code == 2
    one_line_error(err, adapter, "userlm-adapter")
    assert (adapter / "adapter_model.safetensors").exists()


def test_report_compare_and_score_texts_never_overwrite_a_users_file(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for name, argv in (("report.md", ["report", tmp_path / "run", "--out", out]),
                       ("compare.json", ["compare", "a", "b", "--scenarios", SMOKE_SCENARIOS, "--out", out])):
        (out / name).write_text("my notes")
        code, err = cli(capsys, *argv)
        assert code == 2
        one_line_error(err, name, "--overwrite")
        assert (out / name).read_text() == "my notes"
    texts = tmp_path / "t.jsonl"
    texts.write_text('{"text": "hi"}\n')
    (tmp_path / "t.scored.jsonl").write_text("mine\n")
    code, err = cli(capsys, "evaluate", "score-texts", texts)
    assert code == 2 and (tmp_path / "t.scored.jsonl").read_text() == "mine\n"
    one_line_error(err, "t.scored.jsonl")
