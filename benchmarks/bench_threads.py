"""Two CPU jobs side by side: decoder-sized matmuls (SmolLM2-135M shapes: hidden 576, MLP 1536) at a decode
batch of ROWS live conversations, in one process alone and in two processes at once, under several OpenMP
settings. Shows why the CLI picks threads per process and how OpenMP's idle-thread spinning interacts with a
second job (issue 17 item 6). Run: PYTHONPATH=. python benchmarks/bench_threads.py [SCALE] [ROWS]"""

import os
import subprocess
import sys

WORK = """
import time, torch
x, w = torch.randn({rows}, 576), torch.randn(576, 1536)
for _ in range(50): x @ w
t = time.perf_counter()
for _ in range({n}): (x @ w)[:, :576].tanh()
print(time.perf_counter() - t)
"""


def run(processes: int, env: dict, n: int, rows: int) -> float:
    full = {**{k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}, **env}
    procs = [subprocess.Popen([sys.executable, "-c", WORK.format(n=n, rows=rows)], env=full,
                              stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    return max(float(p.communicate()[0]) for p in procs)


if __name__ == "__main__":
    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    from userlm.threads import available_cores

    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    cores = available_cores()
    n = int(scale * 20000 * 4 / rows)
    print(f"{cores} cores available; {n:,} matmuls ({rows} x 576 @ 576 x 1536) a process; "
          f"load average before {os.getloadavg()[0]:.2f}")
    settings = {
        f"{cores} threads, OpenMP default wait": {"OMP_NUM_THREADS": str(cores)},
        f"{cores} threads, OMP_WAIT_POLICY=PASSIVE": {"OMP_NUM_THREADS": str(cores), "OMP_WAIT_POLICY": "PASSIVE"},
        f"{cores} threads, GOMP_SPINCOUNT=10000": {"OMP_NUM_THREADS": str(cores), "GOMP_SPINCOUNT": "10000"},
        "1 thread": {"OMP_NUM_THREADS": "1"},
    }
    for label, env in settings.items():
        alone = run(1, env, n, rows)
        pair = run(2, env, n, rows)
        print(f"{label:45s} alone {alone:6.2f} s | two at once {pair:6.2f} s each at most ({pair / alone:.1f}x)")
