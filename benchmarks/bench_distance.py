"""Which distribution distance ranks a degenerate user below a sane one? For each run (self-play with a
reference dir, or replay), and for two users built from a run's own contexts ("ok" / "?" / "ok thanks" only,
and one sentence repeated), prints discriminability with its people control, and MMD^2 of the model's turns vs
people's (equal sizes, pairs within a conversation left out; each with its people control) under five kernels:
MiniLM embedding alone (embedding_mmd), style features alone, embedding x style (product: distribution_mmd),
their sum, and one RBF on the unscaled concatenation. See results/benchmarks/2026-11-30-cpu-distance-degenerate.md.

    python benchmarks/bench_distance.py --reference DATA_DIR RUN [RUN ...] [--degenerate-from RUN]"""

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

USERS = {"ok / ? / ok thanks": lambda k: ["ok", "?", "ok thanks"][k % 3],
         "one sentence": lambda k: "Can you tell me more about that?"}


def records_of(run: str) -> list[dict]:
    return [json.loads(line) for line in (Path(run) / "transcripts.jsonl").read_text().splitlines() if line.strip()]


def degenerate(records: list[dict], write) -> list[dict]:
    """The run's records with every user turn (and replay point's generated turn) replaced by write(k)."""
    out = copy.deepcopy(records)
    for r in out:
        for k, t in enumerate(t for t in r["turns"] if t["role"] == "user"):
            t["text"], t["truncated"] = write(k), False
        for k, p in enumerate(r.get("points") or []):
            if isinstance(p.get("generated"), str):
                p["generated"], p["truncated"] = write(k), False
    return out


def kernels():
    """name -> statistic of units carrying "emb" and "style" (evaluators/distance.py)."""
    import numpy as np

    from evaluators import distance as X

    def on(units, make):
        emb, sty = X._stacked(units, "emb"), X._stacked(units, "style")
        if emb is None:
            return np.nan
        x, y, cx, cy = emb
        s = X.standardised(np.concatenate([sty[0], sty[1]]))
        return make(x, y, s[:len(x)], s[len(x):], cx, cy)

    return {
        "embedding": X.embedding_mmd,
        "style": lambda u: on(u, lambda x, y, sx, sy, cx, cy: X.mmd2_unbiased(sx, sy, cx, cy)),
        "product": X.distribution_mmd,
        "sum": lambda u: on(u, lambda x, y, sx, sy, cx, cy: (X.mmd2_unbiased(x, y, cx, cy)
                                                             + X.mmd2_unbiased(sx, sy, cx, cy)) / 2),
        "concat": lambda u: on(u, lambda x, y, sx, sy, cx, cy: X.mmd2_unbiased(np.hstack([x, sx]),
                                                                               np.hstack([y, sy]), cx, cy)),
    }


def fmt(ci):
    v = ci.get("value")
    return "n/a" if v is None or v != v else f"{v:.3f} [{ci['ci_low']:.3f}, {ci['ci_high']:.3f}]"


def score(name: str, records: list[dict], reference: str) -> None:
    from evaluators import against_people as A
    from evaluators import discriminability as D
    from evaluators.cache import embed
    from evaluators.like_for_like import canonical
    from evaluators.reference import transcript_units
    from evaluators.stats import bootstrap_ci

    started = time.time()
    units = canonical(transcript_units(records))
    people = A.prepare(units, reference, embed)["controls"]["people"]
    cells = [fmt(bootstrap_ci(units, D.auroc)), fmt(bootstrap_ci(people, D.auroc))]
    for stat in kernels().values():
        cells += [fmt(bootstrap_ci(g, stat, set_based=True)) for g in (units, people)]
    print(f"| {name} | " + " | ".join(cells) + f" | {time.time() - started:.0f} s |", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--reference", required=True, help="prepared data dir (people for self-play runs)")
    parser.add_argument("--degenerate-from", help="a run whose contexts the two degenerate users write in")
    args = parser.parse_args()
    head = ["discriminability", "its people control"] + [f"{k}{c}" for k in kernels() for c in ("", " control")]
    print("| run | " + " | ".join(head) + " | time |\n" + "|---" * (len(head) + 2) + "|")
    for run in args.runs:
        score(Path(run).name, records_of(run), args.reference)
    if args.degenerate_from:
        for name, write in USERS.items():
            score(f"{name} (contexts of {Path(args.degenerate_from).name})",
                  degenerate(records_of(args.degenerate_from), write), args.reference)


if __name__ == "__main__":
    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    main()
