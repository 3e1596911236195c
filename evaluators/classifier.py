"""AI-voice classifier: P(AI) for a turn. Trained by the project on prepared data (`userlm data prepare`): human
turns against AI turns (ShareGPT gpt, OASST assistant, looped copies of real turns; a model's own turns only on
request, and then never used on that model's runs: classifier_guard), train split only; features picked on
validation; every AUROC reported on test. Degenerate text scores P(AI) = 1 (evaluators/degenerate.py).

Stored without pickle: the TF-IDF vocabularies as JSON, idf weights and the logistic-regression coefficients in
a `.npz` read with `allow_pickle=False`, and a manifest holding every file's sha256. Loading checks the manifest's
kind and the hashes and refuses anything else, so `--classifier DIR` cannot run code."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from evaluators.classifier_config import ClassifierConfig
from evaluators.classifier_data import (
    balanced_weights,
    data_rows,
    degenerate_rows,
    generated_rows,
    length_matched,
)
from evaluators.classifier_eval import auroc, held_out_report, summary_line
from evaluators.classifier_guard import RULE, training_generators
from evaluators.degenerate import DEGENERATE_RULE, degenerate_text
from userlm.config import to_dict
from userlm.io import (
    UserError,
    atomic_directory,
    atomic_write_json,
    cache_dir,
    read_jsonl,
    sha256_file,
    sha256_json,
    sha256_text,
)

KIND, FORMAT = "userlm-ai-voice-classifier", 3
FILES = ("weights.npz", "vocabulary.json", "train_texts.json")
WORD = {"ngram_range": (1, 2), "min_df": 2, "max_features": 50000, "sublinear_tf": True}
CHAR = {"analyzer": "char_wb", "ngram_range": (2, 4), "min_df": 2, "max_features": 50000, "sublinear_tf": True,
        "lowercase": False}


def default_data_dir() -> Path:
    """The embedded ShareGPT conversations prepared with the default recipe (the same split as
    `userlm data prepare --source sharegpt`)."""
    from userlm.data.prepare import PrepareConfig, prepare

    out = cache_dir() / "data" / "sharegpt-default"
    if not (out / "manifest.json").exists():
        prepare(PrepareConfig(sources=["sharegpt"], out=str(out)))
    return out


def default_classifier_dir(data_dirs: list | None = None) -> Path:
    """The cache's classifier for these prepared data directories (keyed by their content hashes)."""
    if not data_dirs:
        return cache_dir() / "classifiers" / "default"
    from userlm.data.prepare import load_manifest

    return cache_dir() / "classifiers" / f"data-{sha256_json([load_manifest(d)['content_hash'] for d in data_dirs])[:16]}"


def text_key(text: str) -> str:
    return sha256_text(text)[:16]


class Featurizer:
    def __init__(self, kind: str, encoder: str, word=None, char=None):
        self.kind, self.encoder, self.word, self.char = kind, encoder, word, char

    def fit(self, texts: list[str]) -> Featurizer:
        if self.kind in ("tfidf", "both"):
            from sklearn.feature_extraction.text import TfidfVectorizer

            clipped = [t[:3000] for t in texts]
            self.word, self.char = TfidfVectorizer(**WORD).fit(clipped), TfidfVectorizer(**CHAR).fit(clipped)
        return self

    def transform(self, texts: list[str]):
        from scipy.sparse import csr_matrix, hstack

        from evaluators.cache import embed

        parts = []
        if self.kind in ("tfidf", "both"):
            clipped = [t[:3000] for t in texts]
            parts += [self.word.transform(clipped), self.char.transform(clipped)]
        if self.kind in ("embeddings", "both"):
            parts.append(csr_matrix(embed(texts, self.encoder)))
        return hstack(parts).tocsr()


