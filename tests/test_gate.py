"""Fast tier: the gate's statistics (evaluators/stats.py) and decisions (workflows/gate.py) on constructed
values whose answers are known by hand or by scipy."""

import math

import numpy as np
import pytest

from evaluators.stats import holm, interval, jackknife, minimum_detectable, paired_delta, wilson


def test_holm_steps_down_and_stops_at_the_first_kept_hypothesis():
    assert holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]  # 0.01 <= .05/3; 0.03 > .05/2: stop
    assert holm([0.01, 0.02, 0.04], 0.05) == [True, True, True]  # .0167, .025, .05
    assert holm([0.2, 0.001], 0.05) == [False, True]
    assert holm([], 0.05) == []


def test_wilson_matches_the_closed_form_and_is_never_zero_width_at_0_or_1():
    low, high = wilson(0.0, 10, 1.959963984540054)
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)  # the textbook 0/10 Wilson interval
    low, high = wilson(1.0, 4, 1.959963984540054)
    assert high == 1 and low == pytest.approx(4 / (4 + 1.959963984540054 ** 2), abs=1e-9)
    low, high = wilson(0.3, 50, 1.959963984540054)
    assert low == pytest.approx(0.1910, abs=1e-3) and high == pytest.approx(0.4375, abs=1e-3)


def test_a_proportion_at_one_gets_a_wilson_interval_on_its_conversations():
    units = [{"x": [1, 1, 1]} for _ in range(5)]
    rate = lambda us: float(np.mean([v for u in us for v in u["x"]]))
    ci = interval(units, rate, bounded=True)
    assert ci["ci_high"] == 1 and ci["ci_low"] == pytest.approx(wilson(1.0, 5, 1.959963984540054)[0])
    assert ci["ci_low"] < 0.7  # five conversations show little, though all 15 turns agree


