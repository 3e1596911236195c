"""Replay (`simulate --replay`) vs self-play on one loaded model, the same backend and batch size, alternating
(replay, self-play, replay, self-play: the first runs capture the CUDA graphs of their shapes and compile the
decode step; the later ones replay them). For each: generated tokens, seconds, tok/s, and where the time went: building the requests on the host
(replay's `fit_history` tokenizes each point's history to fit `context_tokens`), prefill (passes, prompt tokens
fed) and decode (steps, ms a step). Issue 22: "Replay on the GPU runs at the static engine's speed".

    python benchmarks/bench_replay.py --model MODEL --data PREPARED_DATA [--limit 128] [--batch-size 128]"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

from simulator.loop import Conversation, Side, run_conversations
from simulator.replay import Replayed, _start, replay_conversations
from simulator.replay_plan import fit_history
from simulator.run import conversation_seed
from simulator.sim_config import SimulationConfig
from userlm.backends import get_backend
from userlm.scenarios import load_scenarios
from userlm.users import parse_user, user_system

HOST = Counter()  # seconds and counts spent outside step(): building requests, tokenizing prompts


def timed(owner, name: str, label: str):
    """Wrap owner.name so that its calls' seconds (and, for `_prompt`, the tokens fed) add up in HOST."""
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        out = inner(*args, **kwargs)
        HOST[label] += time.perf_counter() - started
        if name == "_prompt":
            ids, reused, _ = out
            HOST["prompt tokens"] += len(ids)
            HOST["tokens fed"] += len(ids) - reused
        return out
    setattr(owner, name, wrapper)


def exact_fit(tokenizer, messages, indexes, system, budget, history_cut="latest"):
    """Each point fitted on its own by `fit_history` (before 2026-11-30's per-message counts)."""
    history = [{"role": m["role"], "content": m["content"]} for m in messages]
    return [(*fit_history(tokenizer, history[:i], system, budget), None) for i in indexes]


def replay_run(backend, args, what="replay") -> tuple[int, float, dict]:
    """replay: as `simulate --replay` runs (prefixes shared, points fitted from per-message counts); replay-blocks:
    with `history_cut=blocks`; replay-old: as before (each point's prompt computed whole, fitted on its own)."""
    import simulator.replay as replay_module

    with tempfile.TemporaryDirectory() as tmp:
        cfg = SimulationConfig(replay=args.data, split=args.split, limit=args.limit, user=f"base:{args.model}",
                               out=str(Path(tmp) / "run"), batch_size=args.batch_size, dtype=args.dtype,
                               context_tokens=args.context_tokens,
                               history_cut="blocks" if what == "replay-blocks" else "latest")
        run = _start(0, cfg, resume=False)
        for conv in run.todo:
            conv.backend = backend
        tokens, points = [0], sum(len(c.points) for c in run.todo)
        started = time.perf_counter()
        on_point = lambda live, n: tokens.__setitem__(0, tokens[0] + n)  # noqa: E731
        if what == "replay-old":
            replay_module.fit_points, fitted = exact_fit, replay_module.fit_points
            try:
                replay_module._replay(run.todo, args.batch_size, lambda c: None, on_point, [backend])
            finally:
                replay_module.fit_points = fitted
        else:
            replay_conversations(run.todo, args.batch_size, lambda c: None, on_point)
        seconds = time.perf_counter() - started
    ended = sum(p["ended"] for c in run.todo for p in c.done.values())
    cut = sum(p["cut"] > 0 for c in run.todo for p in c.done.values())
    return tokens[0], seconds, {"conversations": len(run.todo), "points": points, "cut": cut, "ended": ended}


