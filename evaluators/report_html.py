"""report.html: one self-contained page (no network): the verdict, the headline table, plots drawn as inline SVG
by report_assets/report.js from the run data embedded as JSON, a conversation browser, then every metric."""

from __future__ import annotations

import html
from pathlib import Path

from evaluators.metrics import METRICS
from evaluators.report_data import script_json
from evaluators.tables import fmt

ASSETS = Path(__file__).resolve().parent / "report_assets"
CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222;line-height:1.4}
h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em} table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top} td:first-child,th:first-child{text-align:left}
tr.people td{background:#f4f8ff;font-weight:600} td.best{background:#e6f4e6;font-weight:600} .ci{color:#777;font-size:11px;display:block}
.verdict{background:#f7f7f2;border-left:4px solid #2ca02c;padding:.6em 1em} .verdict li{margin:.2em 0}
.scroll{overflow-x:auto} .grid{stroke:#e4e4e4} .tick{font-size:11px;fill:#444} .axis{font-size:12px;fill:#222}
.bar-label{font-size:11px;fill:#fff} .legend{font-size:12px;margin:.3em 0 1em}
.legend-item{margin-right:1em;white-space:nowrap} .swatch{display:inline-block;width:10px;height:10px;margin-right:4px}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:1em}
.browser{display:grid;grid-template-columns:260px 1fr;gap:1em} #conv-list{max-height:640px;overflow-y:auto}
.conv-item{display:block;width:100%;text-align:left;margin:2px 0;padding:4px 6px;border:1px solid #ddd;
background:#fff;cursor:pointer;font-size:12px} .conv-item.active{background:#e8f0fe;border-color:#1f77b4}
.turn{border:1px solid #ddd;border-radius:6px;padding:.4em .7em;margin:.4em 0;white-space:pre-wrap;font-size:14px}
.turn.user{background:#eef5ff;margin-right:15%} .turn.assistant{background:#f6f6f6;margin-left:15%}
.turn.person{background:#fff7e6} .pair{display:grid;grid-template-columns:1fr 1fr;gap:.5em;margin-right:0}
.pair .turn{margin:0} .who{font-size:11px;color:#555;font-weight:600;margin-bottom:.2em}
.p-ai{margin-left:.6em;padding:0 .4em;border-radius:3px;font-weight:400} .p-ai.high{background:#fbd5d5}
.p-ai.low{background:#d5f0d8} .flag{margin-left:.6em;color:#b35c00;font-weight:400} .note{color:#666;font-size:13px}
"""


def _cell(ci: dict | None) -> str:
    text = fmt(ci)
    if " [" not in text:
        return html.escape(text)
    value, interval = text.split(" ", 1)
    return f'{html.escape(value)}<span class="ci">{html.escape(interval)}</span>'


def headline_table(reports: list[dict], names: list[str]) -> str:
    from evaluators.verdict import PEOPLE, metric_verdict, reference_ci

    arrow = {1: " ↑", -1: " ↓", 0: ""}
    best = {n: (metric_verdict(reports, n) or {}).get("best") for n in names}  # the closest run: highlighted
    mark = lambda r, n: ' class="best"' if best[n] == r["label"] else ""
    head = "".join(f'<th title="{html.escape(METRICS[n].description)}">{html.escape(n)}{arrow[METRICS[n].direction]}</th>'
                   for n in names)
    rows = [f'<tr class="people"><td>{PEOPLE}</td>' + "".join(
        f"<td>{_cell(reference_ci(reports, n)) if METRICS[n].reference_row else '-'}</td>" for n in names) + "</tr>"]
    rows += [f"<tr><td>{html.escape(r['label'])}</td>" + "".join(
        f"<td{mark(r, n)}>{_cell(r['metrics'].get(n, {}).get('run'))}</td>" for n in names) + "</tr>" for r in reports]
    return f'<table id="headline-table"><tr><th></th>{head}</tr>{"".join(rows)}</table>'


def full_table(reports: list[dict]) -> str:
    """Every metric, a row each (metrics down, people and runs across: 20+ columns would not fit)."""
    from evaluators.verdict import PEOPLE, reference_ci

    better = {1: "higher", -1: "lower", 0: "-"}
    head = f"<th>metric</th><th>more human</th><th>{PEOPLE}</th>" + "".join(
        f"<th>{html.escape(r['label'])}</th>" for r in reports)
    rows = []
    for m in METRICS.values():
        if not any(m.name in r["metrics"] for r in reports):
            continue
        rows.append(f'<tr><td title="{html.escape(m.description)}"><code>{m.name}</code></td>'
                    f"<td>{better[m.direction]}</td><td>{_cell(reference_ci(reports, m.name))}</td>"
                    + "".join(f"<td>{_cell(r['metrics'].get(m.name, {}).get('run'))}</td>" for r in reports) + "</tr>")
    return f'<div class="scroll"><table id="metrics-table"><tr>{head}</tr>{"".join(rows)}</table></div>'


def page(reports: list[dict], data: dict, stamp: str, figures: str, legend_items: str) -> str:
    # "</script" inside the script would end the element early: escape it (JSON data is escaped in script_json).
    script = (ASSETS / "report.js").read_text(encoding="utf-8").replace("</script", "<\\/script")
    verdict = data["verdict"]
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in verdict["lines"])
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>userlm report</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head><body>
<h1>How close to real people is the simulated user?</h1>
<p class="note">{html.escape(stamp)}. Real people: held-out conversations of the reference data. 95% bootstrap CIs.
Every metric is in the table at the end, in report.md and in each run's metrics.json.</p>
<div class="verdict" id="verdict"><strong>{html.escape(verdict["summary"])}</strong><ul>{lines}</ul></div>
<h2>Headline metrics</h2>{headline_table(reports, data["headline"])}
<p class="note">Green: the run closest to real people on that metric (↑ higher / ↓ lower is more human).</p>
<h2>Plots</h2><div class="plots">
<div><h3>User-turn length against people</h3><div id="plot-turn-length"></div></div>
<div><h3>P(AI) of user turns</h3><div id="plot-p-ai"></div></div>
<div><h3>Where conversations end</h3><div id="plot-ends"></div></div>
<div><h3>Per scenario <select id="scenario-measure" aria-label="measure"></select></h3><div id="plot-scenarios"></div></div>
</div>
<h2>Conversations</h2>
<p class="note">Pick a run, then a conversation. Each user turn carries the AI-voice classifier's P(AI) where the run
was scored; in replay runs the model's turn stands beside the real person's turn in the same context.</p>
<label>run <select id="run-select"></select></label>
<div class="browser"><div id="conv-list"></div><div id="conversation"></div></div>
<h2>All metrics</h2>{full_table(reports)}<ul class="note">{legend_items}</ul>
{figures}
<script type="application/json" id="report-data">{script_json(data)}</script>
<script>{script}</script>
</body></html>"""
