"""Issue 27 items 1 and 2: `--overwrite` never empties a folder userlm did not write, `--resume` continues only
a directory of its own kind, one process at a time writes a run directory (an OS lock naming the other
process), and `evaluate` refuses transcripts that repeat a (scenario, sample). Fast: no model is loaded."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SMOKE_SCENARIOS, cli, one_line_error

from userlm.io import UserError, overwrite_allowed

pytestmark = pytest.mark.usefixtures("keep_thread_settings")
ROOT = Path(__file__).resolve().parents[1]


def users_folder(path: Path) -> Path:
    """A folder of the user's own files, such as a home folder."""
    (path / "Documents").mkdir(parents=True)
    (path / "Documents" / "thesis.tex").write_text("years of work")
    (path / ".bashrc").write_text("export A=1\n")
    (path / "README.md").write_text("my readme\n")
    return path


def untouched(path: Path) -> bool:
    return ((path / "Documents" / "thesis.tex").read_text() == "years of work"
            and (path / "README.md").read_text() == "my readme\n" and (path / ".bashrc").exists()
            and sorted(p.name for p in path.iterdir()) == [".bashrc", "Documents", "README.md"])


# 1. --overwrite and --resume


def test_prepare_overwrite_never_empties_a_home_folder(tmp_path, capsys, source, monkeypatch):
    home = users_folder(tmp_path / "home" / "me")
    monkeypatch.setenv("HOME", str(home))
    code, err = cli(capsys, "data", "prepare", "--source", source, "--out", Path("~").expanduser(), "--overwrite")
    assert code == 2
    one_line_error(err, home, "not written by userlm", "even with --overwrite")
    assert untouched(home)


def test_overwrite_replaces_only_what_userlm_wrote(tmp_path, capsys, source):
    adapter = tmp_path / "adapter"  # userlm output of another kind: --overwrite replaces it
    adapter.mkdir()
    (adapter / "manifest.json").write_text('{"kind": "userlm-adapter"}')
    code, err = cli(capsys, "data", "prepare", "--source", source, "--out", adapter)
    assert code == 2 and "--overwrite" in one_line_error(err, "userlm-adapter")
    assert cli(capsys, "data", "prepare", "--source", source, "--out", adapter, "--overwrite")[0] == 0
    assert json.loads((adapter / "manifest.json").read_text())["kind"] == "userlm-prepared-data"
    clf = users_folder(tmp_path / "clf")
    code, err = cli(capsys, "evaluate", "train-classifier", "--set", f"out={clf}", "--overwrite")
    assert code == 2 and untouched(clf)
    one_line_error(err, clf, "even with --overwrite")


def tiny_run(tiny_model, out):
    """simulate arguments for a tiny run (what the old code ran instead of refusing took a second)."""
    return ["simulate", "--scenarios", SMOKE_SCENARIOS, "--out", out, "--samples", 1, "--max-turns", 1,
            "--user", f"base:{tiny_model}", "--assistant", tiny_model]


def test_simulate_overwrite_never_writes_into_a_users_folder(tmp_path, capsys, tiny_model):
    out = users_folder(tmp_path / "mine")
    code, err = cli(capsys, *tiny_run(tiny_model, out), "--overwrite")
    assert code == 2 and untouched(out)
    one_line_error(err, out, "even with --overwrite")
    (out / "run.json").write_text('{"my": "run.json"}')
    code, err = cli(capsys, *tiny_run(tiny_model, out), "--overwrite")
    assert code == 2 and json.loads((out / "run.json").read_text()) == {"my": "run.json"}
    one_line_error(err, "run.json")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "manifest.json").write_text('{"kind": "userlm-adapter"}')
    code, err = cli(capsys, *tiny_run(tiny_model, adapter), "--overwrite")
    assert code == 2 and sorted(p.name for p in adapter.iterdir()) == ["manifest.json"]
    one_line_error(err, "userlm-adapter", "not a simulation run")


def test_simulate_overwrite_starts_its_own_run_over(tmp_path):
    from simulator.run import finished_conversations

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"kind": "userlm-simulation-run", "identity": {"a": 1}, "config": {}}))
    (run / "transcripts.jsonl").write_text('{"scenario_id": "s", "sample": 0, "stop_reason": "x", "turns": []}\n')
    (run / "notes.txt").write_text("kept")
    with pytest.raises(UserError, match="--overwrite to start it over"):
        finished_conversations(run, {"a": 2}, resume=False)
    token = overwrite_allowed.set(True)
    try:
        assert finished_conversations(run, {"a": 2}, resume=False) == set()
    finally:
        overwrite_allowed.reset(token)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt", "run.json"]


