"""Issue 24: does the trained user's end decision improve with more training steps? p_end = the probability the
user model gives to the end marker as its whole turn (END_OF_CONVERSATION, then end-of-turn) at every end decision
of replayed held-out conversations (prompts cut to 352 tokens as in the demo's replay, no intents).

    prepare (CPU): decision points' token ids (validation, test: every conversation) and the demo recipe's training
        rows at each step count (the real tokenize_split), so the GPU spends no time tokenizing
    device (GPU): train the demo's recipe (configs/embedded-cpu.yaml, intent=mixed, windows, batch 4) for each step
        count, score p_end with each adapter (0 steps: the base model)
    table (CPU): AUROC; F1 at the validation-best threshold; always-end F1; sampled-end F1 (expected F1 ending with
        probability p_end, ratio of expectations); F1 - always-end; 95% bootstrap CIs over test conversations
        (threshold fixed); a 6-feature logistic baseline trained on the train split's decisions

    python benchmarks/bench_end_decisions.py prepare|device|table --data DATA --prep DIR [--out OUT] [--steps 50,400]
(results/benchmarks/2026-11-30-h200-end-decisions.md)"""

import argparse
import json
import lzma
import random
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BASE = "embedded:smollm2-135m-instruct"
BUDGET = 352  # the demo replay's prompt tokens (context 512 less the 160-token turn)
SPLITS = ("validation", "test")


def dump(obj, path):
    with lzma.open(path, "wt") as f:
        json.dump(obj, f)


def load(path):
    with lzma.open(path, "rt") as f:
        return json.load(f)


def recipe(data: str, steps: int, out: str = "work/adapters/end-bench"):
    """The demo's config (workflows/demo.py train_config) at `steps` steps of 4; no checkpoints on the way; float32
    weights as on the CPU (the trainer adds bf16 autocast on CUDA)."""
    from trainer.train import TrainConfig
    from userlm.config import load_config

    return load_config(TrainConfig, ROOT / "configs" / "embedded-cpu.yaml", [
        f"data_dir={data}", "eval_steps=100000", "intent=mixed", f"max_steps={steps}", "save_steps=100000",
        "dtype=float32", f"output_dir={out}"])


def decision_points(tok, data: str, split: str, system: str, limit: int | None = None) -> list:
    """[conversation id, point index, person ended, input ids, labels] of each end decision of the replay plan."""
    from simulator.replay_fit import fit_points
    from simulator.replay_plan import plan_points, replay_plan
    from userlm import END_OF_CONVERSATION
    from userlm.chat import render_ids

    scored = len(tok(END_OF_CONVERSATION, add_special_tokens=False)["input_ids"]) + 1
    out = []
    for ex in replay_plan(data, split, None, False)[0][:limit]:
        points = plan_points(ex)
        fitted = fit_points(tok, ex["messages"], [p["index"] for p in points], system, BUDGET)
        for p, (msgs, _, ids) in zip(points, fitted):
            if not p["decision"] or p["person_ended"] is None:
                continue
            ids = ids if ids is not None else render_ids(tok, msgs, True)
            full = render_ids(tok, msgs + [{"role": "assistant", "content": END_OF_CONVERSATION}], False)
            assert full[:len(ids)] == ids, "the prompt is not a prefix of prompt + end marker"
            labels = [-100] * len(ids) + full[len(ids):len(ids) + scored]
            labels += [-100] * (len(full) - len(labels))
            out.append([ex["id"], p["index"], int(p["person_ended"]), full, labels])
    return out


def prepare(a):
    from trainer.train import example_systems, tokenize_split
    from userlm.chat import user_model_system
    from userlm.data.intents import load_intents
    from userlm.data.prepare import read_split
    from userlm.models import load_tokenizer

    tok, prep = load_tokenizer(BASE), Path(a.prep)
    prep.mkdir(parents=True, exist_ok=True)
    system = user_model_system(recipe(a.data, 1).system_prompt, "")  # a trained user told no intent
    for split in SPLITS:
        dump({"system": system, "points": decision_points(tok, a.data, split, system, a.limit)},
             prep / f"points-{split}.json.xz")
    train, intents = read_split(a.data, "train"), load_intents(a.data)
    for steps in a.steps:  # as trainer/train.py _train samples and tokenizes (one process)
        cfg = recipe(a.data, steps)
        needed = steps * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
        exs = random.Random(cfg.seed).sample(train, needed) if needed < len(train) else train
        ds, ends = tokenize_split(tok, exs, cfg, example_systems(exs, cfg, intents), limit=needed,
                                  end_share=cfg.end_share)
        dump({"ids": [e["id"] for e in exs], "ends": ends, "rows": ds.to_list()}, prep / f"rows-{steps}.json.xz")
        print(f"{steps} steps: {len(ds)} rows, {ends} end rows", flush=True)


