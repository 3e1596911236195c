"""Where a bench_simulation run spends its time on a GPU: torch.profiler's kernels by phase (prefill or decode) and
the host operations that wait for the device (CUDA's sync debug mode). Imported by bench_simulation.py."""

import torch


def profiled(backend, engine, phase: str, scheduler: str, run, top: int):
    """`run` under torch.profiler: its kernels inside the engine's `_prefill` ("prefill": each prefill profiled on
    its own, summed), outside it ("decode": collection toggled off during prefill), or all of them ("all"); prints
    the kernel time a decode step (or a prefill pass) and the top kernels (operators on a CPU). "prefill ops": as
    "prefill", by the ATen operator (with its input shapes) that launched the kernels, the host recorded too."""
    from collections import defaultdict

    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = backend.device.type == "cuda"
    ops, phase = phase.endswith(" ops"), phase.removesuffix(" ops")
    activities = [ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU] + [ProfilerActivity.CPU] * (ops and cuda)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    own = (lambda e: e.self_device_time_total) if cuda else (lambda e: e.self_cpu_time_total)  # us
    totals = defaultdict(lambda: [0.0, 0])  # kernel -> [us, calls]

    def add(prof):
        for e in prof.key_averages(group_by_input_shape=ops):
            if ops and (e.device_type != DeviceType.CPU or not e.key.startswith("aten::")):
                continue
            if own(e) > 0:
                totals[e.key + (f" {e.input_shapes}" if ops else "")][0] += own(e)
                totals[e.key + (f" {e.input_shapes}" if ops else "")][1] += e.count

    prefill = engine._prefill if phase != "all" else None

    def wrapped(joining):
        sync()
        if phase == "prefill":
            with profile(activities=activities, record_shapes=ops) as prof:
                out = prefill(joining)
                sync()
            add(prof)
            return out
        outer.toggle_collection_dynamic(False, activities)  # decode: none of prefill's kernels
        try:
            return prefill(joining)
        finally:
            sync()
            outer.toggle_collection_dynamic(True, activities)

    if prefill is not None:
        engine._prefill = wrapped
    try:
        if phase == "prefill":
            run()
        else:
            with profile(activities=activities) as outer:
                run()
                sync()
            add(outer)
    finally:
        engine.__dict__.pop("_prefill", None)
    per = max(backend.counts["prefill" if phase == "prefill" else "decode"], 1)
    unit = "prefill pass" if phase == "prefill" else "decode step"
    total = sum(t for t, _ in totals.values())
    print(f"profile of a warm {scheduler} run, {phase} {'kernels' if cuda else 'operators'} ({per} {unit}"
          f"{'es' if phase == 'prefill' else 's'}; " + ", ".join(f"{k} {v:.2f} s" for k, v in backend.seconds.most_common())
          + f"): {total / per:.0f} us a {unit} ({total / 1e6:.3f} s in all), "
          f"{sum(c for _, c in totals.values()) / per:.0f} calls a {unit}; the top ones (us a {unit}, calls a {unit}):",
          flush=True)
    for key, (t, c) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"    {t / per:8.1f} {c / per:6.1f}  {short(key)[:160] if ops else key[:90]}", flush=True)


