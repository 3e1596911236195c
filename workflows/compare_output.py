"""What `userlm compare` writes and prints: compare.json, compare.md, the console table with the gate's
verdicts and the minimum detectable drop; and the A/A false-alarm check of `--seeds N`."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from userlm.io import atomic_write_json, atomic_write_text

COLUMNS = ("metric", "baseline", "candidate", "delta [95% CI]", "real humans", "margin", "p (level)", "verdict")


def false_alarms(runs: list[Path], gate) -> dict:
    """Every ordered pair of runs of one adapter under other seeds through `gate` (runs -> gate_runs' result):
    how many exit 1 (the pairs share runs, so they are not independent: a rate, not a binomial count)."""
    pairs = list(itertools.permutations(runs, 2))
    flagged = [[str(a), str(b), gate([a, b])["regressed"]] for a, b in pairs]
    alarms = sum(bool(f[2]) for f in flagged)
    return {"runs": [str(r) for r in runs], "comparisons": len(pairs), "exit_1": alarms,
            "rate": alarms / len(pairs) if pairs else math.nan, "flagged": [f for f in flagged if f[2]]}


def summary(result: dict) -> list[str]:
    from workflows.gate import detectable_line

    regressed, pairs = result["regressed"], result["paired_conversations"]
    verdict = f"REGRESSION in {', '.join(regressed)}" if regressed else "no regression"
    lines = [f"{pairs} paired conversations. Verdict: {verdict} (primary metric: {result['primary']}; "
             f"family-wise alpha {result['alpha']}, Holm over the secondaries).",
             detectable_line(result["rows"], result["power"])]
    if result.get("unpaired_note"):
        lines.append(result["unpaired_note"][0].upper() + result["unpaired_note"][1:] + ".")
    if result.get("primary_note"):
        lines.append(result["primary_note"] + ".")
    if "a_a" in result:
        aa = result["a_a"]
        lines.append(f"A/A check: {aa['exit_1']} of {aa['comparisons']} comparisons of the baseline with itself "
                     f"under {len(aa['runs'])} seeds exit 1 (false-alarm rate {aa['rate']:.0%}).")
    return lines


def write_compare(result: dict, out_dir: Path, console=None) -> None:
    """compare.json, compare.md and the console table."""
    atomic_write_json(out_dir / "compare.json", result)
    rows = result["rows"]
    cells = [_cells(r) for r in rows]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    head = summary(result)
    atomic_write_text(out_dir / "compare.md", f"# {result['candidate']} vs {result['baseline']}\n\n"
                      + "\n\n".join(head) + "\n\n" + "\n".join(lines) + "\n")
    if console:
        from rich.table import Table

        table = Table(title=head[0])
        for col in COLUMNS:
            table.add_column(col, justify="left" if col == "metric" else "right")
        color = {"regressed": "red", "non-inferior": "green", "inconclusive": "yellow", "skipped": "yellow"}
        for r, c in zip(rows, cells):
            table.add_row(*c[:-1], f"[{color.get(r['verdict'], 'white')}]{r['verdict']}[/]")
        console.print(table)
        for line in head[1:]:
            console.print(line)


def _cells(r: dict) -> list[str]:
    num = lambda key: f"{r[key]:.3f}" if isinstance(r.get(key), (int, float)) and math.isfinite(r[key]) else "n/a"
    delta = f"{r['delta']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]" if "delta" in r else r.get("note", "")
    p = f"{r['p_value']:.3f} ({r['level']:.3g})" if isinstance(r.get("p_value"), float) else ""
    name = f"{r['metric']} ({r['direction']} is better{', primary' if r.get('role') == 'primary' else ''})"
    return [name, num("baseline"), num("candidate"), delta, num("real_humans"), str(r["margin"]), p, r["verdict"]]
