"""Every benchmark prints the machine it ran on first (issue 25: timings from machines of other speeds are compared
by their matmul GFLOPS), through one function."""

from pathlib import Path

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def test_every_benchmark_prints_the_machine_line():
    """Every script (a file run as `__main__`; helpers such as bench_profiling.py are imported by one)."""
    scripts = [p for p in BENCHMARKS if p.name != "random_model.py" and '__name__ == "__main__"' in p.read_text()]
    missing = [p.name for p in scripts if "machine_line()" not in p.read_text()]
    assert len(scripts) > 10 and not missing, missing


def test_machine_line_names_cpu_gflops_and_versions():
    from userlm.threads import machine_line

    line = machine_line()
    assert line.startswith("machine: ") and "cores" in line and "GFLOPS (fp32 2048x2048 torch matmul" in line
    assert "torch " in line and "transformers " in line and "\n" not in line