def test_jackknife_of_a_mean_is_the_standard_error_and_clusters_leave_out_together():
    x = list(np.random.default_rng(0).normal(size=20))
    value, se, df = jackknife(x, lambda v: float(np.mean(v)))
    assert value == pytest.approx(np.mean(x)) and df == 19
    assert se == pytest.approx(np.std(x, ddof=1) / math.sqrt(20))
    _, se_c, df_c = jackknife(x, lambda v: float(np.mean(v)), clusters=[i // 2 for i in range(20)])
    assert df_c == 9 and se_c > 0


def test_a_set_statistic_is_not_pulled_down_by_repeated_units():
    from evaluators import metrics as M

    rng = np.random.default_rng(0)
    make = lambda vocab: [{"user_turns": [" ".join(f"w{rng.integers(vocab)}" for _ in range(12))]} for _ in range(40)]
    base = make(30)
    ci = interval(base, lambda us: M.distinct_n(us, 2))
    assert ci["ci_low"] < ci["value"] < ci["ci_high"] and ci["ci_high"] - ci["value"] == pytest.approx(
        ci["value"] - ci["ci_low"])
    same = paired_delta(base, base, lambda us: M.distinct_n(us, 2))
    assert same["delta"] == 0 and same["ci_low"] == same["ci_high"] == 0


def test_fixed_size_set_metrics_by_hand():
    from evaluators.set_metrics import between_distance, distinct_pair

    u = lambda text: {"user_turns": [text]}
    # pairs: (a b c, a b c): 2 distinct / 4 bigrams; (a b c, x y z) and the other: 4 / 4
    assert distinct_pair([u("a b c"), u("a b c"), u("x y z")]) == pytest.approx((0.5 + 1 + 1) / 3)
    e = np.eye(3)
    assert between_distance([e[:1], e[:1]]) == pytest.approx(0.0)  # the same turn in both: no distance
    assert between_distance([e[:2], e[2:]]) == pytest.approx(1.0)  # orthogonal across, within pairs ignored


def row(metric, delta, se, margin=0.03, direction="higher", df=None):
    return {"metric": metric, "direction": direction, "margin": margin, "max_regression": margin, "delta": delta,
            "se_low": se, "se_high": se, "df": df, "verdict": "tested"}


def test_gate_decisions_on_constructed_paired_values():
    from workflows.gate import decide

    rows = decide([row("discriminability", 0.0, 0.01, 0.05, "lower"), row("a", -0.2, 0.02), row("b", 0.0, 0.005),
                   row("c", -0.02, 0.05)], primary="discriminability", alpha=0.05)
    verdict = {r["metric"]: r["verdict"] for r in rows}
    assert verdict == {"discriminability": "non-inferior", "a": "regressed", "b": "non-inferior", "c": "inconclusive"}
    assert rows[0]["role"] == "primary" and rows[0]["level"] == 0.025 and rows[1]["level"] == pytest.approx(0.025 / 3)
    # a rise of discriminability (lower is better) beyond its margin is the primary's regression
    worse = decide([row("discriminability", 0.2, 0.02, 0.05, "lower"), row("b", 0.0, 0.005)], "discriminability")
    assert worse[0]["verdict"] == "regressed" and worse[1]["verdict"] == "non-inferior"
    # Holm: p-values just under alpha/2 / 3 and alpha/2 / 2 both reject; Bonferroni would keep the second
    from scipy.stats import norm
    ps = [0.025 / 3 * 0.99, 0.025 / 2 * 0.99, 0.9]
    rows = decide([row(m, -0.03 + norm.ppf(p) * 0.01, 0.01) for m, p in zip("xyz", ps)], primary=None, alpha=0.025)
    assert [r["verdict"] for r in rows] == ["regressed", "regressed", "inconclusive"]
    assert [r["p_value"] for r in rows] == pytest.approx(ps)


def test_minimum_detectable_drop_and_its_line():
    from workflows.gate import decide, detectable_line

    assert minimum_detectable(0.01, math.inf, 0.025, 0.8, 0.03) == pytest.approx(0.03 + (1.95996 + 0.84162) * 0.01,
                                                                                   abs=1e-5)
    rows = decide([row("human_likeness", 0.0, 0.04), row("role_adherence", 0.0, 0.01, 0.05)], "human_likeness")
    line = detectable_line(rows, 0.8)
    assert line.startswith("Smallest drop this run detects with 80% power")
    assert "human_likeness 0.142" in line and line.index("human_likeness") < line.index("role_adherence")
    # a drop of exactly the MDE is flagged about 80% of the time: its p-value sits at the level when the
    # observed delta is the MDE minus the power quantile's share
    mde = rows[0]["min_detectable_drop"]
    hit = decide([row("human_likeness", -mde + 0.8416 * 0.04, 0.04), row("role_adherence", 0.0, 0.01, 0.05)],
                 "human_likeness")[0]
    assert hit["p_value"] == pytest.approx(hit["level"], rel=1e-3)


def test_a_delta_without_an_interval_is_never_a_regression():
    from workflows.gate import decide, detectable_line

    rows = decide([row("diversity_between", -0.5, math.nan), row("role_adherence", 0.0, 0.8, 0.05)], None)
    assert rows[0]["verdict"] == "inconclusive" and math.isnan(rows[0]["p_value"])
    rows[1]["bounded"] = True  # a [0, 1] value: an MDE above 1 means no drop could be seen
    assert "role_adherence none possible" in detectable_line(rows, 0.8)


def test_replay_runs_pair_by_conversation_id_and_self_play_by_scenario_and_sample(tmp_path):
    import json

    from workflows.compare import paired_units

    def run(name, records):
        (tmp_path / name).mkdir()
        (tmp_path / name / "transcripts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        return tmp_path / name

    def rec(sample, text, conversation_id=None):
        r = {"scenario_id": "replay:test" if conversation_id else "s", "sample": sample, "stop_reason": "replayed",
             "seed": 0, "turns": [{"role": "user", "text": text}, {"role": "assistant", "text": "ok"}]}
        return {**r, "conversation_id": conversation_id} if conversation_id else r

    # The same real conversations in another plan order: samples differ, conversation ids match.
    a = run("a", [rec(0, "first a", "c1"), rec(1, "second a", "c2")])
    b = run("b", [rec(0, "second b", "c2"), rec(1, "first b", "c1"), rec(2, "third b", "c3")])
    base, cand = paired_units([a, b])
    assert [(x["user_turns"][0], y["user_turns"][0]) for x, y in zip(base, cand)] == [("first a", "first b"),
                                                                                    ("second a", "second b")]
    c, d = run("c", [rec(0, "x0"), rec(1, "x1")]), run("d", [rec(1, "y1"), rec(0, "y0")])
    base, cand = paired_units([c, d])
    assert [(x["user_turns"][0], y["user_turns"][0]) for x, y in zip(base, cand)] == [("x0", "y0"), ("x1", "y1")]
    # A run with a conversation the other lacks: compare says its sides are not evaluate's numbers of each run.
    from workflows.compare import unpaired_note
    from workflows.compare_output import summary

    assert unpaired_note([c, d], 2) is None
    note = unpaired_note([a, b], 2)
    assert "2 paired conversations (the runs hold 2 and 3)" in note and "`evaluate`" in note
    lines = summary({"regressed": [], "paired_conversations": 2, "primary": "discriminability", "alpha": 0.05,
                     "rows": [], "power": 0.8, "unpaired_note": note})
    assert lines[2].startswith("Each side is scored on the 2 paired conversations")
