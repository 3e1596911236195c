"""Fast tier: `end_loss_weight` (trainer/end_weight.py) on the tiny real model of conftest.py and real ShareGPT
windows: weight 1 is TRL's loss exactly, weight w adds (w - 1) times the end marker's own loss, and a training run
records the option and how many end tokens it weighted."""

import pytest

from tests.test_tiny_training import cfg_for, data_dir  # noqa: F401  (data_dir: the module's fixture)
from trainer.end_weight import end_marker_mask, marker_ids, with_end_weight
from trainer.train import _lora_config, _sft_args, check_config, tokenize_split, train
from userlm.data.prepare import read_split
from userlm.io import UserError


def test_the_mask_marks_target_runs_that_start_with_the_marker():
    import torch

    x = -100
    labels = torch.tensor([[x, x, 7, 8, 2, x, 7, 8, 2],     # two end turns
                           [x, 5, 7, 8, 2, x, x, 7, 9],     # 7 8 inside a turn; 7 9 is not the marker
                           [x, x, x, x, x, x, x, x, 7]])    # a marker cut off by the window
    mask = end_marker_mask(labels, [7, 8])
    assert mask.shape == (3, 8)  # the fused head's positions: labels[:, 1:]
    assert mask[0].tolist() == [False, True, True, False, False, True, True, False]
    assert not mask[1].any() and not mask[2].any()
    assert torch.equal(end_marker_mask(labels[:, 1:], [7, 8], shifted=True), mask)


@pytest.fixture(scope="module")
def setup(tiny_model, data_dir, tmp_path_factory):  # noqa: F811
    from userlm.models import load_causal_lm

    cfg = cfg_for(tiny_model, data_dir, tmp_path_factory.mktemp("w") / "a", "lora_dropout=0", "batching=padded",
                  "per_device_train_batch_size=8", "max_steps=1", "end_share=0.5")
    model, tokenizer = load_causal_lm(cfg.base_model, dtype="float32", trainable=True)
    ds, ends = tokenize_split(tokenizer, read_split(cfg.data_dir, "train")[:60], cfg, limit=8, end_share=0.5)
    assert ends == 4
    return cfg, model, tokenizer, ds


def test_weight_one_is_trls_loss_and_weight_w_adds_w_minus_one_end_losses(setup):
    import torch
    from trl import SFTTrainer

    cfg, model, tokenizer, ds = setup
    assert with_end_weight(SFTTrainer, 1.0) is SFTTrainer  # weight 1: TRL's trainer itself, bit for bit
    trainer = with_end_weight(SFTTrainer, 5.0)(model=model, args=_sft_args(cfg, False), train_dataset=ds,
                                               processing_class=tokenizer, peft_config=_lora_config(cfg))
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    n = (batch["labels"][:, 1:] != -100).sum()
    plain = SFTTrainer.compute_loss(trainer, trainer.model, dict(batch), num_items_in_batch=n)
    weighted = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=n)
    trainer.end_loss_weight = 1.0  # the weighting path itself at weight 1: the same number exactly
    assert torch.equal(trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=n), plain)

    marker = marker_ids(tokenizer)
    mask = end_marker_mask(batch["labels"], marker)
    assert mask.sum() == 4 * len(marker)  # the 4 end windows, each its marker once
    out = trainer.model(**{k: v for k, v in batch.items()}, use_cache=False, fused_lm_head=True)
    end_loss = -out.log_probs[mask].sum() / n
    assert end_loss > 0
    assert weighted.item() == pytest.approx(plain.item() + 4 * end_loss.item(), rel=1e-5)
    # and the gradient follows: w=5 puts 5x the end marker's gradient into the step
    grads = []
    for w in (1.0, 5.0):
        trainer.end_loss_weight = w
        trainer.model.zero_grad()
        trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=n).backward()
        grads.append(torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]))
    trainer.model.zero_grad()
    end_loss.backward()
    end_grad = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
    assert torch.allclose(grads[1] - grads[0], 4 * end_grad, atol=1e-6, rtol=1e-3)


def test_training_with_a_weight_records_it_and_counts_the_end_tokens(tiny_model, data_dir, tmp_path):  # noqa: F811
    manifest = train(cfg_for(tiny_model, data_dir, tmp_path / "a", "end_loss_weight=5", "max_steps=2",
                             "end_share=0.5", "max_eval_examples=1"))
    assert manifest["config"]["end_loss_weight"] == 5
    assert manifest["end_tokens_weighted"] > 0
    assert manifest["final_train_loss"] > 0
    plain = train(cfg_for(tiny_model, data_dir, tmp_path / "b", "max_steps=1", "max_eval_examples=1"))
    assert plain["config"]["end_loss_weight"] == 1.0 and plain["end_tokens_weighted"] is None
    with pytest.raises(UserError, match="end_loss_weight needs target_role=user"):
        check_config(cfg_for(tiny_model, data_dir, tmp_path / "c", "end_loss_weight=5", "target_role=assistant"))
    with pytest.raises(UserError, match="end_loss_weight"):
        cfg_for(tiny_model, data_dir, tmp_path / "d", "end_loss_weight=-1")