def host(scheduler: str, run, top: int = 12):
    """`run` under cProfile: the host's functions by their own time (a warm run; cProfile slows Python about 2x, so
    the shares count, not the seconds)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    run()
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    profiler.disable()
    print(f"host profile of a warm {scheduler} run (cProfile; functions by own time):", flush=True)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def sync_points(engine, run, top: int = 12):
    """`run` with CUDA's sync debug mode on: each operation that waits for the device, by phase (prefill or decode)
    and the last frames of its Python stack (userlm, simulator, transformers), with how often it waited."""
    import traceback
    import warnings
    from collections import Counter

    seen, phase, prefill = Counter(), ["decode"], engine._prefill

    def wrapped(joining):
        phase[0] = "prefill"
        try:
            return prefill(joining)
        finally:
            phase[0] = "decode"

    def show(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):  # another warning, not a wait
            return
        frames = [f for f in traceback.extract_stack()[:-1]
                  if any(part in f.filename for part in ("/userlm/", "/simulator/", "/transformers/"))]
        seen[(phase[0], " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in frames[::-1][:4]))] += 1

    engine._prefill = wrapped
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = show
            torch.cuda.set_sync_debug_mode("warn")
            try:
                run()
            finally:
                torch.cuda.set_sync_debug_mode(0)
    finally:
        engine.__dict__.pop("_prefill", None)
    print(f"operations that waited for the device ({sum(seen.values())} waits; phase, count, where):", flush=True)
    for (where_phase, where), n in seen.most_common(top):
        print(f"    {where_phase:8s} {n:6d}  {where[:200]}", flush=True)


def idle_gaps(engine, run, top: int = 12):
    """`run` with each of the engine's prefills profiled (host operators with their Python stacks, and kernels):
    how long the GPU sat idle inside prefill (before its first kernel, between kernels, after its last) and, for the
    gaps between kernels, the host code that ran meanwhile (the innermost userlm, simulator or transformers frame of
    each operator overlapping a gap, by overlap)."""
    from collections import Counter

    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    prefill, where, totals = engine._prefill, Counter(), Counter()

    def frame(event) -> str:
        frames = [f for f in (event.stack or []) if any(p in f for p in ("/userlm/", "/simulator/", "/transformers/"))]
        return (frames[0].rsplit("/", 1)[-1] if frames else "(no Python frame)") + f" {event.name}"

    def wrapped(joining):
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], with_stack=True) as prof:
            out = prefill(joining)
            torch.cuda.synchronize()
        events = prof.events()
        kernels = sorted((e for e in events if e.device_type == DeviceType.CUDA), key=lambda e: e.time_range.start)
        host = [e for e in events if e.device_type == DeviceType.CPU]
        if not kernels or not host:
            return out
        start, stop = min(e.time_range.start for e in host), max(e.time_range.end for e in host)
        totals["calls"] += 1
        totals["before the first kernel"] += kernels[0].time_range.start - start
        totals["after the last kernel"] += max(0, stop - max(k.time_range.end for k in kernels))
        end = kernels[0].time_range.end
        for k in kernels[1:]:
            if k.time_range.start > end + 20:  # us; a launch's own latency is a few
                gap = (end, k.time_range.start)
                totals["between kernels"] += gap[1] - gap[0]
                for e in host:
                    overlap = min(gap[1], e.time_range.end) - max(gap[0], e.time_range.start)
                    if overlap > 0 and not e.cpu_children:  # innermost operators only
                        where[frame(e)] += overlap
            end = max(end, k.time_range.end)
        return out

    engine._prefill = wrapped
    try:
        run()
    finally:
        engine.__dict__.pop("_prefill", None)
    calls = max(totals.pop("calls", 0), 1)
    print(f"GPU idle inside {calls} prefill calls (ms a call): " + ", ".join(
        f"{k} {v / 1000 / calls:.1f}" for k, v in totals.items()) + "; host code during the gaps between kernels "
        "(ms a call, innermost operators):", flush=True)
    for name, us in where.most_common(top):
        print(f"    {us / 1000 / calls:8.2f}  {name[:150]}", flush=True)


GAP_SIZES = {"under 20 us": (0, 20), "20 us to 1 ms": (20, 1e3), "1 to 10 ms": (1e3, 1e4), "over 10 ms": (1e4, 1e12)}


def gaps_between(kernels) -> tuple[float, list]:
    """(span, gaps) of GPU activity [(start us, end us, name)] in any order (overlapping ones merged): span from the
    first start to the last end, and each idle gap as (us, the kernel that ended last before it, the one after)."""
    kernels = sorted(kernels)
    gaps, end, last = [], kernels[0][1], kernels[0][2]
    for start, stop, name in kernels[1:]:
        if start > end:
            gaps.append((start - end, last, name))
        if stop >= end:
            end, last = stop, name
    return end - kernels[0][0], gaps


def short(name: str) -> str:
    """A kernel's name without the namespaces and words every ATen kernel repeats (its functor shows)."""
    for noise in ("void ", "at::native::", "(anonymous namespace)::", "at_cuda_detail::", "std::", "gpu_kernel_impl_nocast<",
                  "at::TensorIteratorBase&", "at::TensorIterator&"):
        name = name.replace(noise, "")
    return name


