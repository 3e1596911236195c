"""Issue 24: does the trained user's end decision improve with more training steps? p_end = the probability the
user model gives to the end marker as its whole turn (END_OF_CONVERSATION, then end-of-turn) at each end decision of
replayed held-out conversations (prompts cut to 352 tokens as the demo's replay does, no intents). prepare (CPU): the
points' token ids, the demo recipe's training rows (the real tokenize_split); device (GPU): train the recipe at each
step count, score p_end (0 steps: the base model); table (CPU): AUROC, F1 at the validation-best threshold, always-end
F1, sampled-end F1 (expected F1 ending with probability p_end), the share of conversations ended within 3 user turns (first end at
the threshold; expected when sampled) against people's, bootstrap CIs over test conversations, a 6-feature logistic
baseline. A run is NAME=STEPS[,KEY=VALUE...] (TrainConfig overrides: end_loss_weight=5, end_share=0.3); --steps S
names its runs by their steps. python benchmarks/bench_end_decisions.py prepare|device|table --data D --prep P
[--out O] [--run NAME=STEPS,...]"""

import argparse
import json
import lzma
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(ROOT := Path(__file__).resolve().parents[1]))

import trainer.train as T  # light: torch and transformers are imported where used
from simulator.replay_fit import fit_points
from simulator.replay_plan import plan_points, replay_plan
from userlm import END_OF_CONVERSATION
from userlm.backends.hf_scoring import HFScoring
from userlm.chat import render_ids, user_model_system
from userlm.config import load_config
from userlm.data.intents import load_intents
from userlm.data.prepare import read_split
from userlm.end_policy import best_threshold
from userlm.end_policy import features as end_features
from userlm.models import load_causal_lm, load_tokenizer
from userlm.threads import machine_line

BASE = "embedded:smollm2-135m-instruct"
BUDGET = 352  # the demo replay's prompt tokens (context 512 less the 160-token turn)
SPLITS = ("validation", "test")


def dump(obj, path):
    Path(path).write_bytes(lzma.compress(json.dumps(obj).encode()))


def load(path):
    return json.loads(lzma.decompress(Path(path).read_bytes()))


def recipe(data: str, steps: int, out: str = "work/adapters/end-bench", sets: tuple = ()):
    """workflows/demo.py's train_config at `steps` steps of 4, no checkpoints; float32 weights (bf16 autocast on CUDA);
    `sets`: KEY=VALUE overrides."""
    return load_config(T.TrainConfig, ROOT / "configs" / "embedded-cpu.yaml", [
        f"data_dir={data}", "eval_steps=100000", "intent=mixed", f"max_steps={steps}", "save_steps=100000",
        "dtype=float32", f"output_dir={out}", *sets])


def parse_run(text: str) -> dict:
    """NAME=STEPS[,KEY=VALUE...] -> {name, steps, sets}."""
    name, rest = text.split("=", 1)
    steps, *sets = rest.split(",")
    return {"name": name, "steps": int(steps), "sets": tuple(sets)}


def runs_of(a) -> list[dict]:
    return [parse_run(r) for r in a.run] or [{"name": f"{s} steps", "steps": s, "sets": ()} for s in a.steps]


def rows_file(prep: Path, run: dict) -> Path:
    """Training rows depend on the steps and the end share only (not on end_loss_weight)."""
    share = recipe("x", max(run["steps"], 1), sets=run["sets"]).end_share
    return prep / f"rows-{run['steps']}{'' if share is None else f'-es{share}'}.json.xz"


def decision_points(tok, data: str, split: str, system: str, limit: int | None = None) -> list:
    """[conversation id, point index, person ended, input ids, labels] of each end decision of the replay plan."""
    scored, out = len(tok(END_OF_CONVERSATION, add_special_tokens=False)["input_ids"]) + 1, []
    for ex in replay_plan(data, split, None, False)[0][:limit]:
        points = plan_points(ex)
        fitted = fit_points(tok, ex["messages"], [p["index"] for p in points], system, BUDGET)
        for p, (msgs, _, ids) in zip(points, fitted):
            if not p["decision"] or p["person_ended"] is None:
                continue
            ids = ids if ids is not None else render_ids(tok, msgs, True)
            full = render_ids(tok, msgs + [{"role": "assistant", "content": END_OF_CONVERSATION}], False)
            assert full[:len(ids)] == ids, "the prompt is not a prefix of prompt + end marker"
            labels = ([-100] * len(ids) + full[len(ids):len(ids) + scored] + [-100] * len(full))[:len(full)]
            out.append([ex["id"], p["index"], int(p["person_ended"]), full, labels])
    return out


