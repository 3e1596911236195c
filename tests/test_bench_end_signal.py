"""benchmarks/bench_end_signal.py's statistics on constructed decisions: a user that samples its end with p = the
truth is right in expectation, a sampling user with a flat p reads below always-end, the within-3 share."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_end_signal", ROOT / "benchmarks" / "bench_end_signal.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_stats_of_a_perfect_and_of_a_flat_user():
    # two conversations: A's decisions after user turns 1..4 (the person stopped after 4), B's after 1..2 (stopped)
    y = np.array([0, 0, 0, 1, 0, 1])
    first3 = np.array([True, True, True, False, True, True])
    groups = [np.arange(4), np.arange(4, 6)]
    auroc, f1, always, diff, sampled, sdiff, within, people = bench.stats(y.astype(float), 0.5, y, first3, groups,
                                                                         np.arange(2))
    assert (auroc, f1, sampled, within) == (1.0, 1.0, 1.0, 0.5)  # A's end comes at its 4th user turn
    assert always == pytest.approx(2 * 2 / (6 + 2)) and diff == pytest.approx(1 - always) and people == 0.5
    flat = np.full(6, 2 / 6)  # calibrated on average, blind to when
    _, _, _, _, sampled, sdiff, within, _ = bench.stats(flat, 0.5, y, first3, groups, np.arange(2))
    assert sampled == pytest.approx(2 * (2 / 6 * 2) / (2 + 2)) and sdiff < 0  # 1/3 < always-end's 1/2
    assert within == pytest.approx(np.mean([1 - (2 / 3) ** 3, 1 - (2 / 3) ** 2]))


def test_more_features_read_cut_off_answers_continue_and_lists():
    h = [{"role": "user", "content": "write a list"}, {"role": "assistant", "content": "1. one\n2. two and"},
         {"role": "user", "content": "continue?"}, {"role": "assistant", "content": "Sorry, as an AI I stop here."}]
    cut, cont, asks, sorry, listed, _, first, messages = bench.more_features(h[:2])
    assert (cut, cont, asks, sorry, listed, first, messages) == (1.0, 0.0, 0.0, 0.0, 1.0, np.log1p(3), 2.0)
    cut, cont, asks, sorry, listed, _, _, _ = bench.more_features(h)
    assert (cut, cont, asks, sorry, listed) == (0.0, 1.0, 1.0, 1.0, 0.0)
