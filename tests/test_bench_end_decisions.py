"""benchmarks/bench_end_decisions.py's own logic: named runs with TrainConfig overrides, which training rows they
share, and the share of conversations ended within 3 user turns (the benchmark itself trains on a GPU:
results/benchmarks/2026-11-30-h200-end-weight.md)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_end_decisions", ROOT / "benchmarks" / "bench_end_decisions.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_runs_carry_their_overrides_and_share_rows_unless_the_end_share_differs(tmp_path):
    w5 = bench.parse_run("w5=50,end_loss_weight=5")
    assert w5 == {"name": "w5", "steps": 50, "sets": ("end_loss_weight=5",)}
    assert bench.recipe("d", 50, sets=w5["sets"]).end_loss_weight == 5
    plain, share = bench.parse_run("w1=50"), bench.parse_run("es=50,end_share=0.3")
    assert bench.rows_file(tmp_path, w5) == bench.rows_file(tmp_path, plain) == tmp_path / "rows-50.json.xz"
    assert bench.rows_file(tmp_path, share) == tmp_path / "rows-50-es0.3.json.xz"


def test_ended_within_three_user_turns_at_the_threshold_when_sampling_and_for_people():
    # two conversations: A's decisions after user turns 1..4 (the person stopped after 4), B's after 1..2 (stopped)
    conv = np.array(["a"] * 4 + ["b"] * 2)
    users = np.array([1, 2, 3, 4, 1, 2])
    y = np.array([0, 0, 0, 1, 0, 1])
    p = np.array([0.1, 0.1, 0.5, 0.9, 0.2, 0.2])
    cells = [c.split(" [")[0] for c in bench.with_ci(p, y, conv, users, t=0.5, reps=10).split(" | ")]
    at_threshold, sampled, people = (float(c) for c in cells[5:8])
    assert at_threshold == 0.5  # A ends at its 3rd decision, B never (0.2 < 0.5)
    assert sampled == pytest.approx(((1 - 0.9 * 0.9 * 0.5) + (1 - 0.8 * 0.8)) / 2, abs=1e-3)
    assert people == 0.5  # B stopped within 3 user turns, A after 4