@pytest.mark.parametrize("holds", ["user files", "prepared data"])
def test_train_resume_continues_only_an_adapter_directory(tmp_path, capsys, source, tiny_model, holds):
    data = tmp_path / "data"
    assert cli(capsys, "data", "prepare", "--source", source, "--out", data)[0] == 0
    out = users_folder(tmp_path / "mine") if holds == "user files" else data
    before = sorted(p.name for p in out.iterdir())
    code, err = cli(capsys, "train", "--base-model", tiny_model, "--data-dir", data, "--output-dir", out, "--resume",
                    "--max-steps", 1)
    assert code == 2
    one_line_error(err, out, "--resume continues only an adapter directory",
                   "files userlm did not write" if holds == "user files" else "userlm-prepared-data")
    assert sorted(p.name for p in out.iterdir()) == before
    assert holds != "user files" or untouched(out)


# 2. one writer per directory; evaluate refuses repeated keys


def hold_lock(path: Path) -> subprocess.Popen:
    """Another process holding `path`'s lock, as a running `simulate` / `train` / `prepare` does."""
    code = f"import sys, time; from userlm.locks import locked\nwith locked({str(path)!r}):\n print('held', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_directory_another_process_writes_is_refused_naming_its_pid(tmp_path, capsys, source, tiny_model):
    data = tmp_path / "data"
    assert cli(capsys, "data", "prepare", "--source", source, "--out", data)[0] == 0
    run, adapter = tmp_path / "run", tmp_path / "adapter"
    holders = [hold_lock(p) for p in (run, data, adapter)]
    try:
        for argv, pid in (
                (tiny_run(tiny_model, run), holders[0].pid),
                (["data", "prepare", "--source", source, "--out", data, "--seed", 3], holders[1].pid),
                (["data", "intents", data, "--model", tiny_model], holders[1].pid),
                (["train", "--base-model", tiny_model, "--data-dir", data, "--output-dir", adapter, "--max-steps", 1],
                 holders[2].pid)):
            code, err = cli(capsys, *argv)
            assert code == 2, argv
            one_line_error(err, f"another userlm process (pid {pid}) is writing it")
        assert not run.exists() and not adapter.exists()
        assert json.loads((data / "manifest.json").read_text())["config"]["seed"] == 0
    finally:
        for proc in holders:
            proc.kill()  # a crash: the OS releases the lock
            proc.wait()
    assert cli(capsys, "data", "prepare", "--source", source, "--out", data, "--seed", 3)[0] == 0
    from userlm.locks import lock_file

    assert not lock_file(data).exists()  # a released lock leaves no file behind


def test_simulate_together_locks_every_run_directory(tmp_path, capsys, tiny_model):
    from simulator.run import SimulationConfig, simulate_together

    holder = hold_lock(tmp_path / "b")
    try:
        cfgs = [SimulationConfig(scenarios=str(SMOKE_SCENARIOS), out=str(tmp_path / n), samples=1, max_turns=1,
                                 user=f"base:{tiny_model}", assistant=tiny_model) for n in "ab"]
        with pytest.raises(UserError, match=f"pid {holder.pid}"):
            simulate_together(cfgs)
        assert not (tmp_path / "a").exists()
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_reentrant_in_one_process_and_released_after(tmp_path):
    from userlm.locks import lock_file, locked

    with locked(tmp_path / "d"):
        with locked(tmp_path / "d"):  # a stage inside another stage of one command
            pass
        assert lock_file(tmp_path / "d").read_text().strip() == str(__import__("os").getpid())
    assert not lock_file(tmp_path / "d").exists()
    start = time.perf_counter()
    with locked(tmp_path / "d"):
        pass
    assert time.perf_counter() - start < 1


def test_evaluate_refuses_transcripts_with_repeated_keys(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({
        "kind": "userlm-simulation-run", "identity": {}, "config": {"user": "u", "assistant": "a"},
        "total_conversations": 3, "finished_at": "2026-11-30T00:00:00+0000"}))
    record = lambda sample, seed: json.dumps({"scenario_id": "s1", "sample": sample, "seed": seed, "stop_reason": "max_turns",
                                              "turns": [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "yo"}]})
    (run / "transcripts.jsonl").write_text("\n".join([record(0, 1), record(1, 2), record(0, 3)]) + "\n")
    code, err = cli(capsys, "evaluate", run, "--evaluators", "termination")
    assert code == 2
    one_line_error(err, "transcripts.jsonl", "record 3", "scenario_id 's1', sample 0", "record 1")
