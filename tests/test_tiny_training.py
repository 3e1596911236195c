"""Fast tier: LoRA training through TRL on the tiny real-architecture model of conftest.py, on real ShareGPT
examples: the adapter and its manifest, that it learns its targets, and that --resume continues from the
last checkpoint instead of starting over. The embedded-SmolLM2 and DDP runs are the slow tests of
test_trainer.py."""

import json
import math

import pytest

from trainer.train import TrainConfig, train
from userlm.config import load_config
from userlm.data.prepare import PrepareConfig, prepare, read_split
from userlm.io import IN_PROGRESS, UserError

TINY = ["max_length=96", "per_device_train_batch_size=2", "logging_steps=1", "max_eval_examples=4",
        "eval_steps=100000", "lora_r=8", "warmup_steps=0"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "sharegpt"
    prepare(PrepareConfig(sources=["sharegpt"], out=str(out), max_trees_per_source=300, seed=1))
    return out


def cfg_for(tiny_model, data_dir, out, *extra):
    return load_config(TrainConfig, None, [f"base_model={tiny_model}", f"data_dir={data_dir}", f"output_dir={out}",
                                           *TINY, *extra])


def test_training_learns_its_targets_and_writes_a_versioned_adapter(tiny_model, data_dir, tmp_path):
    import random

    from evaluators.perplexity import perplexity_units, pooled_perplexity
    from userlm.chat import USER_MODEL_SYSTEM

    out = tmp_path / "adapter"
    manifest = train(cfg_for(tiny_model, data_dir, out, "max_steps=8", "max_train_examples=16", "seed=0",
                             "learning_rate=0.01"))
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "manifest.json"):
        assert (out / name).exists(), name
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["base_model"] == tiny_model and manifest["quantization"] == "none"
    assert manifest["data_content_hash"] and manifest["versions"]["trl"] and manifest["global_step"] == 8
    assert math.isfinite(manifest["final_train_loss"]) and manifest["train_tokens_per_second"] > 0
    # the loss curve, drawn from the trainer's log history (a loss logged every step here), kept as a PNG
    assert manifest["loss_curve"] == "loss.png"
    png = (out / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") > 100
    # It learned what it was shown: the adapter's perplexity on its own training turns is below the base's.
    sample = random.Random(0).sample(read_split(data_dir, "train"), 16)[:6]  # what max_train_examples=16 drew
    adapter_ppl = pooled_perplexity(perplexity_units(str(out), USER_MODEL_SYSTEM, sample, max_length=96))
    base_ppl = pooled_perplexity(perplexity_units(tiny_model, USER_MODEL_SYSTEM, sample, max_length=96))
    assert adapter_ppl < base_ppl
    with pytest.raises(UserError, match="already exists"):
        train(cfg_for(tiny_model, data_dir, out, "max_steps=1"))


def test_resume_continues_from_the_checkpoint_not_from_scratch(tiny_model, data_dir, tmp_path):
    """The checkpoint's LoRA B matrices (zeros in a fresh adapter) are set to a marker value before resuming:
    a run that continues from the checkpoint ends one small step away from the marker, one that restarts
    from scratch ends near zero. The resumed run's state also continues the checkpoint's step count."""
    from safetensors.torch import load_file, save_file

    out = tmp_path / "resumable"
    first = cfg_for(tiny_model, data_dir, out, "max_steps=2", "save_steps=2", "max_train_examples=8",
                    "learning_rate=0.001")
    train(first)
    checkpoint = out / "checkpoints" / "checkpoint-2"
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == 2
    weights = load_file(checkpoint / "adapter_model.safetensors")
    lora_b = [k for k in weights if "lora_B" in k]
    assert lora_b and all(float(weights[k].abs().max()) < 0.01 for k in lora_b)  # 2 steps at lr 1e-3 from zeros
    save_file({k: (v.fill_(0.5) if k in lora_b else v) for k, v in weights.items()},
              checkpoint / "adapter_model.safetensors")
    # An interruption after the checkpoint: the finished adapter files are gone, train's in-progress marker stays.
    for name in ("manifest.json", "adapter_model.safetensors", "adapter_config.json"):
        (out / name).unlink()
    (out / IN_PROGRESS).write_text('{"kind": "userlm-adapter", "state": "training"}')

    manifest = train(cfg_for(tiny_model, data_dir, out, "max_steps=3", "save_steps=2", "max_train_examples=8",
                             "learning_rate=0.001"), resume=True)
    assert manifest["global_step"] == 3
    resumed = load_file(out / "adapter_model.safetensors")
    b_keys = [k for k in resumed if "lora_B" in k]
    assert b_keys and all(abs(float(resumed[k].mean()) - 0.5) < 0.01 for k in b_keys), \
        "resume did not start from the checkpoint's weights"
    state = json.loads((out / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3]


def test_bad_config_values_are_one_line_errors(tiny_model, data_dir, tmp_path):
    with pytest.raises(UserError, match="target_role"):
        train(cfg_for(tiny_model, data_dir, tmp_path / "x", "target_role=robot"))
    with pytest.raises(UserError, match="not a prepared data directory"):
        train(cfg_for(tiny_model, tmp_path, tmp_path / "y"))


def test_report_to_tensorboard_writes_the_training_curves(tiny_model, data_dir, tmp_path):
    pytest.importorskip("tensorboard", reason="report_to=tensorboard needs the tensorboard package (dev extra)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "adapter"
    train(cfg_for(tiny_model, data_dir, out, "max_steps=3", "max_train_examples=6", "report_to=tensorboard"))
    (events,) = (out / "checkpoints" / "runs").glob("*/events.out.tfevents.*")
    acc = EventAccumulator(str(events.parent))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3]


def test_report_to_an_unknown_integration_is_one_line_before_loading(tiny_model, data_dir, tmp_path):
    with pytest.raises(UserError, match="report_to: unknown logging integration 'tensorbored'"):
        train(cfg_for(tiny_model, data_dir, tmp_path / "a", "max_steps=1", "report_to=tensorbored"))
    assert not (tmp_path / "a").exists()

