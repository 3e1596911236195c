"""benchmarks/bench_profiling.py's gap analysis (`gaps_between`, behind `--profile`'s timeline of the GPU's idle
time): overlapping kernels merged, each gap with the kernel that ended last before it and the one after."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_profiling", ROOT / "benchmarks" / "bench_profiling.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_gaps_between_kernels_merge_overlaps_and_name_their_neighbours():
    kernels = [(50, 60, "c"), (0, 10, "a"), (5, 30, "b"), (31, 40, "d"), (1000, 1500, "e"), (1200, 1300, "f")]
    span, gaps = bench.gaps_between(kernels)
    assert span == 1500
    # a and b overlap (no gap; b ends last), so do e and f (f inside e)
    assert gaps == [(1, "b", "d"), (10, "d", "c"), (940, "c", "e")]
    assert sum(g for g, *_ in gaps) == span - (30 + 9 + 10 + 500)  # idle = span - the busy time
    sizes = {name: sum(g for g, *_ in gaps if lo <= g < hi) for name, (lo, hi) in bench.GAP_SIZES.items()}
    assert sizes == {"under 20 us": 11, "20 us to 1 ms": 940, "1 to 10 ms": 0, "over 10 ms": 0}
