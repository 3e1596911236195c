"""Metrics as tables: the console table, metrics.md, metrics.csv (and metrics.json) of a run, the report's rows."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from evaluators.metrics import METRICS
from evaluators.stops import stops_markdown
from userlm.io import atomic_write_json, atomic_write_text


def fmt(ci: dict | None) -> str:
    if not ci or ci.get("value") is None or (isinstance(ci["value"], float) and math.isnan(ci["value"])):
        return "n/a"
    v, lo, hi = ci["value"], ci.get("ci_low"), ci.get("ci_high")
    digits = 1 if abs(v) >= 10 else 3
    if lo is None or hi is None or lo == hi or (isinstance(lo, float) and math.isnan(lo)):
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def table_rows(reports: list[dict], names: list[str] | None = None) -> tuple[list[str], list[list[str]]]:
    """Columns: metrics present (or `names`); rows: real humans (reference, from the first report having one),
    then runs."""
    names = names or [m for m in METRICS if any(m in r["metrics"] for r in reports)]
    rows = []
    ref = next((r for r in reports if any("reference" in v for v in r["metrics"].values())), None)
    if ref:
        rows.append(["real humans (reference)", *(fmt(ref["metrics"].get(m, {}).get("reference")) for m in names)])
    for r in reports:
        rows.append([r["label"], *(fmt(r["metrics"].get(m, {}).get("run")) for m in names)])
    return names, rows


def markdown_table(reports: list[dict], names: list[str] | None = None) -> str:
    names, rows = table_rows(reports, names)
    lines = ["| run | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(ci: dict | None) -> str:
    """The value on one line, its CI dim under it: a headline column stays narrow."""
    text = fmt(ci)
    if " [" not in text:
        return text
    value, interval = text.split(" ", 1)
    return f"{value}\n[dim]{interval}[/dim]"


def print_headline(reports: list[dict], console, where: str | None = None) -> None:
    """The short table (real people first, a row per run, the headline metrics with 95% CIs) and the verdict."""
    from rich.table import Table

    from evaluators.verdict import PEOPLE, headline_names, reference_ci, verdict

    names = headline_names(reports)
    table = Table(title="How close to real people? (95% bootstrap CIs)", show_lines=True)
    table.add_column("", overflow="fold")
    for name in names:
        arrow = {1: " ↑", -1: " ↓", 0: ""}[METRICS[name].direction]
        table.add_column(name + arrow, justify="right", overflow="fold")
    table.add_row(f"[bold]{PEOPLE}[/bold]", *(_cell(reference_ci(reports, m)) if METRICS[m].reference_row else "-"
                                              for m in names))
    for r in reports:
        table.add_row(r["label"], *(_cell(r["metrics"].get(m, {}).get("run")) for m in names))
    console.print(table)
    summary, lines = verdict(reports, names)
    console.print(f"[bold]{summary}[/bold]")
    for line in lines:
        console.print(f"  {line}")
    total = sum(1 for m in METRICS if any(m in r["metrics"] for r in reports))
    console.print(f"[dim]{len(names)} of {total} metrics shown (↑ higher / ↓ lower is more human)"
                  + (f"; all of them in {where}" if where else "") + "[/dim]")


def print_metrics(reports: list[dict], console) -> None:
    from rich.table import Table

    names, rows = table_rows(reports)
    table = Table(title="How human is the simulated user? (95% bootstrap CI)")
    table.add_column("metric")
    for row in rows:
        table.add_column(row[0], justify="right")
    for i, name in enumerate(names):
        arrow = {1: " ↑", -1: " ↓", 0: ""}[METRICS[name].direction]
        table.add_row(name + arrow, *(row[i + 1] for row in rows))
    console.print(table)


def write_metrics(report: dict, run_dir: Path) -> None:
    atomic_write_json(run_dir / "metrics.json", report)
    atomic_write_text(run_dir / "metrics.md", f"# {report['label']}\n\n{markdown_table([report])}\n"
                      + "".join(f"- `{m}`: {METRICS[m].description}\n" for m in METRICS if m in report["metrics"])
                      + (f"\n{stops_markdown([report])}" if report.get("stop_reasons") else ""))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["row", "metric", "value", "ci_low", "ci_high", "n"])
    for metric, sides in report["metrics"].items():
        for side, ci in sides.items():
            writer.writerow([report["label"] if side == "run" else "real humans", metric, ci["value"], ci.get("ci_low"),
                             ci.get("ci_high"), ci.get("n")])
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())
