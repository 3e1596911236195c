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
    report = Path(summary["report_md"]).read_text()
    assert "real humans (reference)" in report and "prompted-baseline" in report
    trained = json.loads(Path(summary["metrics"]["trained-user-model"]).read_text())["metrics"]
    assert trained["perplexity_real_user_turns"]["run"]["value"] > 0
    # A second run reuses every stage instead of redoing it.
    r = subprocess.run([sys.executable, "-m", "workflows.cli", "demo", "--quick", "--workdir", str(work)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("reusing") >= 3 and r.stdout.count("already done") == 3


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
    thresholds.write_text("human_likeness: {direction: higher, max_regression: 0.0}\n"
                          "ai_voice_rate: {direction: lower, max_regression: 0.0}\n"
                          "mean_turn_words: {direction: lower, max_regression: 0.0}\n")
    common = ["--scenarios", str(ROOT / "scenarios" / "smoke"), "--samples", "6", "--thresholds", str(thresholds),
              "--set", "max_turns=2"]
    cli = [sys.executable, "-m", "workflows.cli", "compare"]
    r = subprocess.run([*cli, baseline, bad, "--out", str(tmp_path / "c1"), *common], capture_output=True, text=True)
    assert r.returncode == 1, (r.stdout[-2000:], r.stderr[-2000:])
    result = json.loads((tmp_path / "c1" / "compare.json").read_text())
    assert result["regressed"] and result["paired_conversations"] == 12
    r = subprocess.run([*cli, baseline, baseline, "--out", str(tmp_path / "c2"), *common], capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    assert "reusing cached simulation" in r.stdout  # the baseline's simulation was cached by manifest hash
    same = json.loads((tmp_path / "c2" / "compare.json").read_text())
    assert all(row["delta"] == 0 and row["verdict"] == "same" for row in same["rows"])
    r = subprocess.run([*cli, baseline, str(tmp_path), "--out", str(tmp_path / "c3"), *common], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "neither an adapter" in r.stderr
