"""`userlm report RUN...`: evaluated runs side by side, as markdown and one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path

from evaluators.run import METRICS, markdown_table, print_metrics, table_rows
from userlm.io import UserError, atomic_write_text, read_json


def load_reports(runs: list[str]) -> list[dict]:
    reports = []
    for run in runs:
        path = Path(run) / "metrics.json"
        if not path.exists():
            raise UserError(f"{run}: no metrics.json; run `userlm evaluate {run}` first")
        report = read_json(path, "metrics.json", {"label": str, "metrics": dict})
        for metric, sides in report["metrics"].items():
            if not isinstance(sides, dict) or not all(isinstance(v, dict) for v in sides.values()):
                raise UserError(f"{path}: field 'metrics.{metric}' must map run/reference to numbers with CIs")
        reports.append(report)
    return reports


def _figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(reports: list[dict]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out = []
    ref = next((r for r in reports if r.get("turn_words_reference")), None)
    series = ([("real humans", ref)] if ref else []) + [(r["label"], r) for r in reports]
    for key, title, xlabel, bins in (("turn_words", "User-turn length", "words per user turn (log scale)", None),
                                     ("p_ai", "P(AI) of user turns (AI-voice classifier)", "P(AI)", np.linspace(0, 1, 21))):
        fig, ax = plt.subplots(figsize=(7, 3.2))
        for label, r in series:
            values = r.get(f"{key}_reference" if label == "real humans" else f"{key}_run") or []
            if not values:
                continue
            if key == "turn_words":
                values = np.log10(np.asarray(values) + 1)
            ax.hist(values, bins=bins if bins is not None else 20, alpha=0.45, density=True, label=label)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8)
        out.append((title, _figure_png(fig)))
        plt.close(fig)
    return out


def write_report(runs: list[str], out: str, console=None) -> tuple[Path, Path]:
    reports = load_reports(runs)
    out_dir = Path(out)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    legend = "".join(f"- `{m}` ({'higher' if d > 0 else 'lower' if d < 0 else 'closer to humans'} is more human): {desc}\n"
                     for m, (d, desc) in METRICS.items())
    md = f"# User-model comparison ({stamp})\n\nValues with 95% bootstrap CIs.\n\n{markdown_table(reports)}\n{legend}"
    atomic_write_text(out_dir / "report.md", md)
    names, rows = table_rows(reports)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["run", *names])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    figures = "".join(f'<h3>{html.escape(t)}</h3><img src="data:image/png;base64,{png}">' for t, png in plots(reports))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>userlm report</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} td:first-child{{text-align:left;font-weight:600}}
tr:nth-child(2) td{{background:#f4f8ff}}</style></head><body>
<h1>How human is the simulated user?</h1><p>{stamp}. Rows: real humans (held-out reference) and each run; 95% bootstrap CIs.</p>
<table><tr>{head}</tr>{body}</table>{figures}
<h3>Metrics</h3><ul>{''.join(f'<li><code>{m}</code>: {html.escape(d)}</li>' for m, (_, d) in METRICS.items())}</ul>
</body></html>"""
    atomic_write_text(out_dir / "report.html", page)
    if console:
        print_metrics(reports, console)
        console.print(f"wrote {out_dir / 'report.md'} and {out_dir / 'report.html'}")
    return out_dir / "report.md", out_dir / "report.html"
