"""Which process of a data-parallel launch this is (`accelerate launch`, `torchrun`: they set RANK, WORLD_SIZE
and LOCAL_RANK), and a barrier through accelerate. A plain `python` run is process 0 of 1."""

from __future__ import annotations

import os


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def local_rank() -> int:
    """The GPU this process owns (one model replica per GPU)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def wait_for_everyone() -> None:
    if world_size() > 1:
        import torch
        from accelerate import PartialState

        # cpu=True is what makes accelerate pick gloo when there is no GPU (else it stays non-distributed)
        PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()