def prepare(a):
    (prep := Path(a.prep)).mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(BASE)
    system = user_model_system(recipe(a.data, 1).system_prompt, "")  # a trained user told no intent
    for split in SPLITS:
        dump({"system": system, "points": decision_points(tok, a.data, split, system, a.limit)}, prep / f"points-{split}.json.xz")
    train, intents = read_split(a.data, "train"), load_intents(a.data)
    for run in runs_of(a):  # as trainer/train.py _train samples and tokenizes (one process)
        if not run["steps"] or (path := rows_file(prep, run)).exists():
            continue
        cfg = recipe(a.data, run["steps"], sets=run["sets"])
        needed = run["steps"] * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
        exs = random.Random(cfg.seed).sample(train, needed) if needed < len(train) else train
        ds, ends = T.tokenize_split(tok, exs, cfg, T.example_systems(exs, cfg, intents), limit=needed,
                                    end_share=cfg.end_share)
        dump({"ids": [e["id"] for e in exs], "ends": ends, "rows": ds.to_list()}, path)
        print(f"{path.name}: {len(ds)} rows, {ends} end rows", flush=True)


def device(a):
    import datasets
    import torch

    prep, out, tok = Path(a.prep), Path(a.out), load_tokenizer(BASE)
    points = {s: load(prep / f"points-{s}.json.xz") for s in SPLITS}
    again = decision_points(tok, a.data, "validation", points["validation"]["system"], 3)
    print("prompts as here == as prepared:", again == [p for p in points["validation"]["points"] if p[0] in {q[0] for q in again}])
    tokenize = T.tokenize_split
    for run in runs_of(a):
        steps, name = run["steps"], run["name"]
        adapter = f"/tmp/adapter-{name.replace(' ', '_')}"
        t0, info = time.time(), {"steps": steps, "name": name, "sets": run["sets"]}
        if steps:
            rows = load(rows_file(prep, run))

            def cached(tokenizer, examples, cfg, systems=None, limit=None, end_share=None, rows=rows):
                if [e["id"] for e in examples] != rows["ids"]:  # the validation rows (48)
                    return tokenize(tokenizer, examples, cfg, systems, limit, end_share)
                return datasets.Dataset.from_list(rows["rows"]), rows["ends"]

            T.tokenize_split = cached
            shutil.rmtree(adapter, ignore_errors=True)  # ours, from an earlier call
            manifest = T.train(recipe(a.data, steps, adapter, run["sets"]))
            info.update({k: manifest.get(k) for k in ("train_examples", "train_rows_with_end", "final_train_loss",
                                                      "final_eval_loss", "train_runtime_s", "global_step",
                                                      "end_tokens_weighted")})
        info["train_s"] = round(time.time() - t0, 1)
        scorer, t1 = HFScoring(), time.time()
        scorer.model, _ = load_causal_lm(adapter if steps else BASE, dtype="float32")
        scorer.tokenizer, scorer.device = tok, scorer.model.device
        for s in SPLITS:
            info[s] = [lp for lp, _ in scorer.masked_loglikelihood([(p[3], p[4]) for p in points[s]["points"]])]
        info["score_s"] = round(time.time() - t1, 1)
        (out / f"pend-{name.replace(' ', '_')}.json").write_text(json.dumps(info))
        print({k: v for k, v in info.items() if k not in SPLITS}, flush=True)
        del scorer
        torch.cuda.empty_cache()


def features(data: str, split: str) -> dict:
    """(conversation, point) -> (ended, the end policy's 6 features: userlm/end_policy.py, the one copy)."""
    out = {}
    for ex in replay_plan(data, split, None, False)[0]:
        for p in (p for p in plan_points(ex) if p["decision"] and p["person_ended"] is not None):
            out[ex["id"], p["index"]] = (int(p["person_ended"]), end_features(ex["messages"][:p["index"]]))
    return out


def user_turns(data: str, split: str) -> dict:
    """(conversation, point index) -> the user turns before the point."""
    return {(ex["id"], p["index"]): sum(m["role"] == "user" for m in ex["messages"][:p["index"]])
            for ex in replay_plan(data, split, None, False)[0] for p in plan_points(ex)}


def metrics(p, y, t, within, picks) -> list:
    """AUROC, F1 ending where p >= t, always-end F1, sampled-end F1, F1 - always-end F1, then the shares of the
    picked conversations ended within 3 user turns: first p >= t, ending with probability p (expected), people."""
    i = np.concatenate([within["groups"][g] for g in picks])
    p, y = p[i], y[i]
    f1, always = 2 * ((p >= t) & (y == 1)).sum() / ((p >= t).sum() + y.sum()), 2 * y.sum() / (len(y) + y.sum())
    shares = [within[k][picks].mean() for k in ("threshold", "sampled", "people")]
    return [roc_auc_score(y, p), f1, always, 2 * p[y == 1].sum() / (p.sum() + y.sum()), f1 - always, *shares]


