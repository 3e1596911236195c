import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import needs_shared

from evaluators import metrics as M
from evaluators.classifier import AIVoiceClassifier, ClassifierConfig, train_classifier
from evaluators.stats import bootstrap_ci, paired_bootstrap_delta


def units(*conversations, ended=False):
    return [{"scenario_id": "s", "user_turns": list(c), "ended_by_user": ended} for c in conversations]


def test_diversity_of_identical_turns_is_zero_and_vendi_counts_distinct_items():
    v = np.eye(4)[[0, 0, 0]]
    assert M.mean_pairwise_cosine_distance(v) == pytest.approx(0.0)
    assert M.vendi_score(v) == pytest.approx(1.0)
    assert M.vendi_score(np.eye(5)) == pytest.approx(5.0)
    assert M.mean_pairwise_cosine_distance(np.eye(3)) == pytest.approx(1.0)


def test_distinct_n_role_adherence_and_termination():
    same = units(["a b c"], ["a b c"])
    assert M.distinct_n(same, 1) == pytest.approx(0.5)
    assert M.distinct_n(units(["a b c d"]), 2) == pytest.approx(1.0)
    assert M.role_adherence(units(["Sure! Here is a recipe for you to try.", "my heater is broken"])) == 0.5
    assert M.acts_as_assistant("How can I help you today?") and not M.acts_as_assistant("can you help me?")
    assert M.termination_rate(units(["x"], ended=True) + units(["y"])) == 0.5


