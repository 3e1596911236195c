"""benchmarks/bench_schedulers.py: bench_simulation's scheduler names split into base, wide-row kernel and flags; a
misspelt name exits with a line naming it (before any model loads); ratios use the warm runs' mean."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_schedulers", ROOT / "benchmarks" / "bench_schedulers.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_names_split_into_base_kernel_and_flags():
    assert bench.parse("static-loop-triton-rejection-fused-kv-head-lean-all-cp-res-overlap-fold") == (
        "static-loop", "triton-rejection", {"-fused", "-kv", "-head", "-lean", "-all", "-cp", "-res", "-overlap", "-fold"})
    assert bench.parse("dynamic") == ("dynamic", "torch", set())
    assert bench.parse("static-loop-triton-split-full") == ("static-loop", "triton-split-full", set())
    assert bench.parse("static-fold-noguard") == ("static", "torch", {"-fold", "-noguard"})


@pytest.mark.parametrize("name", ["static-lop", "static-loop-triton-rejection-fussed", "static-loop-triton-bogus", ""])
def test_a_misspelt_name_exits_naming_it(name):
    with pytest.raises(SystemExit, match=f"unknown scheduler {name!r}"):
        bench.parse(name)


def test_warm_mean_leaves_out_the_cold_first_run():
    assert bench.warm([100.0, 10.0, 12.0]) == 11.0
    assert bench.warm([7.0]) == 7.0


def test_configure_sets_the_flags_and_keeps_the_chunk(monkeypatch):
    """bench_simulation.configure switches each flag's setting and keeps the --chunk given (a loop over the -dattn
    flags once rebound it: every scheduler ran chunks of 128 steps, 2026-12-01)."""
    import sys
    import types

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_simulation

    from userlm.backends import fused_residual, slot_kv, uploads

    for module, name in ((slot_kv, "FOLD_PREFILL"), (slot_kv, "ADDITIVE_MASK"), (uploads, "BY_NUMPY"),
                         (fused_residual, "IN_PLACE_DOWN")):
        monkeypatch.setattr(module, name, getattr(module, name))  # restored after the test
    engine, backend = types.SimpleNamespace(), types.SimpleNamespace()
    bench_simulation.configure(backend, engine, "static-loop-triton-rejection-all-overlap-dattn128-rotw-fold", 8)
    assert backend.slots is engine and engine.decode_chunk == 8 and engine.graph_steps == 1
    assert engine.attention_options == {"kernel": "triton", "chunk": 128}
    assert engine.fuse_rotary_write and engine.rejection_every_row and engine.overlap_chunks
    assert not engine.fuse_residual and not engine.softmax_in_kernel and slot_kv.FOLD_PREFILL
    assert not fused_residual.IN_PLACE_DOWN and "bench_simulation" in sys.modules
