"""Issue 24: does the trained user's end decision get better with more training steps? p_end is the probability
the user model gives to the end marker as its whole turn (END_OF_CONVERSATION, then the end-of-turn token) at
every end decision of replayed held-out conversations (prompts cut to 352 tokens as in the demo's replay, no
intents). Three stages, each where it belongs:

    prepare (CPU)  the decision points' token ids (validation and test, every conversation) and the demo recipe's
                   training rows at each step count (the real tokenize_split), so the GPU spends no time tokenizing
    device  (GPU)  train the demo's recipe (configs/embedded-cpu.yaml, intent=mixed, context windows, batch 4) for
                   each step count, and score p_end with each adapter (0 steps: the base model)
    table   (CPU)  AUROC; F1 at the threshold that maximises F1 on validation; always-end F1; sampled-end F1 (the
                   expected F1 when ending with probability p_end, ratio of expectations); F1 - always-end F1;
                   each with a 95% bootstrap CI over test conversations (the threshold held fixed); and a
                   6-feature logistic-regression baseline trained on the train split's decisions

    python benchmarks/bench_end_decisions.py prepare --data DATA --prep DIR --steps 50,400,2000
    python benchmarks/bench_end_decisions.py device --data DATA --prep DIR --out OUT --steps 0,50,400,2000
    python benchmarks/bench_end_decisions.py table --data DATA --prep DIR --out OUT [--ref NAME=p_end.json]
(results/benchmarks/2026-11-30-h200-end-decisions.md)"""

import argparse
import json
import lzma
import random
import re
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
    """The demo's training config (workflows/demo.py train_config) at `steps` optimizer steps of batch 4. No
    checkpoints or evaluations on the way (they change nothing trained); float32 weights as on the CPU (the
    trainer adds bf16 autocast on CUDA)."""
    from trainer.train import TrainConfig
    from userlm.config import load_config

    return load_config(TrainConfig, ROOT / "configs" / "embedded-cpu.yaml", [
        f"data_dir={data}", "eval_steps=100000", "intent=mixed", f"max_steps={steps}", "save_steps=100000",
        "dtype=float32", f"output_dir={out}"])


def decision_points(tok, data: str, split: str, system: str, limit: int | None = None) -> list:
    """[conversation id, point index, person ended, input ids, labels] of each end decision of the replay plan:
    the prompt as replay fits it, then the end marker and end-of-turn token as the scored continuation."""
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
            out.append([ex["id"], p["index"], int(p["person_ended"]), full, labels + [-100] * (len(full) - len(labels))])
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
    ids = {p[0] for p in again}
    print("prompts as tokenized here == as prepared:", again == [p for p in points["validation"]["points"] if p[0] in ids])
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
            manifest = T.train(recipe(a.data, steps, f"/tmp/adapter-{steps}"))
            info.update({k: manifest[k] for k in ("train_examples", "train_rows_with_end", "final_train_loss",
                                                  "final_eval_loss", "train_runtime_s", "global_step")})
        info["train_s"] = round(time.time() - t0, 1)
        model, _ = load_causal_lm(f"/tmp/adapter-{steps}" if steps else BASE, dtype="float32")
        scorer = HFScoring()
        scorer.model, scorer.tokenizer, scorer.device = model, tok, model.device
        t1 = time.time()
        for s in SPLITS:
            info[s] = [lp for lp, _ in scorer.masked_loglikelihood([(p[3], p[4]) for p in points[s]["points"]])]
        info["score_s"] = round(time.time() - t1, 1)
        (out / f"pend-{steps}.json").write_text(json.dumps(info))
        print({k: v for k, v in info.items() if k not in SPLITS}, flush=True)
        del model, scorer
        torch.cuda.empty_cache()


def features(data: str, split: str) -> dict:
    """(conversation id, point index) -> the 6 features: user turns so far, log words of the last AI and user
    turns, thanks in the last user turn, the AI turn ending with a question, code in the AI turn."""
    import numpy as np

    from simulator.replay_plan import plan_points, replay_plan

    out = {}
    for ex in replay_plan(data, split, None, False)[0]:
        msgs = ex["messages"]
        for p in plan_points(ex):
            if p["decision"] and p["person_ended"] is not None:
                i = p["index"]
                user = [m for m in msgs[:i] if m["role"] == "user"]
                ai = msgs[i - 1]["content"]
                out[ex["id"], i] = (int(p["person_ended"]), [
                    len(user), np.log1p(len(ai.split())), np.log1p(len(user[-1]["content"].split())),
                    bool(re.search(r"thank|thx|great|perfect", user[-1]["content"], re.I)),
                    bool(re.search(r"\?\s*$", ai)), "```" in ai])
    return out


