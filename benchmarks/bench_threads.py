"""Two CPU jobs side by side: decoder-sized matmuls (SmolLM2-135M shapes, batch 4) in one process alone, then
in two processes at once under different thread settings. Shows why the CLI picks threads per process and sets
OMP_WAIT_POLICY=PASSIVE (issue 17 item 6). Run: python benchmarks/bench_threads.py [seconds of work]"""

import os
import subprocess
import sys
import time

WORK = """
import time, torch
x, w = torch.randn(4, 576), torch.randn(576, 1536)
for _ in range(50): x @ w
t = time.perf_counter()
for _ in range({n}): (x @ w)[:, :576].tanh()
print(time.perf_counter() - t)
"""


def run(processes: int, env: dict, n: int) -> list[float]:
    full = {**{k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}, **env}
    procs = [subprocess.Popen([sys.executable, "-c", WORK.format(n=n)], env=full, stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
    return [float(p.communicate()[0]) for p in procs]


if __name__ == "__main__":
    from userlm.threads import available_cores

    n = int(float(sys.argv[1]) * 20000) if len(sys.argv) > 1 else 40000
    cores = available_cores()
    print(f"{cores} cores available; {n:,} matmuls a process")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    alone = run(1, {"OMP_NUM_THREADS": str(cores)}, n)[0]
    print(f"one process, {cores} threads: {alone:.2f} s")
    for label, env in [(f"{cores} threads, OMP_WAIT_POLICY=PASSIVE",
                        {"OMP_NUM_THREADS": str(cores), "OMP_WAIT_POLICY": "PASSIVE"}),
                       ("1 thread", {"OMP_NUM_THREADS": "1"})]:
        print(f"one process, {label}: {run(1, env, n)[0]:.2f} s")
    for label, env in [(f"{cores} threads each, OMP default wait", {"OMP_NUM_THREADS": str(cores)}),
                       (f"{cores} threads each, OMP_WAIT_POLICY=PASSIVE",
                        {"OMP_NUM_THREADS": str(cores), "OMP_WAIT_POLICY": "PASSIVE"}),
                       (f"{max(1, cores // 2)} thread(s) each", {"OMP_NUM_THREADS": str(max(1, cores // 2))})]:
        started = time.perf_counter()
        times = run(2, env, n)
        print(f"two processes, {label}: {max(times):.2f} s each at most "
              f"({max(times) / alone:.1f}x one alone; wall {time.perf_counter() - started:.1f} s)")