def landmark(names: list, i: int, step: int) -> str:
    """The nearest kernel from `names[i]` in direction `step` that is not ATen's or a copy: where in a step a gap is."""
    while 0 <= i < len(names) and (names[i].startswith(("void at::", "Memcpy", "Memset", "void (anonymous"))):
        i += step
    return short(names[i])[:40] if 0 <= i < len(names) else "(none)"


def timeline(scheduler: str, run, top: int = 8):
    """`run` (a warm run) under torch.profiler, GPU kernels only: how long the GPU sat idle between its first kernel
    and its last, by the gaps' size (the smallest are a CUDA graph's own launch gaps between its kernels; the largest
    are the host's work between a turn's last chunk and the next turn's prefill), the longest gaps and the kernels
    around the mid-sized ones (20 us to 1 ms), most frequent first, each with the nearest kernels not ATen's on
    either side (where in the step it lies) and its gaps' median."""
    from collections import defaultdict

    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    events = sorted((e.time_range.start, e.time_range.end, e.name) for e in prof.events() if e.device_type == DeviceType.CUDA)
    names = [name for *_, name in events]
    span, gaps = gaps_between([(start, end, i) for i, (start, end, _) in enumerate(events)])
    print(f"timeline of a warm {scheduler} run: {span / 1e6:.3f} s from its first kernel to its last, the GPU idle "
          f"{sum(g for g, *_ in gaps) / 1e6:.3f} s in {len(gaps)} gaps; by size: " + ", ".join(
              f"{size} {sum(g for g, *_ in gaps if lo <= g < hi) / 1e6:.3f} s ({sum(lo <= g < hi for g, *_ in gaps)})"
              for size, (lo, hi) in GAP_SIZES.items()) + "; the longest (ms, the kernel before it -> the one after):", flush=True)
    for g, before, after in sorted(gaps, reverse=True)[:top]:
        print(f"    {g / 1e3:8.2f}  {short(names[before])[:70]} -> {short(names[after])[:70]}", flush=True)
    mid = defaultdict(list)
    for g, before, after in gaps:
        if 20 <= g < 1e3:
            mid[(landmark(names, before, -1), short(names[before])[:90], short(names[after])[:90], landmark(names, after, 1))].append(g)
    print("  the gaps of 20 us to 1 ms by their kernels (gaps, median us; the last kernel not ATen's before | the kernel "
          "before -> the one after | the next kernel not ATen's):", flush=True)
    ranked = sorted(mid.items(), key=lambda kv: -len(kv[1]))
    for (first, before, after, last), sizes in ranked[:top]:
        print(f"    {len(sizes):6d} {sorted(sizes)[len(sizes) // 2]:6.0f}  {first} | {before} -> {after} | {last}", flush=True)
    if ranked:  # one gap of the commonest kind in its context: the kernels either side, each's us and the idle before it
        at = next(a for g, b, a in gaps if 20 <= g < 1e3 and mid.get((landmark(names, b, -1), short(names[b])[:90],
                                                                       short(names[a])[:90], landmark(names, a, 1))) is ranked[0][1])
        print("  one of the commonest (us idle before it, us it ran, the kernel):", flush=True)
        for i in range(max(at - 10, 1), min(at + 6, len(events))):
            print(f"    {events[i][0] - events[i - 1][1]:8.1f} {events[i][1] - events[i][0]:8.1f}  {short(names[i])[:110]}", flush=True)