def with_ci(p, y, conv, users, t, reps: int = 1000) -> str:
    """Each metric as 'value [low, high]': 95% percentile bootstrap over conversations (points kept together)."""
    groups, rng = [np.flatnonzero(conv == c) for c in np.unique(conv)], np.random.default_rng(0)
    early = [users[g] <= 3 for g in groups]  # the decisions within the first 3 user turns
    within = {"groups": groups, "people": np.array([(y[g][e] == 1).any() for g, e in zip(groups, early)]),
              "threshold": np.array([(p[g] >= t)[e].any() for g, e in zip(groups, early)]),
              "sampled": np.array([1 - np.prod(1 - p[g][e]) for g, e in zip(groups, early)])}
    every = np.arange(len(groups))
    lo, hi = np.percentile([metrics(p, y, t, within, rng.integers(0, len(groups), len(groups))) for _ in range(reps)],
                           [2.5, 97.5], axis=0)
    return " | ".join(f"{v:.3f} [{a:.3f}, {b:.3f}]" for v, a, b in zip(metrics(p, y, t, within, every), lo, hi)) \
        + f" | {t:.4f} |"


def table(a):
    pts = {s: load(Path(a.prep) / f"points-{s}.json.xz")["points"] for s in SPLITS}
    y, conv = {s: np.array([p[2] for p in pts[s]]) for s in SPLITS}, np.array([p[0] for p in pts["test"]])
    turns = user_turns(a.data, "test")
    users = np.array([turns[p[0], p[1]] for p in pts["test"]])
    print(f"test: {len(conv)} decisions, {y['test'].sum()} real ends, {len(set(conv))} conversations; validation: "
          f"{len(y['validation'])} decisions, {y['validation'].sum()} ends\n\n| user | AUROC | F1 at val threshold | "
          "always-end F1 | sampled-end F1 | F1 - always-end | ended within 3 user turns: at threshold | sampling "
          "p_end | people | threshold |\n|---|---|---|---|---|---|---|---|---|---|")
    runs = sorted((json.loads(f.read_text()) for f in Path(a.out).glob("pend-*.json")),
                  key=lambda r: (r["steps"], r.get("name", "")))
    for r in runs:
        p = {s: np.exp(r[s]) for s in SPLITS}
        t = best_threshold(p["validation"], y["validation"])
        print(f"| {r.get('name', r['steps'])} | " + with_ci(p["test"], y["test"], conv, users, t))
    train = list(features(a.data, "train").values())
    model = LogisticRegression(max_iter=1000, class_weight="balanced").fit([f for _, f in train], [e for e, _ in train])
    q = {s: model.predict_proba([f[p[0], p[1]][1] for p in pts[s]])[:, 1]
         for s, f in ((s, features(a.data, s)) for s in SPLITS)}
    print(f"| 6 features, logistic ({len(train)} train decisions) | "
          + with_ci(q["test"], y["test"], conv, users, best_threshold(q["validation"], y["validation"])))
    for r in runs:
        p = np.exp(r["test"])
        print(f"{r.get('name', r['steps'])}: mean p_end at real ends {p[y['test'] == 1].mean():.4f}, elsewhere "
              f"{p[y['test'] == 0].mean():.4f}; train rows {r.get('train_examples')} ({r.get('train_rows_with_end')} "
              f"end), end tokens weighted {r.get('end_tokens_weighted')}, train loss {r.get('final_train_loss')}, "
              f"eval loss {r.get('final_eval_loss')}, train {r.get('train_s')} s, score {r.get('score_s')} s")
    index = {(p[0], p[1]): i for i, p in enumerate(pts["test"])}
    for name, path in (r.split("=", 1) for r in a.ref):  # another scoring (endp2.py: lp, y, where) on its points
        ref = json.loads(Path(path).read_text())
        keep = [index[tuple(w)] for w in ref["where"]]
        print(f"\nAUROC on {name}'s {len(keep)} test decisions: {name} {roc_auc_score(ref['y'], ref['lp']):.3f}, "
              + ", ".join(f"{r.get('name', r['steps'])} {roc_auc_score(y['test'][keep], np.array(r['test'])[keep]):.3f}"
                          for r in runs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split(". ")[0])
    ap.add_argument("stage", choices=("prepare", "device", "table"))
    ap.add_argument("--data", required=True, help="prepared data dir")
    ap.add_argument("--prep", required=True, help="prepare's output folder")
    ap.add_argument("--out", help="device writes pend-NAME.json here, table reads them")
    ap.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",")], default=[50, 400, 2000])
    ap.add_argument("--run", action="append", default=[], help="NAME=STEPS[,KEY=VALUE...] (instead of --steps)")
    ap.add_argument("--limit", type=int, help="prepare: the first N conversations of each split only (a test)")
    ap.add_argument("--ref", action="append", default=[], help="table: NAME=endp2.py output, AUROC on its points")
    a = ap.parse_args()
    print(machine_line(), flush=True)  # first, as every benchmark (tests/test_benchmark_machine.py)
    {"prepare": prepare, "device": device, "table": table}[a.stage](a)


if __name__ == "__main__":
    main()
