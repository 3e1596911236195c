"""How many CPU threads torch may use: the cores this process may run on (CPU affinity and the cgroup CPU quota),
shared among the processes of a data-parallel launch on this host; `--threads N` or USERLM_THREADS overrides.

Set before torch is imported (OMP_NUM_THREADS is read then), and applied with torch.set_num_threads if it already
was. OMP_WAIT_POLICY=PASSIVE keeps idle OpenMP threads from spinning on cores another job needs."""

from __future__ import annotations

import math
import os
import sys

from userlm.io import UserError


def available_cores() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:  # cgroup v2 quota, e.g. "200000 100000" = 2 cores; "max 100000" = no limit
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def local_processes() -> int:
    """Processes of this launch on this host (torchrun and accelerate set LOCAL_WORLD_SIZE)."""
    for name in ("LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        try:
            return max(1, int(os.environ[name]))
        except (KeyError, ValueError):
            continue
    return 1


def choose_threads(requested: int | str | None = None) -> int:
    if requested is None:
        requested = os.environ.get("USERLM_THREADS") or None
    if requested is not None:
        try:
            n = int(requested)
        except ValueError:
            raise UserError(f"--threads / USERLM_THREADS: expected a whole number, got {requested!r}") from None
        if n < 1:
            raise UserError(f"--threads / USERLM_THREADS: must be >= 1, got {n}")
        return n
    return max(1, available_cores() // local_processes())


def configure_threads(requested: int | str | None = None) -> int:
    """Pick the thread count and apply it; an explicit OMP_NUM_THREADS is kept unless overridden here."""
    explicit = requested is not None or os.environ.get("USERLM_THREADS")
    n = choose_threads(requested)
    omp = os.environ.get("OMP_NUM_THREADS", "")
    # torchrun (and so accelerate launch) sets OMP_NUM_THREADS=1 for every process of a multi-process launch;
    # that 1 is replaced by this process's share of the cores. Any other value the user set is kept.
    launched = local_processes() > 1 and omp == "1"
    if not explicit and omp.isdigit() and int(omp) > 0 and not launched:
        n = int(omp)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(n)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
    return n


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 GFLOPS of an n x n torch matmul with the threads torch has now (best of `repeats`): the one figure
    printed beside every CPU timing, so that timings from machines of other speeds can be compared (the issue's
    yardstick: 2048 x 2048, 2 threads; about 150 on the slower CPU kind this project meets)."""
    import time

    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up: thread pool start and first-touch of the output
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n ** 3 / best / 1e9


def machine_line() -> str:
    """One line naming the machine a benchmark ran on (CPU model and cores, GPUs, matmul GFLOPS, versions, date):
    every benchmark prints it first, so its file can be compared with one from another machine."""
    import platform
    import time
    from pathlib import Path

    import torch
    import transformers

    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return (f"machine: {names[0] if names else platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{' + '.join(gpus) or 'no GPU'}; {matmul_gflops():.0f} GFLOPS (fp32 2048x2048 torch matmul, "
            f"{torch.get_num_threads()} threads); torch {torch.__version__}, transformers {transformers.__version__}; "
            f"{time.strftime('%Y-%m-%d')}")