class Model:
    """Featurizer + logistic-regression weights: P(AI) = sigmoid(x . coef + intercept)."""

    def __init__(self, featurizer: Featurizer, coef: np.ndarray, intercept: float):
        self.featurizer, self.coef, self.intercept = featurizer, coef, intercept

    def p_ai(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        z = self.featurizer.transform(texts) @ self.coef + self.intercept
        return 1 / (1 + np.exp(-np.asarray(z, dtype=float).ravel()))


def fit_model(kind: str, encoder: str, rows: list[dict], length_control: bool, seed: int) -> Model:
    from sklearn.linear_model import LogisticRegression

    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    featurizer = Featurizer(kind, encoder).fit(texts)
    weights = balanced_weights(rows) if length_control else None
    lr = LogisticRegression(C=4.0, max_iter=2000, random_state=seed).fit(featurizer.transform(texts), labels,
                                                                          sample_weight=weights)
    return Model(featurizer, lr.coef_[0].astype(np.float64), float(lr.intercept_[0]))


def training_rows(rows: list[dict], length_control: bool, seed: int) -> list[dict]:
    """The train split's turns, plus (with length control) human and AI turns cut alike to paired lengths, so that
a turn cut mid-sentence is no sign of either class."""
    if not length_control:
        return rows
    humans, ais = length_matched([r for r in rows if r["label"] == 1], [r for r in rows if r["label"] == 0], seed)
    cut = [r for r in humans + ais if r["cut"]]
    seen = {r["text"] for r in rows}
    return rows + [r for r in cut if r["text"] not in seen and not seen.add(r["text"])]


def train_classifier(cfg: ClassifierConfig, console=None) -> dict:
    say = console.print if console else print
    started = time.time()
    data_dirs = [str(d) for d in cfg.data] or [str(default_data_dir())]
    splits, openings = data_rows(data_dirs, cfg.max_per_class_per_source, cfg.seed)
    for made in (generated_rows(cfg, openings, console), degenerate_rows(splits, cfg.degenerate_turns, cfg.seed)):
        for split, extra in made.items():
            splits[split] += extra
    for split, rows in splits.items():
        if len({r["label"] for r in rows}) < 2:
            raise UserError(f"classifier data needs human and AI turns in the {split} split of {', '.join(data_dirs)}")
    train = training_rows(splits["train"], cfg.length_control, cfg.seed)
    val, test = splits["validation"], splits["test"]
    val_humans, val_cut = length_matched([r for r in val if r["label"]], [r for r in val if not r["label"]], cfg.seed)
    kinds = ["embeddings", "tfidf", "both"] if cfg.features == "auto" else [cfg.features]
    validation, models = {}, {}
    for kind in kinds:
        models[kind] = model = fit_model(kind, cfg.encoder, train, cfg.length_control, cfg.seed)
        whole = auroc([r["label"] for r in val], model.p_ai([r["text"] for r in val]))
        matched = auroc([0] * len(val_humans) + [1] * len(val_cut),
                        model.p_ai([r["text"] for r in val_humans + val_cut]))
        validation[kind] = {"auroc": whole, "length_matched": matched}
        say(f"classifier features={kind}: validation AUROC {whole:.3f}, length-matched {matched:.3f}")
    # Picked on the mean of whole and length-matched validation AUROC: a length shortcut does not win.
    best = max(validation, key=lambda k: validation[k]["auroc"] + validation[k]["length_matched"])
    model = models[best]
    report = held_out_report([r for r in test if r["source"] != "degenerate"], model.p_ai, cfg.seed)
    looped = [r["text"] for r in test if r["source"] == "degenerate"]
    report["degenerate"] = {"n": len(looped), "share_p_ai_over_half_model_alone": round(float(np.mean(
        model.p_ai(looped) > 0.5)), 4) if looped else None, "rule_catches": sum(map(degenerate_text, looped))}
    if cfg.held_out_generators:
        report["held_out_generator"] = held_out_generators(cfg, best, train, test, model)
    out = Path(cfg.out) if cfg.out else default_classifier_dir(cfg.data)
    counts = {s: {src: sum(r["source"] == src for r in rows) for src in sorted({r["source"] for r in rows})}
              for s, rows in (("train", train), ("validation", val), ("test", test))}
    manifest = {
        "kind": KIND, "format": FORMAT, "config": to_dict(cfg), "features": best, "encoder": cfg.encoder,
        "generators": training_generators(cfg), "held_out_rule": RULE, "degenerate_rule": DEGENERATE_RULE,
        "data": [{"dir": d, "content_hash": json.loads(Path(d, "manifest.json").read_text())["content_hash"]}
                 for d in data_dirs],
        "validation": validation, "test": report, "test_auroc": report["overall"]["auroc"],
        "test_auroc_length_matched": report["length_matched"]["auroc"],
        "counts": counts, "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - started, 1),
    }
    save(model, out, manifest, sorted({text_key(r["text"]) for r in train}))
    say(f"classifier: {best} features, held-out {summary_line(report)} -> {out}")
    return manifest


def held_out_generators(cfg: ClassifierConfig, kind: str, train: list[dict], test: list[dict], model: Model) -> dict:
    """For each generated AI source: AUROC on its held-out turns (against all held-out humans) of a model trained
    without it, beside the full model's. Tells whether the classifier is a detector of one generator."""
    out = {}
    humans = [r["text"] for r in test if r["label"] == 0]
    for source in sorted({r["source"] for r in train if ":" in r["source"] and r["source"].split(":")[0]
                          in ("stock", "prompted-user")}):
        theirs = [r["text"] for r in test if r["source"] == source]
        if not theirs:
            continue
        without = fit_model(kind, cfg.encoder, [r for r in train if r["source"] != source], cfg.length_control, cfg.seed)
        labels = [0] * len(humans) + [1] * len(theirs)
        out[source] = {"auroc_trained_without_it": auroc(labels, without.p_ai(humans + theirs)),
                       "auroc_full_model": auroc(labels, model.p_ai(humans + theirs)), "n_ai": len(theirs)}
    return out


def save(model: Model, out: Path, manifest: dict, train_keys: list[str]) -> None:
    f = model.featurizer
    arrays = {"coef": model.coef, "intercept": np.asarray([model.intercept])}
    vocab = {}
    for name, vec in (("word", f.word), ("char", f.char)):
        if vec is not None:
            arrays[f"{name}_idf"] = vec.idf_
            vocab[name] = {term: int(i) for term, i in vec.vocabulary_.items()}
    with atomic_directory(out) as tmp:
        np.savez(tmp / "weights.npz", **arrays)
        (tmp / "vocabulary.json").write_text(json.dumps(vocab, ensure_ascii=False))
        (tmp / "train_texts.json").write_text(json.dumps({"sha256_16": train_keys}))
        manifest["files"] = {name: sha256_file(tmp / name) for name in FILES}
        atomic_write_json(tmp / "manifest.json", manifest)


class AIVoiceClassifier:
    def __init__(self, directory: str | Path):
        from sklearn.feature_extraction.text import TfidfVectorizer

        directory = Path(directory)
        path = directory / "manifest.json"
        if not path.exists():
            raise UserError(f"{directory}: no classifier here; run `userlm evaluate train-classifier`")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise UserError(f"{path}: not valid JSON") from None
        if manifest.get("kind") != KIND or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
            raise UserError(f"{directory}: not a classifier of this userlm version (format {FORMAT}); "
                            "retrain it with `userlm evaluate train-classifier`")
        blobs = {}
        for name in FILES:
            data = (directory / name).read_bytes() if (directory / name).exists() else None
            if data is None or sha256_text(data) != manifest["files"].get(name):
                raise UserError(f"{directory / name}: missing or its sha256 differs from the manifest's; refusing it")
            blobs[name] = data
        self.manifest = manifest
        import io

        arrays = np.load(io.BytesIO(blobs["weights.npz"]), allow_pickle=False)
        vocab = json.loads(blobs["vocabulary.json"])
        vecs = {}
        for name, params in (("word", WORD), ("char", CHAR)):
            if name in vocab:
                vecs[name] = TfidfVectorizer(**{**params, "max_features": None}, vocabulary=vocab[name])
                vecs[name].idf_ = arrays[f"{name}_idf"]
        featurizer = Featurizer(manifest["features"], manifest["encoder"], vecs.get("word"), vecs.get("char"))
        self.model = Model(featurizer, arrays["coef"], float(arrays["intercept"][0]))
        self.train_keys = set(json.loads(blobs["train_texts.json"])["sha256_16"])
        self.version = sha256_json(manifest["files"])[:16]

    def trained_on(self, texts: list[str]) -> int:
        """How many of these texts were in the classifier's training rows (0 for a sound reference)."""
        return sum(text_key(t.strip()) in self.train_keys for t in set(texts))

    def p_ai(self, texts: list[str]) -> np.ndarray:
        from evaluators.cache import VectorCache

        if not texts:
            return np.zeros(0)
        compute = lambda batch: self.model.p_ai(batch)[:, None]
        p = VectorCache(f"p_ai:{self.version}").get_or_compute(texts, compute)[:, 0].astype(float)
        return np.where([degenerate_text(t) for t in texts], 1.0, p)  # the rule of evaluators/degenerate.py


def _current(directory: Path) -> bool:
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return manifest.get("kind") == KIND and manifest.get("format") == FORMAT


def load_classifier(directory: str | None = None, console=None, data_dir: str | None = None) -> AIVoiceClassifier:
    """The given classifier; else the one trained on `data_dir`'s train split (the reference's data, so that no
    reference turn was trained on), or the default one on the embedded ShareGPT data; trained on first use."""
    if directory:
        return AIVoiceClassifier(directory)
    target = default_classifier_dir([str(data_dir)] if data_dir else None)
    if not _current(target):  # absent, or cached by an older version (e.g. a pickled classifier.joblib)
        (console.print if console else print)(
            f"no AI-voice classifier for {data_dir or 'the embedded ShareGPT data'} yet: training it ({target})")
        train_classifier(ClassifierConfig(out=str(target), data=[str(data_dir)] if data_dir else []), console)
    return AIVoiceClassifier(target)


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
