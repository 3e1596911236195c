"""Stages whose output is reused when it already finished: the demo's stages and compare's simulations."""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def cached_stage(out: Path, run: Callable[[], object], console, finished: str | Callable[[Path], bool] = "manifest.json",
                 what: str = "") -> Path:
    """Run `run()` unless `out` already holds its finished output: `finished` names the file the stage writes
    last, or tests the directory. `out` is named by (or checked against) everything its output depends on, so
    a changed input gets a fresh stage; an interrupted stage resumes inside `run` (training checkpoints,
    appended transcripts)."""
    done = finished(out) if callable(finished) else (out / finished).exists()
    if done:
        console.print(f"reusing {what + ': ' if what else ''}{out}")
    else:
        run()
    return out