def best_threshold(p, y) -> float:
    """The p_end at or above which ending maximises F1 (cuts only between distinct values)."""
    import numpy as np

    order = np.argsort(-p)
    ps, tp = p[order], np.cumsum(y[order])
    f1 = 2 * tp / (np.arange(1, len(p) + 1) + y.sum())
    return float(ps[np.argmax(np.where(np.r_[ps[1:] != ps[:-1], True], f1, -1))])


def metrics(p, y, t) -> list:
    from sklearn.metrics import roc_auc_score

    f1 = 2 * ((p >= t) & (y == 1)).sum() / ((p >= t).sum() + y.sum())
    always = 2 * y.sum() / (len(y) + y.sum())
    return [roc_auc_score(y, p), f1, always, 2 * p[y == 1].sum() / (p.sum() + y.sum()), f1 - always]


def with_ci(p, y, conv, t, reps: int = 1000) -> list:
    """Each metric as 'value [low, high]': 95% percentile bootstrap over conversations (points kept together)."""
    import numpy as np

    groups = [np.flatnonzero(conv == c) for c in np.unique(conv)]
    rng = np.random.default_rng(0)
    draws = [metrics(p[i], y[i], t) for i in (np.concatenate([groups[g] for g in rng.integers(0, len(groups),
                                                                                             len(groups))])
                                              for _ in range(reps))]
    lo, hi = np.percentile(np.array(draws), [2.5, 97.5], axis=0)
    return [f"{v:.3f} [{a:.3f}, {b:.3f}]" for v, a, b in zip(metrics(p, y, t), lo, hi)]


def table(a):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    pts = {s: load(Path(a.prep) / f"points-{s}.json.xz")["points"] for s in SPLITS}
    y = {s: np.array([p[2] for p in pts[s]]) for s in SPLITS}
    conv = np.array([p[0] for p in pts["test"]])
    n_conv = len(set(conv))
    print(f"test: {len(conv)} decisions, {y['test'].sum()} real ends, {n_conv} conversations; validation: "
          f"{len(y['validation'])} decisions, {y['validation'].sum()} ends\n")
    print("| user | AUROC | F1 at val threshold | always-end F1 | sampled-end F1 | F1 - always-end | threshold |")
    print("|---|---|---|---|---|---|---|")
    runs = sorted(Path(a.out).glob("pend-*.json"), key=lambda f: int(f.stem.split("-")[1]))
    for f in runs:
        info = json.loads(f.read_text())
        p = {s: np.exp(np.array(info[s])) for s in SPLITS}
        t = best_threshold(p["validation"], y["validation"])
        print(f"| {info['steps']} steps | " + " | ".join(with_ci(p["test"], y["test"], conv, t)) + f" | {t:.4f} |")
    feats = {s: features(a.data, s) for s in ("train", *SPLITS)}
    xy = {s: (np.array([v[1] for v in feats[s].values()], float), np.array([v[0] for v in feats[s].values()]))
          for s in ("train",)}
    model = LogisticRegression(max_iter=1000, class_weight="balanced").fit(*xy["train"])
    q = {s: model.predict_proba(np.array([feats[s][p[0], p[1]][1] for p in pts[s]], float))[:, 1] for s in SPLITS}
    t = best_threshold(q["validation"], y["validation"])
    print(f"| 6 features, logistic ({len(xy['train'][1])} train decisions) | "
          + " | ".join(with_ci(q["test"], y["test"], conv, t)) + f" | {t:.4f} |")
    for name, path in (r.split("=", 1) for r in a.ref):  # another scoring (endp2.py's lp, y, where) on its points
        ref = json.loads(Path(path).read_text())
        index = {(p[0], p[1]): i for i, p in enumerate(pts["test"])}
        keep = [index[tuple(w)] for w in ref["where"]]
        aurocs = [f"{json.loads(f.read_text())['steps']} steps "
                  f"{metrics(np.exp(np.array(json.loads(f.read_text())['test'])[keep]), y['test'][keep], 1)[0]:.3f}"
                  for f in runs]
        print(f"\nOn {name}'s {len(keep)} test decisions: its AUROC {metrics(np.exp(np.array(ref['lp'])), np.array(ref['y']), 1)[0]:.3f}; "
              + ", ".join(aurocs))


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
