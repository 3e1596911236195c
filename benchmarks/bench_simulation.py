"""Batched self-play loop vs a naive loop (one conversation at a time, plain `generate`), same models,
scenarios and token budget, measured side by side in one run. Also the share of the memory-bandwidth limit
that decoding reaches: bytes of weights read per decode step x decode steps/s over measured copy bandwidth.

`--schedulers dynamic,static --conversations 32,128` compares the hf backend's two schedulers on one loaded
model: `dynamic` (the CPU default: per-request prefill, a KV cache rebuilt as rows join and leave) and
`static` (the CUDA default: fixed slots, batched prefill, decode replayed as a CUDA graph, sampling inside the
graph), and `static-host`, the same engine sampling on the host after each replay (as before 2026-11-26's
follow-up). `--verify-sampling` adds an untimed static run at the largest count that also runs `sample_next`
on every decode step's logits and counts the rows whose token differs."""

import argparse
import time

import torch
from bench_profiling import host, idle_gaps, profiled, sync_points, timeline  # benchmarks/: the script's dir
from bench_schedulers import HELP, parse, warm

from simulator.loop import Conversation, Side, run_conversations
from simulator.run import conversation_seed
from userlm.backends import fused_residual, get_backend, slot_kv, uploads
from userlm.chat import PROMPTED_USER_SYSTEM, prompt_for
from userlm.models import DEFAULT_ASSISTANT
from userlm.scenarios import load_scenarios
from userlm.users import UserSpec, user_system


