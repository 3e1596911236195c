"""Training-throughput options of `userlm train` (issue 25 item 2): step-sorted batches, Liger kernels,
selective activation checkpointing. Each is off by default; benchmarks/bench_qlora.py measures them."""

from __future__ import annotations

import contextlib

from userlm.io import UserError


class StepSortedSampler:
    """The order `batching: padded` trains in (a seeded permutation: the one transformers' RandomSampler draws
    under accelerate's seedable sampler, seed data_seed + epoch), with each optimizer step's examples (`chunk` =
    batch x accumulation x processes) sorted by length, longest first, before they are cut into micro-batches.
    Every optimizer step holds the same examples as with `padded`, and the loss is summed over the step's tokens
    (TRL divides by the step's token count), so the gradient is the same up to rounding; but each micro-batch
    pads to a length near its own rows'. transformers' BatchRebalanceSampler (5.2x, not in every image) draws
    another order (seed 42) with micro-batches of varying size; this one keeps padded's steps."""

    def __init__(self, lengths: list[int], chunk: int, seed: int):
        self.lengths, self.chunk, self.seed, self.epoch = lengths, chunk, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import torch

        order = torch.randperm(len(self.lengths), generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        for start in range(0, len(order), self.chunk):
            yield from sorted(order[start:start + self.chunk], key=lambda i: -self.lengths[i])
        self.epoch += 1  # as accelerate's SeedableRandomSampler, for a trainer that does not call set_epoch


def trainer_class(cfg):
    """SFTTrainer, or for batching=step_sorted a subclass that samples with StepSortedSampler."""
    from trl import SFTTrainer

    if cfg.batching != "step_sorted":
        return SFTTrainer

    class StepSortedTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            a = self.args
            seed = a.data_seed if a.data_seed is not None else a.seed
            chunk = a.per_device_train_batch_size * a.gradient_accumulation_steps * max(1, a.world_size)
            return StepSortedSampler([len(ids) for ids in dataset["input_ids"]], chunk, seed)

    return StepSortedTrainer


def speed_args(cfg) -> dict:
    """SFTConfig fields of the throughput options (merged into trainer.train._sft_args)."""
    args = {}
    if cfg.use_liger_kernel:
        args["use_liger_kernel"] = True
    if cfg.gradient_checkpointing and cfg.selective_checkpointing:
        # TRL's key: attention outputs are saved, everything else in a layer recomputed (non-reentrant SAC)
        args["gradient_checkpointing_kwargs"] = {"use_reentrant": False, "selective": True}
    return args


def check_speed_options(cfg) -> None:
    """One-line errors before the model loads."""
    import importlib.util

    if cfg.use_liger_kernel and importlib.util.find_spec("liger_kernel") is None:
        raise UserError("use_liger_kernel needs the liger-kernel package (pip install liger-kernel; CUDA only)")
    if cfg.selective_checkpointing and not cfg.gradient_checkpointing:
        raise UserError("selective_checkpointing needs gradient_checkpointing: true")


@contextlib.contextmanager
def labelled_positions_only():
    """TRL 1.16's fused LM head (SFTTrainer.compute_loss) projects only the positions that carry a label where
    Triton runs, and every position elsewhere, so that a Neuron device keeps one tile shape and never recompiles.
    On the CPU nothing recompiles, and the prompt's positions were most of a training step's LM-head work: the
    demo's steps (4 windows of <= 192 tokens, SmolLM2-135M, 2 cores) went from 34.2 to 21.5 s over 6 steps with the
    same losses to the last digit (the labelled positions' log-probs are the same numbers either way;
    benchmarks/bench_lm_head.py). TRL makes the choice in `trl.trainer.utils._use_triton`, a private name: this
    answers yes for the CPU while training runs, and where the name is missing training runs as TRL decides."""
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:
        yield
        return
    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        yield
        return
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        trl_utils._use_triton = original
