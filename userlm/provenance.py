"""What manifests record so a result can be traced and reproduced: one block, `provenance`, in every run.json,
metrics.json and adapter manifest.json (library versions, the project's version and git commit, config and
chat-template hashes, sampling, seeds, model and adapter identities), as lm-eval's results files do."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from userlm import __version__
from userlm.io import sha256_json

# The keys of every `provenance` block (tests check all three kinds of files carry them).
PROVENANCE_FIELDS = ("userlm", "git_commit", "git_dirty", "versions", "config_sha256", "chat_template_sha256",
                     "sampling", "seeds", "models")
_PACKAGE = Path(__file__).resolve().parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=_PACKAGE)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _in_checkout() -> bool:
    """The package is a checkout of this project (not an installed copy that happens to lie in another repo)."""
    top = _git("rev-parse", "--show-toplevel")
    return bool(top) and (Path(top) / "userlm" / "provenance.py").resolve() == Path(__file__).resolve()


def git_commit() -> str | None:
    """The project's commit when run from a checkout, else None."""
    return _git("rev-parse", "HEAD") or None if _in_checkout() else None


def git_dirty() -> bool | None:
    """Whether the checkout has uncommitted changes to tracked files (None outside a checkout)."""
    if not _in_checkout():
        return None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "userlm": __version__}
    for name in ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes",
                 "sentence-transformers", "scikit-learn", "vllm"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def template_sha256(tokenizer) -> str:
    """sha256 of the chat template a tokenizer renders with (the project's fallback where it has none)."""
    from userlm.chat import ensure_chat_template

    ensure_chat_template(tokenizer)
    return sha256_json(tokenizer.chat_template)


def chat_template_sha256(ref: str, backend: str = "hf") -> str | None:
    """The chat template of model `ref` as this project renders it; None for a served model (the server
    applies its own template, which the client cannot see)."""
    if backend == "openai":
        return None
    from userlm.models import load_tokenizer
    from userlm.quiet import no_weight_loading_bars

    with no_weight_loading_bars():
        return template_sha256(load_tokenizer(ref))


def provenance(config: dict, *, models: dict, seeds: dict, sampling: dict | None = None,
               chat_templates: dict | None = None) -> dict:
    """The `provenance` block: `config` is the config the file was made with (hashed), `models` the identities
    of the models, adapters and classifiers it used, `seeds` and `sampling` what its random draws depend on,
    `chat_templates` the sha256 of each model's chat template by role."""
    return {"userlm": __version__, "git_commit": git_commit(), "git_dirty": git_dirty(),
            "versions": library_versions(), "config_sha256": sha256_json(config),
            "chat_template_sha256": chat_templates or {}, "sampling": sampling, "seeds": seeds, "models": models}
