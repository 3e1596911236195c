import json
import math

import pytest

from trainer.train import TrainConfig, train
from userlm.config import load_config
from userlm.data.prepare import PrepareConfig, prepare, read_split
from userlm.io import IN_PROGRESS, UserError

TINY = ["max_length=96", "per_device_train_batch_size=2", "logging_steps=1", "max_eval_examples=8",
        "eval_steps=100000", "lora_r=8", "learning_rate=0.001", "warmup_steps=0"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "sharegpt"
    prepare(PrepareConfig(sources=["sharegpt"], out=str(out), max_trees_per_source=300, seed=1))
    return out


def cfg_for(data_dir, out, *extra):
    return load_config(TrainConfig, None, [f"data_dir={data_dir}", f"output_dir={out}", *TINY, *extra])


@pytest.mark.slow
def test_lora_training_learns_human_turns_and_writes_a_versioned_adapter(data_dir, tmp_path):
    from evaluators.perplexity import perplexity_units, pooled_perplexity
    from userlm.chat import USER_MODEL_SYSTEM

    out = tmp_path / "adapter"
    manifest = train(cfg_for(data_dir, out, "max_steps=8", "max_train_examples=16", "seed=0"))
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "manifest.json"):
        assert (out / name).exists(), name
    assert manifest["base_model"] == "embedded:smollm2-135m-instruct" and manifest["quantization"] == "none"
    assert manifest["data_content_hash"] and manifest["versions"]["trl"] and manifest["global_step"] == 8
    assert math.isfinite(manifest["final_train_loss"]) and manifest["train_tokens_per_second"] > 0
    # It learned what it was shown: the adapter's perplexity on its own training turns is below the base's.
    import random

    sample = random.Random(0).sample(read_split(data_dir, "train"), 16)[:6]  # what max_train_examples=16 drew
    adapter_ppl = pooled_perplexity(perplexity_units(str(out), USER_MODEL_SYSTEM, sample, max_length=96))
    base_ppl = pooled_perplexity(perplexity_units("embedded:smollm2-135m-instruct", USER_MODEL_SYSTEM, sample, max_length=96))
    assert adapter_ppl < base_ppl
    with pytest.raises(UserError, match="already exists"):
        train(cfg_for(data_dir, out, "max_steps=1"))


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(data_dir, tmp_path):
    out = tmp_path / "resumable"
    train(cfg_for(data_dir, out, "max_steps=2", "save_steps=2", "max_train_examples=8"))
    # Simulate an interruption after the checkpoint: the finished adapter files are gone and the in-progress
    # marker, which train writes first and removes with the manifest, is still there.
    for name in ("manifest.json", "adapter_model.safetensors", "adapter_config.json"):
        (out / name).unlink()
    (out / IN_PROGRESS).write_text('{"kind": "userlm-adapter", "state": "training"}')
    manifest = train(cfg_for(data_dir, out, "max_steps=3", "save_steps=2", "max_train_examples=8"), resume=True)
    assert manifest["global_step"] == 3
    state = json.loads((out / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2


def test_bad_config_values_are_one_line_errors(data_dir, tmp_path):
    with pytest.raises(UserError, match="target_role"):
        train(cfg_for(data_dir, tmp_path / "x", "target_role=robot"))
    with pytest.raises(UserError, match="not a prepared data directory"):
        train(cfg_for(tmp_path, tmp_path / "y"))


@pytest.mark.slow
def test_data_parallel_training_under_accelerate_launch(data_dir, tmp_path):
    """The README's multi-GPU command, on the CPU: two processes, gloo, DDP through TRL; one adapter written."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_cpu_threads_per_process", "1", "-m", "workflows.cli", "train", "--config",
           str(root / "configs" / "embedded-cpu.yaml")]
    for item in [f"data_dir={data_dir}", f"output_dir={out}", *TINY, "max_steps=2", "save_steps=100"]:
        cmd += ["--set", item]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(root), "CUDA_VISIBLE_DEVICES": ""})  # gloo, any host
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["processes"] == 2 and manifest["distributed_type"] == "MULTI_CPU" and manifest["global_step"] == 2
    assert (out / "adapter_model.safetensors").exists() and math.isfinite(manifest["final_train_loss"])
