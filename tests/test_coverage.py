"""Coverage of the gate's intervals, by simulation on real ShareGPT conversations (tests/coverage_sim.py):
samples of 4, 8, 15 and 30 conversations from 1,500 real ones, the population's value as the truth.

Fast tier: 60 repetitions per size (240 per metric, ~20 s). A coverage estimate from 240 draws of a
true 0.95 has a standard error of 0.014, so the fast test holds the pooled coverage to 0.93 - 0.02 = 0.91
(a true 0.95 falls below it with probability ~0.2%) and every size to 0.85; the slow test holds every size
to 0.93 with 300 repetitions each. A/A: the paired delta of two independent samples must hold 0 as often."""

import coverage_sim as C
import pytest


@pytest.fixture(scope="module")
def population():
    units = C.population()
    return units, C.stand_in_inputs(units)


def check(result, pooled_floor, each_floor):
    for name in C.GATED:
        r = result[name]
        for kind in ("single", "aa"):
            pooled = sum(r[kind].values()) / len(r[kind])
            assert pooled >= pooled_floor, (name, kind, r[kind])
            assert min(r[kind].values()) >= each_floor, (name, kind, r[kind])


def test_gated_intervals_cover_on_real_conversations(population):
    units, inputs = population
    assert len(units) == 1500
    check(C.coverage(units, inputs, reps=60, metrics=C.GATED), pooled_floor=0.91, each_floor=0.85)


@pytest.mark.slow
def test_gated_intervals_cover_on_real_conversations_long(population):
    units, inputs = population
    check(C.coverage(units, inputs, reps=300, seed=1, metrics=C.GATED), pooled_floor=0.93, each_floor=0.93)
