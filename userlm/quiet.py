"""Known noise of the libraries under us, silenced by message so that a command's log shows its own stages
and progress. Each filter names the one message it drops; anything else a library says still shows.

Imports none of those libraries (the CLI calls this before any handler runs, and `--help` stays instant)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

# transformers 5 renamed gradient checkpointing to activation checkpointing; TRL and peft still read the old
# property (PreTrainedModel.is_gradient_checkpointing) on every model they wrap or train, which warns each
# time. Nothing to act on until they move (trainer/train.py passes the new argument names itself).
DEPRECATION_MESSAGES = (r"`is_gradient_checkpointing` is deprecated and will be removed in v6",)
# bitsandbytes (the dev extra) looks for an optional AVX512-BF16 CPU kernel when imported and warns that it
# is missing; the CPU path never runs 4-bit layers (quantization is NF4 only on CUDA).
BNB_LOGGER = "bitsandbytes.backends.cpu.ops"
BNB_MESSAGE = "Failed to load CPU gemm_4bit_forward from kernels-community"


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


_installed = False


def quiet_library_noise() -> None:
    """Install the filters (once per process). datasets' per-`map` progress bars ("Truncating train
    dataset", "Dropping fully masked examples ...") are turned off unless HF_DATASETS_DISABLE_PROGRESS_BARS
    is set; training keeps its own step bar."""
    global _installed
    if _installed:
        return
    _installed = True
    for message in DEPRECATION_MESSAGES:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)
    logging.getLogger(BNB_LOGGER).addFilter(_DropMessage(BNB_MESSAGE))
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    no_redrawn_bars_in_logs()


def output_is_terminal() -> bool:
    return sys.stderr.isatty()


def no_redrawn_bars_in_logs() -> None:
    """Where stderr is not a terminal (a log file, a pipe, CI), bars that redraw themselves with `\\r` only
    litter the log, so they are turned off: every tqdm bar (TQDM_DISABLE, read by tqdm >= 4.66 for each bar it
    makes: transformers' GGUF conversion, the trainer's step bar), huggingface_hub's and transformers' (read
    when they are imported, which is after this). Training prints a line of losses per logging step instead
    (trainer/train.py: disable_tqdm); rich's bars draw once, at the end, on a non-terminal. A variable the
    user set is kept."""
    if output_is_terminal():
        return
    for name in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(name, "1")


@contextlib.contextmanager
def no_weight_loading_bars(local: bool = True):
    """transformers 5 draws a "Loading weights" bar for every model it loads (eight in a demo run) and one
    for dequantizing a GGUF file; they are turned off only around loads from local files (`local`), so that a
    hub download keeps its progress bar (this switch covers both)."""
    if not local:
        yield
        return
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()