def copy_bandwidth_gbs(device) -> float:
    x = torch.empty(1024 * 2**20 // 4, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    for _ in range(5):
        y.copy_(x)
    sync()
    return 2 * x.numel() * 4 * 5 / (time.perf_counter() - started) / 1e9  # bytes read + written


def conversations(scenarios, n):
    jobs = [(s, i) for i in range(n) for s in scenarios][:n]
    return [Conversation(s, i, conversation_seed(0, s.id, i)) for s, i in jobs]


def naive(backend, convs, user: UserSpec):
    """One conversation at a time, one turn at a time, with HF's own sampling."""
    model, tok = backend.model, backend.tokenizer
    tokens = 0
    for conv in convs:
        for _ in range(conv.scenario.max_turns):
            for speaker, sampling, system in (("user", conv.scenario.user_sampling, user_system(user, conv.scenario.intent, conv.scenario.persona)),
                                              ("assistant", conv.scenario.assistant_sampling, None)):
                history = [{"role": t["role"], "content": t["text"]} for t in conv.turns]
                ids = tok(prompt_for(tok, history, speaker, system), return_tensors="pt", add_special_tokens=False)
                with torch.inference_mode():
                    out = model.generate(**ids, max_new_tokens=sampling.max_new_tokens, do_sample=True,
                                         temperature=sampling.temperature, top_p=sampling.top_p,
                                         eos_token_id=backend.stop_ids, pad_token_id=tok.pad_token_id)
                new = out[0, ids["input_ids"].shape[1]:]
                tokens += len(new)
                conv.turns.append({"role": speaker, "text": tok.decode(new, skip_special_tokens=True)})
    return tokens


def batched(backend, convs, user: UserSpec, batch_size: int, continuous: bool, prefix_cache: bool):
    """The project's loop; returns (tokens, seconds). Forward passes are in backend.counts."""
    backend.continuous, backend.prefix_cache = continuous, prefix_cache
    backend.seconds.clear()
    backend.counts.clear()
    tokens = [0]
    for conv in convs:
        conv.user = Side(backend, "user", lambda s: user_system(user, s.intent, s.persona))
        conv.assistant = Side(backend, "assistant", lambda s: None)
    started = time.perf_counter()
    run_conversations(convs, batch_size, on_finish=lambda c: None,
                      on_step=lambda live, n, turns: tokens.__setitem__(0, tokens[0] + n))
    return tokens[0], time.perf_counter() - started


def unguarded(prefill):
    """`prefill` under torch.compile's stance that evaluates only the guards telling its cached graphs apart (unsafe
    while graphs are still being compiled: run a scheduler with the same compiled pieces cold first)."""
    def run(joining):
        with torch.compiler.set_stance(skip_guard_eval_unsafe=True):
            return prefill(joining)
    return run


def configure(backend, engine, scheduler: str, chunk: int):
    """Point the backend at the scheduler's engine and settings."""
    backend.slots = engine if scheduler.startswith("static") else None
    if engine is not None:
        scheduler, wide, flags = parse(scheduler)
        # prefill passes closed before a tenth of their tokens would be padding (`prefill_padding`); without: no limit
        engine.prefill_padding = 0.1 if "-lean" in flags else 1.0
        engine.prefill_padding = 0.25 if "-pad25" in flags else engine.prefill_padding  # fewer, more padded passes
        # the sampling head compiled and its top 128 chosen by the bf16 logits (`head_topk`); without: as before
        engine.compile_head = engine.head_by_logits = "-head" in flags
        engine.fuse_kv_write = "-kv" in flags  # a step's key and value writes one kernel a layer
        engine.fuse_projections = "-fused" in flags  # q/k/v and gate/up one matmul each
        engine.rejection_every_row = "-all" in flags  # with -triton-rejection: every row by rejection, no head
        engine.softmax_in_kernel = "-smk" in flags  # with -all: the kernel's own softmax from the logits
        engine.first_by_rejection = "-first" in flags  # with -all: prefill's first tokens by the same draw
        engine.attention_options = {"BLOCK_N": 128} if "-n128" in flags else {}  # flex decoding's key block
        for flag, positions in (("-dattn", None), ("-dattn64", 64), ("-dattn128", 128)):  # decode_attention.py's kernels
            engine.attention_options.update({"kernel": "triton"} | ({"chunk": positions} if positions else {})
                                            if flag in flags else {})
        engine.compile_prefill = "-cp" in flags  # prefill passes run the decode step's compiled pieces
        engine.autotune_decode = "-at" in flags  # the decode step's pieces compiled under max-autotune
        engine.fuse_residual = "-res" in flags  # with -fused: the layers' residual adds folded into norm and product
        fused_residual.IN_PLACE_DOWN = "-inplace" in flags  # with -res: down accumulated in place, no copy of h
        engine.fuse_rotary_write = "-rotw" in flags  # a decode step's rotary and key/value write one kernel a layer
        engine.fuse_rotary_prefill = "-rotwp" in flags  # and in packed prefill passes
        engine.prefill_silu_kernel = "-silu" in flags  # with -res: prefill's silu(gate) * up by silu_mul.py's kernel
        backend.suffix_tokens = "-suffix" in flags  # prompts tokenized from the previous one's last special token on
        engine.overlap_chunks = "-overlap" in flags  # with -all: the next chunk queued before the last one is read
        slot_kv.FOLD_PREFILL = "-fold" in flags  # prefill's grouped-query attention folded, not keys copied per head
        engine.pack_prefill = "-pack" in flags  # a prefill pass's tokens one sequence: no padding in its products
        engine.slice_reads = "-slice" in flags  # a pass over consecutive slots reads a view of the keys/values
        slot_kv.ADDITIVE_MASK = "-addmask" in flags  # prefill's mask made additive once a pass, not in every layer
        engine.finish_together = "-batchfin" in flags  # rows ending together copied out in shared gathers
        uploads.BY_NUMPY = "-npup" in flags  # lists uploaded through numpy, not torch.tensor
        engine.__dict__.pop("_prefill", None)
        if "-noguard" in flags:  # a measurement only: warm prefill with dynamo's guards skipped (is the host the limit?)
            engine._prefill = unguarded(engine._prefill)
        engine.wide_kernel = wide  # wide rows: -triton splits rows up to 96, else one program a row; -triton-split, ...
        engine.gpu_sampling = scheduler != "static-host"
        fast = ("static-fast", "static-ahead", "static-chunk", "static-loop")
        engine.compile_decode = scheduler in ("static-compiled", "static-sort", "static-live", *fast)
        engine.live_attention = scheduler in ("static-live", *fast)  # each row's live positions
        engine.wide_in_graph = scheduler in fast  # + sample_wide in the graph after a wide step
        engine.ahead_size = 64 if scheduler in fast[1:] else 1  # 1: as before
        engine.decode_chunk = chunk if scheduler in fast[2:] else 1
        engine.graph_steps = 1 if scheduler == "static-loop" else 0  # the step's graph replayed `chunk` times
        engine.wide_sort = scheduler == "static-sort"  # compiled, wide nuclei sorted as before 2026-11-30
        engine.wide_steps = 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=DEFAULT_ASSISTANT, help="both sides (the prompted baseline talks to it)")
    parser.add_argument("--quantization", default="none")
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 on GPU, float32 on CPU")
    parser.add_argument("--conversations", default="32", help="live conversations; a comma list runs each")
    parser.add_argument("--naive-conversations", type=int, default=8,
                        help="the naive loop is slow; its rate is per token (0 skips it)")
    parser.add_argument("--scenarios", default="scenarios/smoke")
    parser.add_argument("--max-turns", type=int, default=2)
    parser.add_argument("--only-best", action="store_true", help="skip the ablations (turn batching, no KV reuse)")
    parser.add_argument("--schedulers", default="default", help=HELP)
    parser.add_argument("--chunk", type=int, default=8, help="static-chunk's decode steps a round trip")
    parser.add_argument("--verify-sampling", action="store_true")
    parser.add_argument("--logit-scale", type=float, default=1.0,
                        help="multiply the output embeddings: a random model's flat next-token distributions "
                             "become peaked like a trained model's (the nucleus fits the 128 most likely tokens)")
    parser.add_argument("--profile", action="store_true",
                        help="each scheduler once more warm, then once under torch.profiler: its GPU kernel time "
                             "and kernels a decode step, the top kernels; on CUDA then once more with the GPU's idle "
                             "time by the gaps' size (bench_profiling.timeline)")
    parser.add_argument("--profile-top", type=int, default=12, help="kernels listed by --profile")
    parser.add_argument("--profile-phases", default="decode,prefill", help="--profile's (bench_profiling): decode, prefill, prefill ops (kernels), host (cProfile)")
    parser.add_argument("--sync-debug", action="store_true",
                        help="CUDA: each scheduler once more with CUDA's sync debug mode, the operations that waited "
                             "for the device listed by phase and place; then once more with prefill's idle GPU time "
                             "and the host code that ran during it")
    args = parser.parse_args()
    for name in args.schedulers.split(",") if args.schedulers != "default" else []:
        parse(name)  # before the model loads: a misspelt one exits now
    torch.manual_seed(0)
    counts = [int(n) for n in args.conversations.split(",")]
    scenarios = [s.__class__(**{**s.__dict__, "max_turns": args.max_turns}) for s in load_scenarios(args.scenarios)]
    # the static engine is built whatever is compared, and switched off for the dynamic runs (one model load)
    backend = get_backend("hf", args.model, quantization=args.quantization, dtype=args.dtype,
                          max_batch=max(counts), static_cache=args.schedulers != "default" or "auto")
    engine = backend.slots
    if args.logit_scale != 1.0:
        with torch.no_grad():
            backend.model.get_output_embeddings().weight.mul_(args.logit_scale)
    schedulers = (["static" if engine else "dynamic"] if args.schedulers == "default"
                  else args.schedulers.split(","))
    user = UserSpec("prompted", args.model, PROMPTED_USER_SYSTEM)
    cuda = backend.device.type == "cuda"
    weight_bytes = sum(p.numel() * p.element_size() for p in backend.model.parameters())
    bandwidth = copy_bandwidth_gbs(backend.device)
    floor_ms = weight_bytes / bandwidth / 1e6
    cfg = backend.model.config  # a position's keys and values, every layer: what live attention reads per position
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv_bytes = cfg.num_hidden_layers * 2 * getattr(cfg, "num_key_value_heads", cfg.num_attention_heads) * head_dim \
        * next(backend.model.parameters()).element_size()
    where = torch.cuda.get_device_name() if cuda else f"{torch.get_num_threads()} CPU threads"
    print(f"machine: {where}, copy bandwidth {bandwidth:.1f} GB/s; weights {weight_bytes / 1e6:.0f} MB "
          f"({next(backend.model.parameters()).dtype}, quantization {args.quantization}); "
          f"memory floor of a decode step (weights once) {floor_ms:.2f} ms", flush=True)

    naive_rate = None
    if args.naive_conversations:
        backend.slots = None
        started = time.perf_counter()
        naive_tokens = naive(backend, conversations(scenarios, args.naive_conversations), user)
        naive_rate = naive_tokens / (time.perf_counter() - started)
        print(f"naive ({args.naive_conversations} conversations, one at a time, plain generate): {naive_tokens} "
              f"tokens, {naive_rate:.1f} tok/s", flush=True)
    variants = [("batched by turn, prompts re-read each turn", False, False),
                ("+ continuous batching by token", True, False),
                ("+ KV cache kept between turns", True, True)]
    rates = {}
    for n in counts:
        for scheduler in schedulers:
            configure(backend, engine, scheduler, args.chunk)
            for label, continuous, prefix_cache in variants[-1:] if args.only_best else variants:
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                tokens, seconds = batched(backend, conversations(scenarios, n), user, n, continuous, prefix_cache)
                rate = tokens / seconds
                rates.setdefault((n, scheduler), []).append(rate)
                decode_s, steps = backend.seconds["decode"], backend.counts["decode"]
                step_ms = 1000 * decode_s / max(steps, 1)
                capture = backend.seconds["capture"]
                line = (f"[{scheduler}, {n} live] {label}: {tokens} tokens in {seconds:.1f} s = {rate:.1f} tok/s"
                        + (f", {rate / naive_rate:.2f}x naive" if naive_rate else "")
                        + f"; {steps} decode steps at {step_ms:.2f} ms = {floor_ms / step_ms:.3f} of the memory floor"
                        + f"; {backend.counts['prefill']} prefill passes in {backend.seconds['prefill']:.2f} s")
                if backend.counts["prefill tokens"]:  # what they computed: the rate says GEMM-bound or not
                    line += (f" ({backend.counts['prefill tokens']} tokens, {backend.counts['prefill padded']} with "
                             f"padding, {backend.counts['prefill padded'] / max(backend.seconds['prefill'], 1e-9):.0f} "
                             "padded tok/s)")
                forward = backend.seconds["decode forward"]
                line += f" ({100 * (1 - forward / max(decode_s, 1e-9)):.0f}% of decode time on the host"
                if backend.counts["chunk tokens"]:
                    line += f"; {backend.counts['chunk tokens']} tokens kept, {backend.counts['chunk retries']} retries"
                line += ")"
                if backend.counts["kv positions"]:  # the floor with the live keys/values each step reads too
                    kv_ms = backend.counts["kv positions"] / max(steps, 1) * kv_bytes / bandwidth / 1e6
                    line += (f"; with the live KV ({kv_ms:.2f} ms a step at copy bandwidth) the floor is "
                             f"{floor_ms + kv_ms:.2f} ms = {(floor_ms + kv_ms) / step_ms:.3f} of this step")
                if capture:
                    line += (f"; {backend.counts['graphs']} CUDA graphs captured in {capture:.1f} s "
                             f"({tokens / (seconds - capture):.1f} tok/s without)")
                if backend.slots is not None and engine.gpu_sampling:
                    line += f"; {engine.wide_steps} steps had a row wider than the head"
                if engine is not None and engine.graph_error:
                    line += f"; graphs off: {engine.graph_error}"
                if cuda:
                    line += f"; peak GPU memory {torch.cuda.max_memory_allocated() / 1e9:.2f} GB"
                print(line, flush=True)
                print("    time in: " + ", ".join(f"{k} {v:.1f} s" for k, v in backend.seconds.most_common()),
                      flush=True)
            if scheduler.startswith("static"):
                engine.reset()
        for new in dict.fromkeys(schedulers[1:]):  # every other one against the first, side by side
            if new != schedulers[0]:
                runs = [len(rates[(n, x)]) - 1 or "its only run" for x in (new, schedulers[0])]
                print(f"{new} / {schedulers[0]} at {n} live conversations: "
                      f"{warm(rates[(n, new)]) / warm(rates[(n, schedulers[0])]):.3f}x (means of the runs after each "
                      f"one's first: {runs[0]} and {runs[1]})", flush=True)
    if args.verify_sampling and engine is not None:
        backend.slots, engine.gpu_sampling, engine.verify = engine, True, True
        engine.verified = engine.mismatches = engine.wide_steps = 0
        batched(backend, conversations(scenarios, max(counts)), user, max(counts), True, True)
        print(f"verify sampling ({max(counts)} live): {engine.mismatches} of {engine.verified} sampled rows differ "
              f"from sample_next on the same logits and uniforms; {engine.wide_steps} of "
              f"{backend.counts['decode']} steps had a row wider than the head", flush=True)
        engine.verify = False
        engine.reset()
    if args.sync_debug and cuda and engine is not None:
        for scheduler in dict.fromkeys(s for s in schedulers if s.startswith("static")):
            configure(backend, engine, scheduler, args.chunk)
            print(f"[{scheduler}] ", end="")
            sync_points(engine, lambda: batched(  # noqa: B023 - called right away
                backend, conversations(scenarios, max(counts)), user, max(counts), True, True))
            print(f"[{scheduler}] ", end="")
            idle_gaps(engine, lambda: batched(  # noqa: B023 - called right away
                backend, conversations(scenarios, max(counts)), user, max(counts), True, True))
            engine.reset()
    if args.profile:  # each scheduler once more warm (graphs captured), then once under the profiler
        for scheduler in dict.fromkeys(schedulers):
            configure(backend, engine, scheduler, args.chunk)
            batched(backend, conversations(scenarios, max(counts)), user, max(counts), True, True)
            run = lambda: batched(backend, conversations(scenarios, max(counts)), user, max(counts), True, True)  # noqa: B023, E731
            for phase in args.profile_phases.split(",") if backend.slots is not None else ("all",):
                host(scheduler, run, args.profile_top) if phase == "host" else profiled(
                    backend, engine, phase, scheduler, run, args.profile_top)
            if cuda and backend.slots is not None:  # how long the GPU waits, in what gaps
                timeline(scheduler, run)
            if engine is not None:
                engine.reset()
    backend.slots = engine


if __name__ == "__main__":
    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    main()
