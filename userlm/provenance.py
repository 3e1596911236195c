"""What manifests record so a result can be traced: library versions and the git commit."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from userlm import __version__


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


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
