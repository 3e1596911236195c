"""The metric registry: one declaration per metric, read alike by evaluate and compare."""

import numpy as np
import pytest

from evaluators import metrics as M


def conversations(seed: int, n: int = 12) -> list[dict]:
    """Units as evaluate scores them, with what the against-people evaluator puts on them (out-of-fold
    discriminator scores, both sides' embeddings and style rows, end decisions)."""
    rng = np.random.default_rng(seed)
    return [{"id": f"s{i % 3}#{i}", "scenario_id": f"s{i % 3}", "intent": "",
             "user_turns": [" ".join(f"w{rng.integers(40)}" for _ in range(rng.integers(2, 9)))
                            for _ in range(rng.integers(1, 4))],
             "truncated": [False], "ended_by_user": bool(i % 2),
             "disc": [(1, rng.uniform(), i % 2), (0, rng.uniform(), i % 2)], "emb": (rng.normal(size=(2, 4)), rng.normal(size=(2, 4))),
             "style": (rng.normal(size=(2, 3)), rng.normal(size=(2, 3))),
             "ends": [(bool(rng.integers(2)), bool(rng.integers(2))) for _ in range(3)]} for i in range(n)]


def inputs_for(*groups: list[dict], reference: list[dict]) -> M.Inputs:
    rng = np.random.default_rng(1)
    texts = sorted({t for units in groups for u in units for t in u["user_turns"]})
    vectors = rng.normal(size=(len(texts), 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return M.Inputs(p_ai=dict(zip(texts, rng.uniform(size=len(texts)))), vectors=dict(zip(texts, vectors)),
                    reference=reference)


def test_every_metric_is_declared_with_a_direction_and_a_description():
    for name, metric in M.METRICS.items():
        assert metric.name == name and metric.direction in (-1, 0, 1) and metric.description
        assert not (metric.needs_reference and metric.reference_row)  # a distance to humans has no human row
    assert "mean_turn_words" not in M.COMPARABLE and "turn_length_w1" in M.COMPARABLE
    # Judged against people first; controls and what measures the setup (a capped length) are never gated.
    assert list(M.METRICS)[0] == "discriminability" and M.METRICS["discriminability"].headline
    assert M.METRICS["discriminability"].direction == -1 and "discriminability" in M.COMPARABLE
    assert {"discriminability_people", "embedding_mmd_people", "distribution_mmd_people", "end_f1_always", "conversation_length_w1",
            "termination_rate"}.isdisjoint(M.COMPARABLE)
    assert M.METRICS["termination_rate"].direction == 0 and M.METRICS["conversation_length_w1"].measures_setup


def test_evaluate_and_compare_score_a_metric_with_the_same_statistic():
    from evaluators.registry import Context, scored
    from workflows.compare import metric_row

    run, other, real = conversations(0), conversations(2), conversations(3, 30)
    inputs = inputs_for(run, other, real, reference=real)
    evaluated = scored(Context(units=run, reference=real, run_info={}), M.COMPARABLE, inputs)
    for name in M.COMPARABLE:
        spec = {"direction": M.direction_word(name), "max_regression": 0.0}
        row = metric_row(name, spec, None, run, other, real, inputs)
        assert row["baseline"] == pytest.approx(evaluated[name]["run"]["value"], nan_ok=True), name
        # compare shows a real-human value exactly where evaluate scores one (not diversity_first, truncated_share)
        assert ("real_humans" in row) == ("reference" in evaluated[name]) == M.METRICS[name].reference_row, name
        if M.METRICS[name].reference_row:
            assert row["real_humans"] == pytest.approx(evaluated[name]["reference"]["value"], nan_ok=True), name
        same = metric_row(name, spec, None, run, run, real, inputs)
        assert same["verdict"] in ("tested", "skipped") and same.get("delta", 0) == 0, name
