"""benchmarks/bench_base_models.py's own logic: choosing models and the table's cells (the benchmark itself trains
two models for ~50 minutes and is run by hand, results/benchmarks/2026-11-30-cpu-gemma-rescored.md)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_base_models", ROOT / "benchmarks" / "bench_base_models.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_models_default_to_both_and_pick_a_subset_in_order():
    assert bench.pick_models(None) == list(bench.MODELS)
    assert bench.pick_models("gemma3-270m") == ["embedded:gemma3-270m"]
    assert bench.pick_models("embedded:gemma3-270m, smollm2-135m-instruct") == list(bench.MODELS)
    with pytest.raises(SystemExit, match="unknown model.*llama"):
        bench.pick_models("llama")


def test_runs_are_judged_against_people_and_the_headline_leads_the_table():
    assert bench.EVALUATORS.split(",")[0] == "people"  # discriminability and distribution_mmd need it
    assert [m for _, m in bench.COLUMNS][:3] == ["discriminability", "discriminability_people",
                                                   "distribution_mmd"]
    metrics = {"discriminability": {"run": {"value": 0.97, "ci_low": 0.9, "ci_high": 1.0}},
               "human_likeness": {"run": {"value": 0.5}}}
    row = bench.cells(metrics)
    assert row[0] == "0.970 [0.900, 1.000]" and row[4] == "0.500"
    assert row[1] == "n/a" and len(row) == len(bench.COLUMNS)