def test_bootstrap_intervals():
    data = list(np.random.default_rng(0).normal(5, 1, 200))
    ci = bootstrap_ci(data, lambda xs: float(np.mean(xs)))
    assert ci["ci_low"] < 5 < ci["ci_high"] and ci["ci_low"] < ci["value"] < ci["ci_high"] and ci["n"] == 200
    base, cand = list(range(50)), [x + 10 for x in range(50)]
    delta = paired_bootstrap_delta(base, cand, lambda xs: float(np.mean(xs)))
    assert delta["delta"] == pytest.approx(10) and delta["ci_low"] == pytest.approx(10)  # paired: no noise
    set_ci = bootstrap_ci(units(["a b"], ["c d"], ["a b"], ["e f"]), lambda us: M.distinct_n(us, 1), set_based=True)
    assert set_ci["ci_low"] <= set_ci["value"] <= set_ci["ci_high"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from conftest import OASST2_SAMPLE

    from userlm.data.prepare import PrepareConfig, prepare

    work = tmp_path_factory.mktemp("clf")
    prepare(PrepareConfig(sources=["sharegpt"], out=str(work / "sharegpt"), max_trees_per_source=4000))
    data = [str(work / "sharegpt")]
    if OASST2_SAMPLE.exists():
        prepare(PrepareConfig(sources=[str(OASST2_SAMPLE)], out=str(work / "oasst")))
        data.append(str(work / "oasst"))
    manifest = train_classifier(ClassifierConfig(out=str(work / "c"), data=data, max_per_class_per_source=250,
                                                 features="auto",
                                                 held_out_generators=False))
    return work / "c", manifest


@pytest.mark.slow
@needs_shared  # its 0.9 bar is for the OASST turns beside ShareGPT's (without them: 0.83 on ShareGPT's alone)
def test_classifier_separates_held_out_human_and_ai_turns(classifier):
    from evaluators.classifier_data import data_rows

    out, manifest = classifier
    assert manifest["test_auroc"] >= 0.9, manifest["test"]["overall"]
    assert set(manifest["validation"]) == {"embeddings", "tfidf", "both"}
    assert manifest["generators"] == [] and "degenerate" in manifest["counts"]["train"]  # data-only AI turns
    clf = AIVoiceClassifier(out)
    # Held-out real turns (the test split of the data it trained on): AI turns score higher than human ones.
    rows = data_rows([d["dir"] for d in manifest["data"]], cap=150, seed=1)[0]["test"]
    p = clf.p_ai([r["text"] for r in rows])
    human = np.mean([s for s, r in zip(p, rows) if r["label"] == 0])
    ai = np.mean([s for s, r in zip(p, rows) if r["label"] == 1])
    assert ai > human + 0.3


@pytest.mark.slow
def test_score_texts_cli(classifier, tmp_path):
    out, _ = classifier
    src = tmp_path / "texts.jsonl"
    src.write_text(json.dumps({"text": "Certainly! Here is a comprehensive overview of the topic, covering each "
                                       "aspect in detail. 1. Introduction 2. Key points 3. Conclusion"}) + "\n"
                   + json.dumps({"text": "ok thx, but how do i do that on windows lol"}) + "\n")
    r = subprocess.run([sys.executable, "-m", "workflows.cli", "evaluate", "score-texts", str(src), "--classifier",
                        str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    scored = [json.loads(line) for line in (tmp_path / "texts.scored.jsonl").read_text().splitlines()]
    assert scored[0]["p_ai"] > scored[1]["p_ai"]
    src.write_text('{"txt": "x"}\n')
    r = subprocess.run([sys.executable, "-m", "workflows.cli", "evaluate", "score-texts", str(src), "--classifier",
                        str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and "texts.jsonl:1: field 'text'" in r.stderr


@pytest.mark.slow
def test_evaluate_and_report_a_real_run(classifier, tmp_path):
    from evaluators.report import write_report
    from evaluators.run import evaluate_run
    from simulator.run import SimulationConfig, simulate
    from userlm.config import load_config
    from userlm.data.prepare import PrepareConfig, prepare

    clf_dir, _ = classifier
    data = tmp_path / "data"
    prepare(PrepareConfig(sources=["sharegpt"], out=str(data), max_trees_per_source=600))
    run = tmp_path / "run"
    simulate(load_config(SimulationConfig, None, [f"out={run}", "samples=2", "max_turns=2"]))
    report = evaluate_run(str(run), reference=str(data), classifier=str(clf_dir),
                          evaluators="ai_voice,behaviour,diversity")
    m = report["metrics"]
    for name in ("human_likeness", "ai_voice_rate", "role_adherence", "termination_rate", "distinct_2",
                 "diversity_all", "vendi_all", "diversity_ratio_to_human", "turn_length_w1"):
        assert m[name]["run"]["value"] is not None, name
    assert 0 <= m["human_likeness"]["reference"]["value"] <= 1
    # The reference is the test split of the same ShareGPT trees: none of its turns was trained on.
    assert report["classifier"]["reference_turns_in_training"] == 0
    assert report["classifier"]["test"]["length_matched"]["auroc"] is not None
    assert m["truncated_share"]["run"]["value"] is not None
    for f in ("metrics.json", "metrics.md", "metrics.csv"):
        assert (run / f).exists()
    md, html = write_report([str(run)], str(tmp_path / "report"))
    assert "real humans (reference)" in md.read_text() and "data:image/png;base64" in html.read_text()
    assert "word count alone" in md.read_text() and "Reliability of P(AI)" in html.read_text()


def test_termination_points_and_f1():
    from evaluators import ends as E
    from evaluators import termination as T

    ex = lambda i, roles, ends: {"id": str(i), "tree_id": str(i), "ends_conversation": ends,
                                 "messages": [{"role": r, "content": f"{r} {k}"} for k, r in enumerate(roles)]}
    units = T.decision_points([ex(1, ["user", "assistant", "user", "assistant"], True),
                               ex(2, ["user", "assistant", "user", "assistant"], False)], limit=10)
    by_id = {u["id"]: [truth for _, truth in u["points"]] for u in units}
    assert by_id == {"1": [False, True], "2": [False]}  # no end recorded: the last AI turn is no decision point
    for u in units:  # a user model that always ends
        u["pred"] = [True] * len(u["points"])
    T.with_ends(units)  # scored by the statistics a replay run's points use
    assert E.precision(units) == pytest.approx(1 / 3) and E.recall(units) == 1.0
    assert E.f1(units) == pytest.approx(0.5) == E.f1_always(units) and E.base_rate(units) == pytest.approx(1 / 3)
    assert T.termination_report("unused", "", [ex(3, ["user", "assistant"], False)]) is None  # n/a: no real end


@pytest.mark.slow
def test_evaluate_perplexity_command_is_the_evaluators_code(tmp_path):
    from userlm.data.prepare import PrepareConfig, prepare

    data = tmp_path / "data"
    prepare(PrepareConfig(sources=["sharegpt"], out=str(data), max_trees_per_source=400))
    r = subprocess.run([sys.executable, "-m", "workflows.cli", "evaluate", "perplexity", "--model",
                        "base:embedded:smollm2-135m-instruct", "--base-model", "embedded:smollm2-135m-instruct",
                        "--data", str(data), "--split", "test", "--limit", "6", "--max-words", "150", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["perplexity"] > 1 and result["words"] > 0 and result["examples"] == 6
    # `base:M` and M as the base model are the same model in the same user-model format: the same perplexity.
    assert result["base"]["perplexity"] == pytest.approx(result["perplexity"], rel=1e-4)
    from evaluators.perplexity import perplexity_examples
    from evaluators.word_perplexity import fitted, score_examples, summary
    from userlm.chat import USER_MODEL_SYSTEM

    examples = [fitted(ex, 150) for ex in perplexity_examples(str(data), "test", 6)]
    scores = score_examples("embedded:smollm2-135m-instruct", USER_MODEL_SYSTEM, examples)
    assert summary([[s] for s in scores])["perplexity"] == pytest.approx(result["perplexity"], rel=1e-4)


@pytest.mark.slow
def test_termination_of_a_real_model_on_real_ends(tmp_path):
    from evaluators.termination import termination_report
    from userlm.chat import USER_MODEL_SYSTEM
    from userlm.data.prepare import PrepareConfig, prepare, read_split

    prepare(PrepareConfig(sources=["sharegpt"], out=str(tmp_path / "d"), max_trees_per_source=1000))
    examples = [ex for ex in read_split(tmp_path / "d", "test") if len(ex["messages"]) >= 4]  # went on, then ended
    report = termination_report("embedded:smollm2-135m-instruct", USER_MODEL_SYSTEM, examples, limit=4)
    assert set(report) == {"end_f1", "end_f1_always", "end_precision", "end_recall", "end_base_rate"}
    assert 0 < report["end_base_rate"]["value"] < 1 and report["end_base_rate"]["n"] == 4
