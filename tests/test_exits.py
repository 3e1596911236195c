"""Issue 27 item 5: Ctrl-C at any moment exits 130 with one line and no traceback (also while the modules
load, before the command's own handler), and a closed stdout pipe exits quietly (141, as `yes | head`)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TREE, write_trees

ROOT = Path(__file__).resolve().parents[1]
# The console script's own code (`from workflows.entry import main; sys.exit(main())`), with an audit hook that
# sends this process SIGINT the moment a given module starts importing: the interrupt lands mid-import.
CHILD = """
import os, signal, sys
target = sys.argv.pop(1)
def hook(event, args):
    if event == "import" and args[0] == target and not getattr(hook, "done", False):
        hook.done = True
        os.kill(os.getpid(), signal.SIGINT)
sys.addaudithook(hook)
from workflows.entry import main
sys.exit(main())
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from workflows.cli import main

    root = tmp_path_factory.mktemp("exits")
    src = write_trees(root / "x.trees.jsonl", [TREE])
    assert main(["data", "prepare", "--source", str(src), "--out", str(root / "d")]) == 0
    return root / "d"


# yaml and rich load with workflows.cli, trainer.train while the parser is built, userlm.data.stats in the
# command (by then the command's own handler prints the longer note)
@pytest.mark.parametrize("module", ["yaml", "rich", "workflows.flags", "trainer.train", "userlm.data.stats"])
def test_ctrl_c_while_modules_load_exits_130_without_traceback(data_dir, module):
    done = subprocess.run([sys.executable, "-c", CHILD, module, "data", "stats", str(data_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("interrupted"), done.stderr
    assert done.stdout == ""  # the command did not carry on


def test_closed_stdout_pipe_exits_quietly(data_dir):
    read_end, write_end = os.pipe()
    os.close(read_end)  # `... --json | true`: the reader is gone before the first write
    try:
        done = subprocess.run([sys.executable, "-m", "workflows.entry", "data", "stats", str(data_dir), "--json"],
                              cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 128 + signal.SIGPIPE and done.stderr == "", done.stderr
