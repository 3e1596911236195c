"""Fast tier: evaluation, the report and `userlm compare` end to end on the tiny real-architecture model of
conftest.py: a real classifier (TF-IDF, data-only AI turns: the tiny model's runs are ranked), real simulations and a
real adapter. Whether compare catches an assistant-voiced adapter trained on SmolLM2 is the slow test of
test_workflows.py; here the regression is a candidate run whose user turns speak as an assistant."""

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "scenarios" / "smoke"


@pytest.fixture(scope="module")
def work(tiny_model, tmp_path_factory):
    """Prepared ShareGPT data, a classifier trained on its train split, and a 2-step adapter of the tiny model."""
    from evaluators.classifier import ClassifierConfig, train_classifier
    from trainer.train import TrainConfig, train
    from userlm.config import load_config
    from userlm.data.prepare import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("tiny-compare")
    prepare(PrepareConfig(sources=["sharegpt"], out=str(root / "data"), max_trees_per_source=600))
    train_classifier(ClassifierConfig(out=str(root / "classifier"), data=[str(root / "data")],
                                      max_per_class_per_source=150, held_out_generators=False))
    train(load_config(TrainConfig, None, [f"base_model={tiny_model}", f"data_dir={root / 'data'}",
                                          f"output_dir={root / 'adapter'}", "max_steps=2", "max_length=96",
                                          "per_device_train_batch_size=2", "eval_steps=100000",
                                          "max_eval_examples=4", "lora_r=8"]))
    return root


def test_evaluate_and_report_a_run_beside_real_humans(work, tiny_model, tmp_path):
    from evaluators.report import write_report
    from evaluators.run import evaluate_run
    from simulator.run import SimulationConfig, simulate
    from userlm.config import load_config

    run = simulate(load_config(SimulationConfig, None, [f"out={tmp_path / 'run'}", "samples=2", "max_turns=2",
                                                        f"scenarios={SMOKE}", f"user=prompted:{tiny_model}",
                                                        f"assistant={tiny_model}"]))
    report = evaluate_run(str(run), reference=str(work / "data"), classifier=str(work / "classifier"),
                          evaluators="ai_voice,behaviour,diversity")
    m = report["metrics"]
    for name in ("human_likeness", "ai_voice_rate", "role_adherence", "termination_rate", "distinct_2",
                 "diversity_all", "vendi_all", "diversity_ratio_to_human", "turn_length_w1", "truncated_share"):
        assert m[name]["run"]["value"] is not None, name
    assert 0 <= m["human_likeness"]["reference"]["value"] <= 1
    # The reference is the test split of the data the classifier trained on: none of its turns was trained on.
    assert report["classifier"]["reference_turns_in_training"] == 0
    assert report["classifier"]["test"]["length_matched"]["auroc"] is not None
    assert json.loads((run / "metrics.json").read_text())["metrics"] == json.loads(json.dumps(m))
    assert (run / "metrics.md").exists() and (run / "metrics.csv").exists()
    md, html = write_report([str(run)], str(tmp_path / "report"))
    assert md.exists() and "data:image/png;base64" in html.read_text()


def test_compare_passes_an_identical_candidate_and_flags_an_assistant_voiced_run(work, tiny_model, tmp_path,
                                                                                  monkeypatch):
    from rich.console import Console

    from workflows.compare import compare

    monkeypatch.setenv("USERLM_CACHE", str(tmp_path / "cache"))  # the adapter's simulation is cached here
    adapter = str(work / "adapter")
    common = dict(scenarios=str(SMOKE), samples=2, sim_overrides=["max_turns=2", f"assistant={tiny_model}"],
                  classifier=str(work / "classifier"), reference=str(work / "data"),
                  console=Console(quiet=True))
    same = compare(adapter, adapter, out=str(tmp_path / "c1"), **common)
    assert same["exit_code"] == 0 and not same["regressed"] and same["paired_conversations"] == 4
    assert same["baseline_run"] == same["candidate_run"]  # one simulation, cached by the adapter's manifest hash
    rows = {r["metric"]: r for r in same["rows"]}
    assert all(r["delta"] == 0 and r["verdict"] in ("non-inferior", "inconclusive")
               for r in rows.values() if r["verdict"] != "skipped")
    assert "real_humans" in rows["human_likeness"] and same["primary"] == "discriminability"  # with --reference
    # stated for every tested metric (equal to the margin where the delta cannot vary: identical runs, AUROC 1.0)
    assert all(r["min_detectable_drop"] >= r["margin"] for r in rows.values())
    assert "Smallest drop this run detects" in (tmp_path / "c1" / "compare.md").read_text()
    assert "real_humans" not in rows["truncated_share"]  # no real-human row, as in evaluate's table
    assert json.loads((tmp_path / "c1" / "compare.json").read_text()) == json.loads(json.dumps(same))

    baseline_run = Path(same["baseline_run"])
    transcripts = (baseline_run / "transcripts.jsonl").read_bytes()
    again = compare(adapter, adapter, out=str(tmp_path / "c2"), **common)
    assert again["baseline_run"] == same["baseline_run"]
    assert (baseline_run / "transcripts.jsonl").read_bytes() == transcripts  # reused, not simulated again

    # The same conversations with every user turn in an assistant's voice: role adherence regresses.
    candidate = tmp_path / "assistant-voiced"
    shutil.copytree(baseline_run, candidate)
    records = [json.loads(line) for line in (candidate / "transcripts.jsonl").read_text().splitlines()]
    for r in records:
        for t in r["turns"]:
            if t["role"] == "user":
                t["text"] = "Sure! Here is a detailed overview of the topic. How can I help you further?"
    (candidate / "transcripts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("role_adherence: {max_regression: 0.0}\n")
    worse = compare(str(baseline_run), str(candidate), out=str(tmp_path / "c3"), thresholds=str(thresholds),
                    **common)
    assert worse["regressed"] == ["role_adherence"] and worse["exit_code"] == 1
    assert worse["rows"][0]["candidate"] == 0.0 and worse["rows"][0]["baseline"] > 0


def test_score_texts_command_scores_a_file_and_names_a_bad_line(work, tmp_path, capsys, keep_thread_settings):
    from workflows.cli import main

    src = tmp_path / "texts.jsonl"
    texts = ["Certainly! Here is a comprehensive overview of the topic.", "ok thx, but how do i do that on windows"]
    src.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(texts)))
    assert main(["evaluate", "score-texts", str(src), "--classifier", str(work / "classifier")]) == 0
    scored = [json.loads(line) for line in (tmp_path / "texts.scored.jsonl").read_text().splitlines()]
    assert [(s["text"], s["n"]) for s in scored] == [(t, i) for i, t in enumerate(texts)]
    assert all(0 <= s["p_ai"] <= 1 for s in scored)
    src.write_text('{"txt": "x"}\n')
    capsys.readouterr()
    assert main(["evaluate", "score-texts", str(src), "--classifier", str(work / "classifier")]) == 2
    assert "texts.jsonl:1: field 'text'" in capsys.readouterr().err


