"""`userlm report RUN...`: evaluated runs side by side, as markdown and one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path

from evaluators.metrics import METRICS
from evaluators.stops import stops_markdown
from evaluators.tables import markdown_table, print_headline
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
        if (report.get("run_config") or {}).get("replay") and not report["label"].endswith("(replay)"):
            report["label"] += " (replay)"  # a replay and a self-play run of one user may share a directory name
        reports.append(report)
    return reports


def _figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def classifier_section(reports: list[dict]) -> str:
    """Markdown: what the AI-voice classifier's scores are worth, on held-out turns of its data's test split."""
    info = next((r["classifier"] for r in reports if (r.get("classifier") or {}).get("test")), None)
    if not info:
        return ""
    t = info["test"]
    cell = lambda x: "n/a" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)
    lines = [f"## The AI-voice classifier on held-out turns ({info['features']} features, version {info['version']})",
             "", ("AUROC of P(AI), beside the AUROC of word count alone (the length shortcut). Length-matched: each "
                  "AI turn cut at a word boundary to the length of a paired human turn."), "",
             "| held-out turns | AUROC | word count alone | human turns | AI turns |", "|---|---|---|---|---|"]
    rows = [("all", t["overall"]), ("length-matched", t["length_matched"])]
    rows += [(f"{name} words", v) for name, v in t["by_length_bucket"].items()]
    rows += [(f"AI source {name} (vs all humans)", v) for name, v in t["by_ai_source"].items()]
    rows += [(f"{name}: human vs AI turns", v) for name, v in t["by_data_source"].items()]
    lines += [f"| {name} | {cell(v['auroc'])} | {cell(v['word_count_baseline'])} | {v['n_human']} | {v['n_ai']} |"
              for name, v in rows]
    for name, v in t["by_data_source"].items():
        lines.append(f"\n{name}, length-matched: AUROC {cell(v['length_matched'])}.")
    for name, v in (t.get("held_out_generator") or {}).items():
        lines.append(f"\nHeld-out generator {name}: AUROC {cell(v['auroc_trained_without_it'])} trained without "
                     f"it ({cell(v['auroc_full_model'])} with it, {v['n_ai']} turns).")
    lines.append(f"\nCalibration on held-out turns ({t['calibration']['ai_share']:.0%} AI): expected calibration "
                 f"error {t['calibration']['ece']:.3f} (reliability plot in report.html).")
    if info.get("reference_turns_in_training") is not None:
        lines.append(f"Reference turns in the classifier's training rows: {info['reference_turns_in_training']}.")
    return "\n".join(lines) + "\n"


def reliability_plot(reports: list[dict]) -> list[tuple[str, str]]:
    info = next((r["classifier"] for r in reports if (r.get("classifier") or {}).get("test")), None)
    if not info:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = info["test"]["calibration"]["bins"]
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.plot([b["mean_p_ai"] for b in bins], [b["observed_ai_share"] for b in bins], marker="o")
    for b in bins:
        ax.annotate(str(b["n"]), (b["mean_p_ai"], b["observed_ai_share"]), fontsize=7, xytext=(3, -9),
                    textcoords="offset points")
    ax.set_xlabel("mean P(AI) in bin")
    ax.set_ylabel("observed share of AI turns")
    title = "Reliability of P(AI) on held-out turns"
    ax.set_title(title, fontsize=10)
    out = [(title, _figure_png(fig))]
    plt.close(fig)
    return out


def report_warnings(runs: list[str], reports: list[dict]) -> list[str]:
    """One line each (on stderr and in report.md): runs that differ in more than the user model, and runs
    evaluated against different real humans."""
    import sys

    from evaluators.comparability import refuse_incomparable

    infos = [(run, read_json(Path(run) / "run.json", "run.json")) for run in runs if (Path(run) / "run.json").exists()]
    by_mode: dict = {}  # a replay and a self-play run differ by design: each is compared with its own kind
    for run, info in infos:
        by_mode.setdefault(info.get("mode", "self-play"), []).append((run, info))
    warnings = [w for group in by_mode.values() if len(group) > 1 for w in refuse_incomparable(group)]
    references = sorted({str(r.get("reference_dir")) for r in reports})
    if len(references) > 1:
        warnings.append(f"the runs were evaluated against different real humans ({', '.join(references)})")
    classifiers = sorted({str((r.get("classifier") or {}).get("version")) for r in reports if r.get("classifier")})
    if len(classifiers) > 1:
        warnings.append(f"the runs were scored by different AI-voice classifiers ({', '.join(classifiers)})")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return warnings


def write_report(runs: list[str], out: str, console=None) -> tuple[Path, Path]:
    from evaluators.report_data import report_data
    from evaluators.report_html import page
    from evaluators.verdict import headline_names, verdict

    reports = load_reports(runs)
    warnings = report_warnings(runs, reports)
    out_dir = Path(out)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    better = {1: "higher is more human", -1: "lower is more human", 0: "no better direction"}
    legend = "".join(f"- `{m.name}` ({better[m.direction]}): {m.description}\n" for m in METRICS.values())
    section = classifier_section(reports)
    names = headline_names(reports)
    summary, lines = verdict(reports, names)
    md = (f"# User-model comparison ({stamp})\n\nValues with 95% bootstrap CIs; real people first.\n\n"
          f"**{summary}**\n\n" + "".join(f"- {line}\n" for line in lines)
          + f"\n## Headline metrics\n\n{markdown_table(reports, names)}\n## All metrics\n\n"
          f"{markdown_table(reports)}\n{legend}")
    data = report_data(reports, runs, (summary, lines))  # stop reasons from the transcripts, where metrics.json
    stops = stops_markdown([{**r, "stop_reasons": d["stop_reasons"] or r.get("stop_reasons")}  # has none
                            for r, d in zip(reports, data["runs"])])
    md += f"\n{stops}" if stops else ""
    md += f"\n{section}" if section else ""
    md += "".join(f"\nWarning: {w}.\n" for w in warnings)
    atomic_write_text(out_dir / "report.md", md)
    figures = "".join(f'<h3>{html.escape(t)}</h3><img alt="{html.escape(t)}" src="data:image/png;base64,{png}">'
                      for t, png in reliability_plot(reports))
    if section:
        figures += f"<pre>{html.escape(section)}</pre>"
    items = "".join(f"<li><code>{m.name}</code>: {html.escape(m.description)}</li>" for m in METRICS.values())
    atomic_write_text(out_dir / "report.html", page(reports, data, stamp, figures, items))
    if console:
        print_headline(reports, console, where=f"{out_dir / 'report.md'} and report.html")
        console.print(f"wrote {out_dir / 'report.md'} and {out_dir / 'report.html'}")
    return out_dir / "report.md", out_dir / "report.html"