def device(a):
    import datasets
    import torch

    import trainer.train as T
    from userlm.backends.hf_scoring import HFScoring
    from userlm.models import load_causal_lm, load_tokenizer

    prep, out = Path(a.prep), Path(a.out)
    points = {s: load(prep / f"points-{s}.json.xz") for s in SPLITS}
    tok = load_tokenizer(BASE)
    again = decision_points(tok, a.data, "validation", points["validation"]["system"], 3)
    same = again == [p for p in points["validation"]["points"] if p[0] in {q[0] for q in again}]
    print("prompts as tokenized here == as prepared:", same)
    tokenize = T.tokenize_split
    for steps in a.steps:
        t0, info = time.time(), {"steps": steps}
        if steps:
            rows = load(prep / f"rows-{steps}.json.xz")

            def cached(tokenizer, examples, cfg, systems=None, limit=None, end_share=None, rows=rows):
                if [e["id"] for e in examples] != rows["ids"]:  # the validation rows (48)
                    return tokenize(tokenizer, examples, cfg, systems, limit, end_share)
                return datasets.Dataset.from_list(rows["rows"]), rows["ends"]

            T.tokenize_split = cached
            shutil.rmtree(f"/tmp/adapter-{steps}", ignore_errors=True)  # ours, from an earlier call
            manifest = T.train(recipe(a.data, steps, f"/tmp/adapter-{steps}"))
            info.update({k: manifest[k] for k in ("train_examples", "train_rows_with_end", "final_train_loss",
                                                  "final_eval_loss", "train_runtime_s", "global_step")})
        info["train_s"] = round(time.time() - t0, 1)
        scorer, t1 = HFScoring(), time.time()
        scorer.model, _ = load_causal_lm(f"/tmp/adapter-{steps}" if steps else BASE, dtype="float32")
        scorer.tokenizer, scorer.device = tok, scorer.model.device
        for s in SPLITS:
            info[s] = [lp for lp, _ in scorer.masked_loglikelihood([(p[3], p[4]) for p in points[s]["points"]])]
        info["score_s"] = round(time.time() - t1, 1)
        (out / f"pend-{steps}.json").write_text(json.dumps(info))
        print({k: v for k, v in info.items() if k not in SPLITS}, flush=True)
        del scorer
        torch.cuda.empty_cache()


def features(data: str, split: str) -> dict:
    """(conversation id, point index) -> (person ended, [user turns so far, log words of the last AI and user turns,
    thanks in the last user turn, the AI turn ends with a question, code in it])."""
    from math import log1p

    from simulator.replay_plan import plan_points, replay_plan

    out = {}
    for ex in replay_plan(data, split, None, False)[0]:
        for p in (p for p in plan_points(ex) if p["decision"] and p["person_ended"] is not None):
            user, ai = [m["content"] for m in ex["messages"][:p["index"]] if m["role"] == "user"], \
                ex["messages"][p["index"] - 1]["content"]
            out[ex["id"], p["index"]] = (int(p["person_ended"]), [
                len(user), log1p(len(ai.split())), log1p(len(user[-1].split())),
                bool(re.search(r"thank|thx|great|perfect", user[-1], re.I)), bool(re.search(r"\?\s*$", ai)), "```" in ai])
    return out


def best_threshold(p, y) -> float:
    """The p_end at or above which ending maximises F1 (cut only between distinct values)."""
    import numpy as np

    order = np.argsort(-p)
    ps, f1 = p[order], 2 * np.cumsum(y[order]) / (np.arange(1, len(p) + 1) + y.sum())
    return float(ps[np.argmax(np.where(np.r_[ps[1:] != ps[:-1], True], f1, -1))])


