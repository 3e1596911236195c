"""bench_simulation.py's scheduler names: a base (`BASES`), then -triton and a wide-row kernel (`WIDE`), then
flags that each switch one engine setting (`FLAGS`, any order); and the mean of a scheduler's warm runs."""

FLAGS = {  # scheduler suffixes, each switching one engine setting (off without its flag, whatever the default)
    "-lean": "prefill passes closed before a tenth of their tokens would be padding",
    "-head": "the sampling head compiled, its top 128 chosen by the logits",
    "-kv": "with -fused: a step's key and value writes one kernel",
    "-fused": "q/k/v and gate/up one matmul each",
    "-all": "with -triton-rejection: every row drawn by rejection, no head (the engine's default on CUDA)",
    "-n128": "flex decoding's BLOCK_N 128",
    "-cp": "prefill passes run the decode step's compiled pieces, dynamic shapes",
    "-at": "the decode step's pieces compiled under inductor's max-autotune",
    "-overlap": "with -all: each chunk queued before the last one is read",
    "-res": "with -fused: the layers' residual adds folded into the post-attention norm and the down projection",
    "-pad25": "prefill passes closed before a quarter of their tokens would be padding",
    "-fold": "prefill's grouped-query attention folded as a decode step's, keys not copied per query head",
    "-noguard": "a measurement: warm prefill passes skip dynamo's guards",
    "-pack": "a prefill pass's tokens packed into one sequence: its products compute no padding",
    "-slice": "a prefill pass over consecutive slots reads a view of the keys/values, not a gathered copy",
    "-addmask": "prefill's boolean mask made additive once a pass, not by SDPA in every layer",
    "-batchfin": "rows that end together copied out in shared gathers, their masks reset at once",
    "-npup": "the engine's lists built into host tensors by numpy, not torch.tensor",
    "-smk": "with -all: the rejection kernel computes the probabilities from the logits, no softmax before it",
    "-rotw": "with compiled decode: a decode step's rotary embedding and key/value write one Triton kernel a layer",
    "-rotwp": "with -rotw and -cp: the same kernel in packed prefill passes",
    "-inplace": "with -res: the down projection accumulated in place into the residual, not into a copy of it",
    "-silu": "with -res and -cp: a prefill pass's silu(gate) * up by silu_mul.py's Triton kernel, not inductor's",
    "-suffix": "each prompt tokenized from its conversation's previous prompt's last special token on, not whole",
    "-first": "with -all: prefill's first tokens drawn by rejection as the decode steps, not after a vocabulary sort",
    "-dattn": "with live attention: decode attention by decode_attention.py's Triton kernels, not flex decoding",
    "-dattn64": "-dattn with chunks of 64 positions a program (one key block)",
    "-dattn128": "-dattn with chunks of 128 positions a program",
}

BASES = {
    "dynamic": "the CPU default: per-request prefill, a KV cache rebuilt as rows join and leave",
    "static": "fixed slots, batched prefill, decode replayed as a CUDA graph, sampling inside the graph",
    "static-host": "static, sampling on the host after each replay",
    "static-compiled": "decode's norms and rotary fused by torch.compile",
    "static-sort": "compiled, wide nuclei drawn after a full sort, as before 2026-11-30",
    "static-live": "static-compiled with decode attention over each row's live positions only",
    "static-fast": "static-live, and sample_wide inside the graph after a step with a wide row",
    "static-ahead": "static-fast, uniforms drawn 64 at a time a row",
    "static-chunk": "static-ahead, --chunk decode steps a CUDA graph and host round trip",
    "static-loop": "static-chunk, the one-step graph replayed --chunk times a round trip",
}
WIDE = {
    "torch": "rows wider than the head drawn by torch",
    "triton": "by the Triton kernels, split up to 96 rows",
    "triton-split": "each row over several programs",
    "triton-split-full": "triton-split without compaction",
    "triton-row": "one program a row",
    "triton-rejection": "drawn by rejection, another draw",
}
HELP = ("default (the backend's own for the device), or a comma list of schedulers: a base (" + "; ".join(
    f"{k}: {v}" for k, v in BASES.items()) + "), then -triton and a wide-row kernel (" + "; ".join(
    f"{k}: {v}" for k, v in WIDE.items()) + "), then flags in any order (" + "; ".join(
    f"{k}: {v}" for k, v in FLAGS.items()) + "), e.g. static-loop-triton-rejection-fused-all-pack")


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
