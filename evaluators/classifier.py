"""AI-voice classifier: P(AI) for a turn. Trained by the project on real human turns (OASST prompter,
ShareGPT human) against AI turns (OASST assistant, ShareGPT gpt, and the stock assistant's own outputs)."""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from userlm.config import to_dict
from userlm.data.prepare import PrepareConfig, keep_message
from userlm.data.sources import ReadReport, read_source
from userlm.io import UserError, atomic_directory, atomic_write_json, cache_dir, read_jsonl
from userlm.models import DEFAULT_ASSISTANT, DEFAULT_ENCODER


@dataclass
class ClassifierConfig:
    out: str = ""  # default: the cache's default classifier
    sources: list = field(default_factory=lambda: ["sharegpt"])  # add OASST tree files for prompter/assistant turns
    max_per_class_per_source: int = 1500
    stock_model: str = DEFAULT_ASSISTANT
    stock_turns: int = 64  # replies the stock assistant writes to real first human turns (machine-written side)
    encoder: str = DEFAULT_ENCODER
    features: str = "auto"  # auto (pick by validation AUROC) | embeddings | tfidf | both
    test_fraction: float = 0.2
    seed: int = 0


def default_classifier_dir() -> Path:
    return cache_dir() / "classifiers" / "default"


def _group_split(group: str, seed: int, fraction: float) -> bool:
    return int.from_bytes(hashlib.sha256(f"clf{seed}:{group}".encode()).digest()[:8], "big") / 2**64 < fraction


def collect_turns(cfg: ClassifierConfig) -> list[dict]:
    """[{text, label (1 = AI), source, group}], balanced per source by sampling."""
    rng = random.Random(cfg.seed)
    keep = PrepareConfig()
    rows = []
    for spec in cfg.sources:
        by_label = {0: [], 1: []}
        for tree in read_source(spec, ReadReport(), skip_bad=True):
            stack = [tree.root]
            while stack:
                msg = stack.pop()
                if not keep_message(msg, keep):
                    continue
                stack.extend(msg.children)
                by_label[int(msg.role == "assistant")].append(
                    {"text": msg.text.strip(), "source": f"{spec}:{msg.role}", "group": tree.group_id})
        for label, items in by_label.items():
            for item in rng.sample(items, min(len(items), cfg.max_per_class_per_source)):
                rows.append({**item, "label": label})
    return rows


def stock_turns(cfg: ClassifierConfig, rows: list[dict]) -> list[dict]:
    """The stock assistant's replies to real human turns: the voice a prompted user simulator slips into."""
    if cfg.stock_turns <= 0:
        return []
    from simulator.backends import GenerationRequest, get_backend
    from simulator.scenarios import Sampling

    rng = random.Random(cfg.seed + 1)
    prompts = [r for r in rows if r["label"] == 0 and 3 <= len(r["text"].split()) <= 60]
    prompts = rng.sample(prompts, min(cfg.stock_turns, len(prompts)))
    backend = get_backend("hf", cfg.stock_model, quantization="none", max_batch=32)
    sampling = Sampling(temperature=0.7, top_p=0.95, max_new_tokens=96)
    outs = backend.generate([GenerationRequest([{"role": "user", "content": p["text"]}], sampling, seed=i)
                             for i, p in enumerate(prompts)])
    return [{"text": o.text.strip(), "label": 1, "source": f"stock:{cfg.stock_model}", "group": p["group"]}
            for p, o in zip(prompts, outs) if o.text.strip()]


class Featurizer:
    def __init__(self, kind: str, encoder: str):
        self.kind, self.encoder, self.tfidf = kind, encoder, None

    def fit(self, texts: list[str]) -> "Featurizer":
        if self.kind in ("tfidf", "both"):
            from sklearn.feature_extraction.text import TfidfVectorizer
            from sklearn.pipeline import FeatureUnion

            self.tfidf = FeatureUnion([
                ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=50000, sublinear_tf=True)),
                ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, max_features=50000,
                                         sublinear_tf=True, lowercase=False)),
            ]).fit([t[:3000] for t in texts])
        return self

    def transform(self, texts: list[str]):
        from scipy.sparse import csr_matrix, hstack

        from evaluators.cache import embed

        parts = []
        if self.kind in ("tfidf", "both"):
            parts.append(self.tfidf.transform([t[:3000] for t in texts]))
        if self.kind in ("embeddings", "both"):
            parts.append(csr_matrix(embed(texts, self.encoder)))
        return hstack(parts).tocsr()


def _fit(kind: str, encoder: str, texts, labels, seed: int):
    from sklearn.linear_model import LogisticRegression

    featurizer = Featurizer(kind, encoder).fit(texts)
    model = LogisticRegression(C=4.0, max_iter=2000, random_state=seed).fit(featurizer.transform(texts), labels)
    return featurizer, model


