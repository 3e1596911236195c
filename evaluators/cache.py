"""On-disk cache of per-text vectors (embeddings, classifier scores), so evaluating many runs, or the same
run again, never recomputes a text it has seen. sqlite3 (stdlib) because it is safe across processes."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Callable

import numpy as np

from userlm.io import writable_cache_dir


class VectorCache:
    def __init__(self, namespace: str, path=None):
        self.namespace = namespace
        path = path or writable_cache_dir() / "vectors.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=60)
        self.db.execute("CREATE TABLE IF NOT EXISTS v (ns TEXT, key TEXT, data BLOB, PRIMARY KEY (ns, key))")

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def get_or_compute(self, texts: list[str], compute: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        keys = [self.key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start: start + 500]
            rows = self.db.execute(f"SELECT key, data FROM v WHERE ns=? AND key IN ({','.join('?' * len(chunk))})",
                                   [self.namespace, *chunk]).fetchall()
            found.update({k: np.frombuffer(d, dtype=np.float32) for k, d in rows})
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing:
            first_text = {}
            for k, t in zip(keys, texts):
                first_text.setdefault(k, t)
            vectors = np.asarray(compute([first_text[k] for k in missing]), dtype=np.float32)
            vectors = vectors.reshape(len(missing), -1)
            self.db.executemany("INSERT OR REPLACE INTO v VALUES (?, ?, ?)",
                                [(self.namespace, k, v.tobytes()) for k, v in zip(missing, vectors)])
            self.db.commit()
            found.update(zip(missing, vectors))
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, 1), dtype=np.float32)


_ENCODERS: dict = {}


def embed(texts: list[str], encoder: str = "embedded:minilm") -> np.ndarray:
    """Normalized sentence-transformers embeddings, cached per encoder."""
    from userlm.models import encoder_location

    location = encoder_location(encoder)

    def compute(batch: list[str]) -> np.ndarray:
        if location not in _ENCODERS:

            from sentence_transformers import SentenceTransformer

            from userlm.quiet import no_weight_loading_bars

            local = Path(location).is_dir()  # an embedded encoder; a hub id keeps its download bar
            with no_weight_loading_bars(local):
                _ENCODERS[location] = SentenceTransformer(location, device="cpu")
        return _ENCODERS[location].encode([t[:2000] for t in batch], batch_size=64, normalize_embeddings=True,
                                          show_progress_bar=len(batch) > 2000)

    return VectorCache(f"embed:{encoder}").get_or_compute(texts, compute)