def metrics(p, y, t) -> list:
    """AUROC, F1 ending where p >= t, always-end F1, sampled-end F1, F1 - always-end F1."""
    from sklearn.metrics import roc_auc_score

    f1, always = 2 * ((p >= t) & (y == 1)).sum() / ((p >= t).sum() + y.sum()), 2 * y.sum() / (len(y) + y.sum())
    return [roc_auc_score(y, p), f1, always, 2 * p[y == 1].sum() / (p.sum() + y.sum()), f1 - always]


def with_ci(p, y, conv, t, reps: int = 1000) -> str:
    """Each metric as 'value [low, high]': 95% percentile bootstrap over conversations (points kept together)."""
    import numpy as np

    groups, rng = [np.flatnonzero(conv == c) for c in np.unique(conv)], np.random.default_rng(0)
    draws = [metrics(p[i], y[i], t) for i in (np.concatenate([groups[g] for g in rng.integers(0, len(groups),
                                                                                             len(groups))])
                                              for _ in range(reps))]
    lo, hi = np.percentile(np.array(draws), [2.5, 97.5], axis=0)
    return " | ".join(f"{v:.3f} [{a:.3f}, {b:.3f}]" for v, a, b in zip(metrics(p, y, t), lo, hi)) + f" | {t:.4f} |"


def table(a):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    pts = {s: load(Path(a.prep) / f"points-{s}.json.xz")["points"] for s in SPLITS}
    y = {s: np.array([p[2] for p in pts[s]]) for s in SPLITS}
    conv = np.array([p[0] for p in pts["test"]])
    print(f"test: {len(conv)} decisions, {y['test'].sum()} real ends, {len(set(conv))} conversations; validation: "
          f"{len(y['validation'])} decisions, {y['validation'].sum()} ends\n\n| user | AUROC | F1 at val threshold | "
          "always-end F1 | sampled-end F1 | F1 - always-end | threshold |\n|---|---|---|---|---|---|---|")
    runs = [json.loads(f.read_text()) for f in Path(a.out).glob("pend-*.json")]
    for info in sorted(runs, key=lambda r: r["steps"]):
        p = {s: np.exp(np.array(info[s])) for s in SPLITS}
        print(f"| {info['steps']} steps | " + with_ci(p["test"], y["test"], conv, best_threshold(p["validation"],
                                                                                                  y["validation"])))
    train = list(features(a.data, "train").values())
    model = LogisticRegression(max_iter=1000, class_weight="balanced").fit([f for _, f in train], [e for e, _ in train])
    q = {s: model.predict_proba([f[p[0], p[1]][1] for p in pts[s]])[:, 1]
         for s, f in ((s, features(a.data, s)) for s in SPLITS)}
    print(f"| 6 features, logistic ({len(train)} train decisions) | "
          + with_ci(q["test"], y["test"], conv, best_threshold(q["validation"], y["validation"])))
    index = {(p[0], p[1]): i for i, p in enumerate(pts["test"])}
    for name, path in (r.split("=", 1) for r in a.ref):  # another scoring (endp2.py: lp, y, where) on its points
        ref = json.loads(Path(path).read_text())
        keep = [index[tuple(w)] for w in ref["where"]]
        print(f"\nAUROC on {name}'s {len(keep)} test decisions: {name} {metrics(np.exp(ref['lp']), np.array(ref['y']), 1)[0]:.3f}, "
              + ", ".join(f"{r['steps']} steps {metrics(np.exp(np.array(r['test'])[keep]), y['test'][keep], 1)[0]:.3f}"
                          for r in sorted(runs, key=lambda r: r["steps"])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=("prepare", "device", "table"))
    ap.add_argument("--data", required=True, help="prepared data dir (userlm data prepare)")
    ap.add_argument("--prep", required=True, help="prepare's output folder")
    ap.add_argument("--out", help="where device writes pend-STEPS.json (and table reads them)")
    ap.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",")], default=[50, 400, 2000])
    ap.add_argument("--limit", type=int, help="prepare: only the first N conversations of each split (a test)")
    ap.add_argument("--ref", action="append", default=[], help="table: NAME=endp2.py output to compare AUROC on")
    a = ap.parse_args()
    {"prepare": prepare, "device": device, "table": table}[a.stage](a)


if __name__ == "__main__":
    main()