def train_classifier(cfg: ClassifierConfig, console=None) -> dict:
    from sklearn.metrics import roc_auc_score

    say = console.print if console else print
    started = time.time()
    rows = collect_turns(cfg)
    rows += stock_turns(cfg, rows)
    test = [r for r in rows if _group_split(r["group"], cfg.seed, cfg.test_fraction)]
    train = [r for r in rows if not _group_split(r["group"], cfg.seed, cfg.test_fraction)]
    if len({r["label"] for r in train}) < 2 or len({r["label"] for r in test}) < 2:
        raise UserError("classifier data needs human and AI turns in both train and test splits")
    fit_part = [r for r in train if not _group_split(r["group"], cfg.seed + 7, 0.2)]
    val_part = [r for r in train if _group_split(r["group"], cfg.seed + 7, 0.2)]
    kinds = ["embeddings", "tfidf", "both"] if cfg.features == "auto" else [cfg.features]
    validation = {}
    for kind in kinds:
        featurizer, model = _fit(kind, cfg.encoder, [r["text"] for r in fit_part], [r["label"] for r in fit_part],
                                 cfg.seed)
        scores = model.predict_proba(featurizer.transform([r["text"] for r in val_part]))[:, 1]
        validation[kind] = float(roc_auc_score([r["label"] for r in val_part], scores))
        say(f"classifier features={kind}: validation AUROC {validation[kind]:.3f}")
    best = max(validation, key=validation.get)
    featurizer, model = _fit(best, cfg.encoder, [r["text"] for r in train], [r["label"] for r in train], cfg.seed)
    test_scores = model.predict_proba(featurizer.transform([r["text"] for r in test]))[:, 1]
    test_labels = [r["label"] for r in test]
    per_source = {}
    humans = [s for s, lab in zip(test_scores, test_labels) if lab == 0]
    for source in sorted({r["source"] for r in test if r["label"] == 1}):
        ai = [s for s, r in zip(test_scores, test) if r["source"] == source]
        per_source[source] = float(roc_auc_score([0] * len(humans) + [1] * len(ai), humans + ai))
    out = Path(cfg.out) if cfg.out else default_classifier_dir()
    manifest = {
        "kind": "userlm-ai-voice-classifier", "config": to_dict(cfg), "features": best,
        "validation_auroc": validation, "test_auroc": float(roc_auc_score(test_labels, test_scores)),
        "test_auroc_by_ai_source_vs_all_humans": per_source,
        "counts": {"train": len(train), "test": len(test),
                   "by_source": {s: sum(r["source"] == s for r in rows) for s in sorted({r["source"] for r in rows})}},
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(time.time() - started, 1),
    }
    import joblib

    with atomic_directory(out) as tmp:
        joblib.dump({"featurizer": featurizer, "model": model}, tmp / "classifier.joblib")
        atomic_write_json(tmp / "manifest.json", manifest)
    say(f"classifier: {best} features, held-out AUROC {manifest['test_auroc']:.3f} -> {out}")
    return manifest


class AIVoiceClassifier:
    def __init__(self, directory: str | Path):
        import joblib

        directory = Path(directory)
        if not (directory / "manifest.json").exists():
            raise UserError(f"{directory}: no classifier here; run `userlm evaluate train-classifier`")
        self.manifest = json.loads((directory / "manifest.json").read_text())
        loaded = joblib.load(directory / "classifier.joblib")
        self.featurizer, self.model = loaded["featurizer"], loaded["model"]
        self.version = hashlib.sha256((directory / "classifier.joblib").read_bytes()).hexdigest()[:16]

    def p_ai(self, texts: list[str]) -> np.ndarray:
        from evaluators.cache import VectorCache

        if not texts:
            return np.zeros(0)
        compute = lambda batch: self.model.predict_proba(self.featurizer.transform(batch))[:, 1:2]
        return VectorCache(f"p_ai:{self.version}").get_or_compute(texts, compute)[:, 0].astype(float)


def load_classifier(directory: str | None = None, console=None) -> AIVoiceClassifier:
    """The given classifier, or the default one (trained on first use from the embedded ShareGPT data)."""
    if directory:
        return AIVoiceClassifier(directory)
    default = default_classifier_dir()
    if not (default / "manifest.json").exists():
        (console.print if console else print)("no default AI-voice classifier yet: training it on ShareGPT turns")
        train_classifier(ClassifierConfig(), console)
    return AIVoiceClassifier(default)


def score_texts_file(path: str, out: str | None = None, classifier: str | None = None) -> Path:
    records = list(read_jsonl(path))
    for number, record in enumerate(records, 1):
        if not isinstance(record.get("text"), str):
            raise UserError(f"{path}:{number}: field 'text' missing or not a string")
    scores = load_classifier(classifier).p_ai([r["text"] for r in records])
    target = Path(out) if out else Path(path).with_suffix(".scored.jsonl")
    from userlm.io import atomic_write_text

    atomic_write_text(target, "".join(json.dumps({**r, "p_ai": round(float(s), 4)}, ensure_ascii=False) + "\n"
                                      for r, s in zip(records, scores)))
    print(f"wrote {target} ({len(records)} texts, mean P(AI) {float(np.mean(scores)):.3f})")
    return target