def selfplay_run(backend, args) -> tuple[int, float, dict]:
    scenarios = [s.__class__(**{**s.__dict__, "max_turns": args.max_turns}) for s in load_scenarios(args.scenarios)]
    user = parse_user(f"base:{args.model}", "hf")
    jobs = [(s, i) for i in range(args.batch_size) for s in scenarios][:args.batch_size]
    convs = [Conversation(s, i, conversation_seed(0, s.id, i)) for s, i in jobs]
    for conv in convs:
        conv.user = Side(backend, "user", lambda s: user_system(user, s.intent, s.persona))
        conv.assistant = Side(backend, "assistant", lambda s: None)
    tokens = [0]
    started = time.perf_counter()
    run_conversations(convs, args.batch_size, lambda c: None,
                      lambda live, n, turns: tokens.__setitem__(0, tokens[0] + n))
    return tokens[0], time.perf_counter() - started, {"conversations": len(convs),
                                                       "turns": sum(len(c.turns) for c in convs)}


def main():
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="both self-play sides and the replayed user (base:)")
    parser.add_argument("--data", required=True, help="a prepared data dir (`userlm data prepare`)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=128)
    parser.add_argument("--context-tokens", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--static-cache", default="auto", help="auto: on CUDA (the engine measured on a GPU)")
    parser.add_argument("--scenarios", default="scenarios/everyday", help="self-play's scenarios")
    parser.add_argument("--max-turns", type=int, default=3, help="self-play's user turns a conversation")
    parser.add_argument("--order", default="replay,selfplay,replay,selfplay",
                        help="runs in this order: replay, replay-blocks (history_cut=blocks), replay-old (no "
                             "prefix sharing, each point fitted on its own: before 2026-11-30's second change), selfplay")
    parser.add_argument("--live-attention", action="store_true",
                        help="the static engine's decode attention over each row's live positions only")
    args = parser.parse_args()
    backend = get_backend("hf", args.model, dtype=args.dtype, max_batch=args.batch_size,
                          static_cache=args.static_cache)
    if backend.slots is not None:
        backend.slots.live_attention = args.live_attention
    cuda = backend.device.type == "cuda"
    where = torch.cuda.get_device_name() if cuda else f"{torch.get_num_threads()} CPU threads"
    engine = backend.slots
    print(f"machine: {where}; torch {torch.__version__}; {args.model}: "
          f"{sum(p.numel() for p in backend.model.parameters()) / 1e6:.0f}M parameters, "
          f"{next(backend.model.parameters()).dtype}; static engine {engine is not None}"
          + (f", graphs {engine.use_graphs}, compiled decode {engine.compile_decode}, live attention "
             f"{engine.live_attention}" if engine else ""), flush=True)
    timed(Replayed, "request", "replay requests (fitting histories)")
    timed(Conversation, "request", "self-play requests")
    timed(backend, "_prompt", "prompt tokenization")
    for what in args.order.split(","):
        backend.seconds.clear()
        backend.counts.clear()
        HOST.clear()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        tokens, seconds, about = (selfplay_run(backend, args) if what == "selfplay" else replay_run(backend, args, what))
        s, c = backend.seconds, backend.counts
        prefill, decode = s["prefill"], s["decode"]
        fed = c["prefill tokens"] if engine else HOST["tokens fed"]  # the engine counts what slots shared too
        print(f"[{what}, {args.batch_size} live] {about}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.0f} "
              f"tok/s ({(tokens + fed) / seconds:.0f} tok/s processed: prompt tokens fed + generated); prefill {c['prefill']} passes, {fed:.0f} prompt tokens fed "
              f"(of {HOST['prompt tokens']:.0f} in prompts) in {prefill:.1f} s "
              f"= {fed / max(prefill, 1e-9):.0f} tok/s; decode {c['decode']} steps in {decode:.1f} s "
              f"= {1000 * decode / max(c['decode'], 1):.2f} ms a step, {tokens / max(decode, 1e-9):.0f} tok/s of decode"
              + (f"; {c['graphs']} graphs captured in {s['capture']:.1f} s" if s["capture"] else "")
              + (f"; peak GPU memory {torch.cuda.max_memory_allocated() / 1e9:.1f} GB" if cuda else ""), flush=True)
        rest = seconds - prefill - decode
        print("    host: " + ", ".join(f"{k} {v:.1f} s" for k, v in HOST.items() if "tokens" not in k)
              + f"; outside step() altogether {rest:.1f} s (prompt tokenization is inside prefill)", flush=True)


if __name__ == "__main__":
    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    main()
