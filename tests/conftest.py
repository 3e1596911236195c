import json
import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OASST2_SAMPLE = SHARED_DATA / "oasst2_sample.trees.jsonl"
OASST_EN = SHARED_DATA / "oasst_en_100.trees.jsonl"

needs_shared = pytest.mark.skipif(
    not OASST2_SAMPLE.exists(), reason=f"shared OASST data not found at {SHARED_DATA} (checkout without ../shared)"
)


@pytest.fixture(autouse=True, scope="session")
def _offline_cache(tmp_path_factory):
    # Everything runs offline; derived artifacts (dequantized models, classifiers) go to one cache per session
    # unless the caller points USERLM_CACHE at a warm one.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("USERLM_CACHE", str(Path.home() / ".cache" / "userlm"))
    yield


def msg(mid, role, text, replies=(), **extra):
    return {"message_id": mid, "role": role, "text": text, "lang": extra.pop("lang", "en"),
            "review_result": extra.pop("review_result", True), "deleted": extra.pop("deleted", False),
            "synthetic": extra.pop("synthetic", False), "replies": list(replies), **extra}


def write_trees(path: Path, trees: list[dict]) -> Path:
    path.write_text("".join(json.dumps(t) + "\n" for t in trees))
    return path


@pytest.fixture
def branching_tree():
    """One tree, two assistant answers (rank 0 and 1), the better one followed up by the human."""
    return {"message_tree_id": "t1", "prompt": msg("p1", "prompter", "How do I boil an egg?", [
        msg("a1", "assistant", "Boil it for 8 minutes.", [
            msg("p2", "prompter", "And a soft one?", [msg("a3", "assistant", "6 minutes.", rank=0)])], rank=0),
        msg("a2", "assistant", "Use a pan.", rank=1),
    ])}
