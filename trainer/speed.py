"""Training-throughput options of `userlm train` (issue 25 item 2): step-sorted batches, Liger kernels,
selective activation checkpointing. Each is off by default; benchmarks/bench_qlora.py measures them."""

from __future__ import annotations

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