def test_a_float32_adapter_is_folded_into_its_weights_for_inference(work, tiny_model):
    """load_causal_lm merges a LoRA into float32 weights (faster on the CPU); the logits stay those of the
    unmerged adapter, and differ from the base model's (the LoRA is really there)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from userlm.models import load_causal_lm

    merged, _ = load_causal_lm(str(work / "adapter"))
    assert not isinstance(merged, PeftModel) and not any("lora" in n for n, _ in merged.named_parameters())
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.inference_mode():
        plain = base(input_ids=ids).logits
        unmerged = PeftModel.from_pretrained(base, str(work / "adapter")).eval()(input_ids=ids).logits
        folded = merged(input_ids=ids).logits
    assert (unmerged - plain).abs().max() > 1e-4
    torch.testing.assert_close(folded, unmerged, atol=1e-4, rtol=1e-4)  # float32 rounding
    trainable, _ = load_causal_lm(str(work / "adapter"), trainable=True)
    assert isinstance(trainable, PeftModel)  # training keeps the adapter separate


def test_compare_seeds_runs_the_a_a_check_and_states_its_false_alarm_rate(work, tiny_model, tmp_path, monkeypatch):
    from rich.console import Console

    from workflows.compare import compare

    monkeypatch.setenv("USERLM_CACHE", str(tmp_path / "cache"))
    adapter = str(work / "adapter")
    result = compare(adapter, adapter, scenarios=str(SMOKE), samples=1, seeds=2, out=str(tmp_path / "aa"),
                     sim_overrides=["max_turns=2", f"assistant={tiny_model}"], classifier=str(work / "classifier"),
                     console=Console(quiet=True))
    aa = result["a_a"]
    assert aa["comparisons"] == 2 and len(set(aa["runs"])) == 2 and 0 <= aa["rate"] <= 1
    assert "A/A check:" in (tmp_path / "aa" / "compare.md").read_text()


def test_the_classifier_scores_loops_as_ai_and_refuses_a_run_of_a_generator_it_trained_on(work, tiny_model, tmp_path):
    from evaluators.classifier import AIVoiceClassifier
    from evaluators.run import evaluate_run
    from simulator.run import SimulationConfig, simulate
    from userlm.config import load_config
    from userlm.io import UserError

    clf = AIVoiceClassifier(work / "classifier")
    assert clf.manifest["generators"] == [] and clf.manifest["test"]["degenerate"]["n"] > 0
    assert list(clf.p_ai(["please " * 50, "I see. " * 12])) == [1.0, 1.0]
    # The same classifier, as if its AI class held the tiny model's turns: a run of that model is refused.
    owned = tmp_path / "owned"
    shutil.copytree(work / "classifier", owned)
    manifest = json.loads((owned / "manifest.json").read_text())
    (owned / "manifest.json").write_text(json.dumps({**manifest, "generators": [tiny_model]}))
    run = simulate(load_config(SimulationConfig, None, [f"out={tmp_path / 'run'}", "samples=1", "max_turns=1",
                                                        f"scenarios={SMOKE}", f"user=prompted:{tiny_model}",
                                                        f"assistant={tiny_model}"]))
    with pytest.raises(UserError, match="trained on turns written by"):
        evaluate_run(str(run), classifier=str(owned), evaluators="ai_voice")
