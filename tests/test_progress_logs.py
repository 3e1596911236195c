"""A log is not a terminal: where stderr is not a TTY, no bar redraws itself with '\\r' (tqdm bars such as
transformers' GGUF conversion and the trainer's step bar are off; training prints a line per logging step);
on a terminal the bars stay."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAR = ("from userlm.quiet import quiet_library_noise; quiet_library_noise()\n"
       "from tqdm.auto import tqdm\n"  # what transformers' GGUF conversion draws its bar with
       "for _ in tqdm(range(20), desc='Converting', mininterval=0, ncols=80): pass\n")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")}
    return {**env, "OMP_NUM_THREADS": "1"}


def test_a_tqdm_bar_is_off_in_a_log_and_kept_on_a_terminal():
    piped = subprocess.run([sys.executable, "-c", BAR], capture_output=True, cwd=ROOT, env=_env(), timeout=60)
    assert piped.returncode == 0 and b"\r" not in piped.stdout + piped.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # rows, columns: a terminal's
    try:
        done = subprocess.run([sys.executable, "-c", BAR], stdout=subprocess.DEVNULL, stderr=follower, cwd=ROOT,
                              env=_env(), timeout=60)
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the pty's other end is closed: all read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0 and b"Converting" in shown and b"\r" in shown


def test_training_in_a_log_prints_lines_not_a_redrawn_bar(tiny_model, tmp_path):
    from userlm.data.prepare import PrepareConfig, prepare

    prepare(PrepareConfig(sources=["sharegpt"], out=str(tmp_path / "data"), max_trees_per_source=100))
    cmd = [sys.executable, "-m", "workflows.cli", "train", "--set", f"base_model={tiny_model}",
           "--set", f"data_dir={tmp_path / 'data'}", "--set", f"output_dir={tmp_path / 'adapter'}",
           "--set", "max_steps=3", "--set", "logging_steps=1", "--set", "max_length=64",
           "--set", "per_device_train_batch_size=2", "--set", "eval_steps=100000", "--set", "max_eval_examples=2",
           "--set", "lora_r=4", "--set", "report_to=none"]
    done = subprocess.run(cmd, capture_output=True, cwd=ROOT, env=_env(), timeout=300)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-2000:]
    assert b"\r" not in log
    assert log.count(b"'loss'") == 3  # one line per logged step
