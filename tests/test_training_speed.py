"""Fast tier: the throughput options of trainer/speed.py. step_sorted keeps padded's optimizer steps (same
examples, same loss) with less padding; the other options are one-line errors where they cannot run."""

import importlib.util

import pytest

from tests.test_tiny_training import cfg_for, data_dir  # noqa: F401  (data_dir: the module's fixture)
from trainer.speed import StepSortedSampler
from trainer.train import _sft_args, check_config, train
from userlm.io import UserError


def test_step_sorted_keeps_the_seeded_order_per_step_and_sorts_inside_it():
    import torch
    from accelerate.data_loader import SeedableRandomSampler

    lengths = [(i * 37) % 101 + 1 for i in range(50)]
    seeded = SeedableRandomSampler(range(50), data_seed=7)  # what padded batching trains in, under accelerate
    seeded.set_epoch(1)
    padded = list(seeded)
    sampler = StepSortedSampler(lengths, chunk=8, seed=7)
    sampler.set_epoch(1)
    ours = list(sampler)
    for start in range(0, 50, 8):
        step = ours[start:start + 8]
        assert sorted(step) == sorted(padded[start:start + 8])  # the same examples in each optimizer step
        assert [lengths[i] for i in step] == sorted((lengths[i] for i in step), reverse=True)
    # the padded tokens of micro-batches of 2 fall (all the point of it)
    cost = lambda order: sum(2 * max(lengths[i] for i in order[s:s + 2]) for s in range(0, 48, 2))  # noqa: E731
    assert cost(ours) < 0.9 * cost(padded)
    assert torch.equal(torch.tensor(sorted(ours)), torch.arange(50))


def test_step_sorted_trains_the_same_steps_as_padded(tiny_model, data_dir, tmp_path):  # noqa: F811
    # lora_dropout 0: dropout masks are drawn per micro-batch shape, so with dropout the two differ by them
    args = ("max_steps=3", "max_train_examples=24", "gradient_accumulation_steps=3", "max_eval_examples=1", "lora_dropout=0")
    padded = train(cfg_for(tiny_model, data_dir, tmp_path / "padded", "batching=padded", *args))
    ordered = train(cfg_for(tiny_model, data_dir, tmp_path / "sorted", "batching=step_sorted", *args))
    assert ordered["config"]["batching"] == "step_sorted"
    assert ordered["train_tokens"] == padded["train_tokens"]
    assert ordered["final_train_loss"] == pytest.approx(padded["final_train_loss"], rel=1e-5)
    assert ordered["final_eval_loss"] == pytest.approx(padded["final_eval_loss"], rel=1e-5)


def test_speed_options_reach_the_trainer_or_fail_in_one_line(tiny_model, data_dir, tmp_path):  # noqa: F811
    cfg = cfg_for(tiny_model, data_dir, tmp_path / "a", "gradient_checkpointing=true", "selective_checkpointing=true")
    args = _sft_args(cfg, False)
    kwargs = getattr(args, "gradient_checkpointing_kwargs", None) or getattr(args, "activation_checkpointing_kwargs")
    assert kwargs["selective"] is True and kwargs["use_reentrant"] is False
    with pytest.raises(UserError, match="selective_checkpointing needs gradient_checkpointing"):
        check_config(cfg_for(tiny_model, data_dir, tmp_path / "b", "selective_checkpointing=true"))
    if importlib.util.find_spec("liger_kernel") is None:
        with pytest.raises(UserError, match="use_liger_kernel needs the liger-kernel package"):
            check_config(cfg_for(tiny_model, data_dir, tmp_path / "c", "use_liger_kernel=true"))
    else:
        assert _sft_args(cfg_for(tiny_model, data_dir, tmp_path / "c", "use_liger_kernel=true"), False).use_liger_kernel


def test_labelled_positions_only_trains_the_same_steps(tiny_model, data_dir, tmp_path, monkeypatch):  # noqa: F811
    import contextlib

    import torch
    import trl.trainer.utils as trl_utils

    import trainer.train as train_module
    from trainer.speed import labelled_positions_only

    cpu = torch.device("cpu")
    every_position = trl_utils._use_triton(cpu)
    with labelled_positions_only():
        assert trl_utils._use_triton(cpu) is True  # TRL's fused head now projects only labelled positions
    assert trl_utils._use_triton(cpu) == every_position  # restored after training
    args = ("max_steps=3", "max_train_examples=12", "max_eval_examples=2")
    ours = train(cfg_for(tiny_model, data_dir, tmp_path / "labelled", *args))
    monkeypatch.setattr(train_module, "labelled_positions_only", contextlib.nullcontext)
    theirs = train(cfg_for(tiny_model, data_dir, tmp_path / "every", *args))
    assert ours["final_train_loss"] == pytest.approx(theirs["final_train_loss"], rel=1e-6)
    assert ours["final_eval_loss"] == pytest.approx(theirs["final_eval_loss"], rel=1e-6)
