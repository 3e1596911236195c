"""End to end: the quick demo, then regression checks between real adapters."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    r = subprocess.run([sys.executable, "-m", "workflows.cli", "demo", "--quick", "--workdir", str(work)],
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work, r.stdout


@pytest.mark.slow
def test_quick_demo_runs_the_whole_job_and_reuses_finished_stages(demo):
    work, stdout = demo
    summary = json.loads((work / "demo.json").read_text())
    for key in ("data_dir", "classifier", "adapter", "report_md", "report_html"):
        assert Path(summary[key]).exists(), key
    assert set(summary["runs"]) == {"trained-user-model", "untrained-base", "prompted-baseline"}
    stages = summary["stage_seconds"]  # where the time went, stage by stage
    assert [name[:3] for name in stages] == ["1/6", "2/6", "3/6", "4/6", "5/6", "6/6"]
    assert all(s >= 0 for s in stages.values()) and sum(stages.values()) <= summary["seconds"] + 1
    report = Path(summary["report_md"]).read_text()
    assert "real humans (reference)" in report and "prompted-baseline" in report
    trained = json.loads(Path(summary["metrics"]["trained-user-model"]).read_text())["metrics"]
    assert trained["perplexity_real_user_turns"]["run"]["value"] > 0
    # The trained user was told its scenarios' intents; intent metrics sit beside real people's.
    assert "reference" in trained["intent_adherence"] and trained["perplexity_with_intent"]["run"]["n"] > 0
    from userlm.data.intents import gets_intent, pick
    from userlm.data.prepare import read_split

    picked = pick(read_split(summary["data_dir"], "train"), 24, 0)  # the quick demo trains 6 steps x 4
    assert summary["intents"]["examples"] == sum(gets_intent(e["id"], 0, 0.5) for e in picked) + 8
    assert "intent_adherence" in report
    # A second run reuses every stage instead of redoing it: no stage's output is written again.
    finished = [Path(summary["data_dir"]) / "manifest.json", Path(summary["classifier"]) / "manifest.json",
                Path(summary["adapter"]) / "manifest.json"]
    stamps = {path: path.stat().st_mtime_ns for path in finished}
    outputs = [Path(summary["data_dir"]) / "intents.jsonl",
               *(Path(run) / "transcripts.jsonl" for run in summary["runs"].values())]
    contents = {path: path.read_bytes() for path in outputs}
    r = subprocess.run([sys.executable, "-m", "workflows.cli", "demo", "--quick", "--workdir", str(work)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert {path: path.stat().st_mtime_ns for path in finished} == stamps
    assert {path: path.read_bytes() for path in outputs} == contents
    assert json.loads((work / "demo.json").read_text())["runs"] == summary["runs"]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """Two real adapters with one recipe: trained on the human turns, and on the AI turns instead."""
    from trainer.train import TrainConfig, train
    from userlm.config import load_config
    from userlm.data.prepare import PrepareConfig, prepare

    work = tmp_path_factory.mktemp("adapters")
    prepare(PrepareConfig(sources=["sharegpt"], out=str(work / "data"), max_trees_per_source=2000))
    recipe = [f"data_dir={work / 'data'}", "max_steps=30", "max_length=128", "per_device_train_batch_size=4",
              "learning_rate=0.001", "eval_steps=100000", "max_eval_examples=8", "save_steps=100", "lora_r=16"]
    for name, role in (("human-voiced", "user"), ("assistant-voiced", "assistant")):
        train(load_config(TrainConfig, None, [*recipe, f"output_dir={work / name}", f"target_role={role}"]))
    return work / "human-voiced", work / "assistant-voiced"


@pytest.mark.slow
def test_compare_flags_an_assistant_voiced_candidate_and_passes_an_identical_one(adapters, tmp_path):
    baseline, bad = (str(a) for a in adapters)
    thresholds = tmp_path / "thresholds.yaml"
    # AI-voice metrics only: the assistant-voiced candidate must regress on voice, not merely on length.
    thresholds.write_text("human_likeness: {max_regression: 0.0}\nai_voice_rate: {max_regression: 0.0}\n"
                          "role_adherence: {max_regression: 0.0}\n")
    common = ["--scenarios", str(ROOT / "scenarios" / "smoke"), "--samples", "6", "--thresholds", str(thresholds),
              "--set", "max_turns=2", "--reference", str(Path(baseline).parent / "data")]
    cli = [sys.executable, "-m", "workflows.cli", "compare"]
    r = subprocess.run([*cli, baseline, bad, "--out", str(tmp_path / "c1"), *common], capture_output=True, text=True)
    assert r.returncode == 1, (r.stdout[-2000:], r.stderr[-2000:])
    result = json.loads((tmp_path / "c1" / "compare.json").read_text())
    assert set(result["regressed"]) & {"human_likeness", "ai_voice_rate"}, result["rows"]
    assert result["paired_conversations"] == 12 and result["reference"]
    assert all("real_humans" in row for row in result["rows"])  # --reference is honoured
    r = subprocess.run([*cli, baseline, baseline, "--out", str(tmp_path / "c2"), *common], capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    same = json.loads((tmp_path / "c2" / "compare.json").read_text())
    # the baseline's simulation was cached by its manifest hash: both sides read the first call's run
    assert same["baseline_run"] == same["candidate_run"] == result["baseline_run"]
    assert all(row["delta"] == 0 and row["verdict"] in ("non-inferior", "inconclusive") for row in same["rows"])
    r = subprocess.run([*cli, baseline, str(tmp_path), "--out", str(tmp_path / "c3"), *common], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "neither an adapter" in r.stderr


def test_compare_thresholds_read_directions_from_metrics_and_refuse_raw_word_counts(tmp_path):
    from evaluators.metrics import METRICS
    from userlm.io import UserError
    from workflows.compare import load_thresholds

    default = load_thresholds(None)
    assert "mean_turn_words" not in default and "human_likeness" in default
    for metric, spec in default.items():
        if metric not in METRICS:  # the primary, read from evaluate's metrics.json until it is a statistic here
            continue
        assert spec["direction"] == {1: "higher", -1: "lower"}[METRICS[metric].direction]
    bad = tmp_path / "t.yaml"
    for text, message in (("mean_turn_words: {max_regression: 5}\n", "turn_length_w1"),
                          ("ai_voice_rate: {direction: higher, max_regression: 0.1}\n", "lower is better"),
                          ("nonsense: {max_regression: 1}\n", "unknown metric")):
        bad.write_text(text)
        with pytest.raises(UserError, match=message):
            load_thresholds(str(bad))


def test_paired_delta_of_a_set_based_metric_is_not_biased_by_repeated_conversations():
    import numpy as np

    from evaluators import metrics as M
    from evaluators.stats import paired_bootstrap_delta

    rng = np.random.default_rng(0)
    make = lambda vocab: [{"user_turns": [" ".join(f"w{rng.integers(vocab)}" for _ in range(12))]} for _ in range(40)]
    base, cand = make(400), make(300)
    stat = lambda us: M.distinct_n(us, 2)
    fair = paired_bootstrap_delta(base, cand, stat, set_based=True)
    assert fair["ci_low"] <= fair["delta"] <= fair["ci_high"]
    same = paired_bootstrap_delta(base, base, stat, set_based=True)
    assert same["delta"] == 0 and same["ci_low"] == same["ci_high"] == 0


def test_compare_crash_exits_2_with_one_line_not_1(tmp_path):
    # An adapter directory without manifest.json (an interrupted `userlm train`): an error, never "regression".
    for name in ("base", "cand"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text("{}")
    r = subprocess.run([sys.executable, "-m", "workflows.cli", "compare", str(tmp_path / "base"),
                        str(tmp_path / "cand"), "--scenarios", str(ROOT / "scenarios" / "smoke"),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, (r.stdout[-1000:], r.stderr[-2000:])
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in r.stderr
