"""bench_simulation.py's scheduler names: a base (`BASES`), then -triton and a wide-row kernel (`WIDE`), then
flags that each switch one engine setting (`FLAGS`, any order); and the mean of a scheduler's warm runs."""

FLAGS = ("-lean", "-head", "-kv", "-fused", "-all", "-n128", "-cp", "-at", "-overlap", "-res", "-pad25", "-fold",
         "-noguard", "-pack")  # scheduler suffixes that switch one engine setting


BASES = ("dynamic", "static", "static-host", "static-compiled", "static-sort", "static-live", "static-fast",
         "static-ahead", "static-chunk", "static-loop")
WIDE = ("torch", "triton", "triton-split", "triton-split-full", "triton-row", "triton-rejection")


def parse(scheduler: str) -> tuple:
    """(base, wide kernel, flags) of a scheduler name; an unknown one exits with a line naming it."""
    flags, name = set(), scheduler  # the trailing flags, in any order
    while tail := next((f for f in FLAGS if name.endswith(f)), None):
        flags.add(tail)
        name = name.removesuffix(tail)
    base, _, wide = name.partition("-triton")
    wide = "triton" + wide if _ else "torch"
    if base not in BASES or wide not in WIDE:
        raise SystemExit(f"bench_simulation: --schedulers: unknown scheduler {scheduler!r} (bases: {', '.join(BASES)};"
                         f" then -triton[-split|-split-full|-row|-rejection], then any of {' '.join(FLAGS)})")
    return base, wide, flags


def warm(rates: list) -> float:
    """A scheduler's mean rate over its runs after the first (which compiles and captures), or its one run."""
    return sum(rates[1:]) / len(rates[1:]) if len(rates) > 1 else rates[0]
