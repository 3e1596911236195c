"""Fast tier: every adapter manifest.json, run.json and metrics.json carries the same `provenance` block
(library versions, the project's version and commit, config and chat-template hashes, sampling, seeds, model
and adapter identities), on a real 2-step adapter of the tiny model, a simulation with it and its evaluation."""

import json
import subprocess
from pathlib import Path

from userlm.provenance import PROVENANCE_FIELDS

ROOT = Path(__file__).resolve().parents[1]


def test_adapter_run_and_metrics_record_their_provenance(tiny_model, tmp_path):
    from evaluators.run import evaluate_run
    from simulator.run import SimulationConfig, simulate
    from trainer.train import TrainConfig, train
    from userlm.config import load_config
    from userlm.data.prepare import PrepareConfig, load_manifest, prepare

    data, adapter = tmp_path / "data", tmp_path / "adapter"
    prepare(PrepareConfig(sources=["sharegpt"], out=str(data), max_trees_per_source=200))
    train(load_config(TrainConfig, None, [f"base_model={tiny_model}", f"data_dir={data}", f"output_dir={adapter}",
                                          "max_steps=2", "max_length=64", "per_device_train_batch_size=2",
                                          "eval_steps=100000", "max_eval_examples=2", "lora_r=4", "seed=3"]))
    run = simulate(load_config(SimulationConfig, None, [f"out={tmp_path / 'run'}", "samples=1", "max_turns=1",
                                                        f"scenarios={ROOT / 'scenarios' / 'smoke'}",
                                                        f"user={adapter}", f"assistant={tiny_model}", "seed=5"]))
    evaluate_run(str(run), reference=str(data), evaluators="behaviour")
    files = {"adapter": adapter / "manifest.json", "run": run / "run.json", "metrics": run / "metrics.json"}
    blocks = {kind: json.loads(path.read_text())["provenance"] for kind, path in files.items()}
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    for kind, block in blocks.items():
        assert set(PROVENANCE_FIELDS) <= set(block), kind
        for library in ("torch", "transformers", "peft", "trl"):
            assert block["versions"][library], (kind, library)
        assert block["userlm"] and block["git_commit"] == (head or None), kind
        assert len(block["config_sha256"]) == 64 and block["chat_template_sha256"], kind
    adapter_block, run_block, metrics_block = blocks["adapter"], blocks["run"], blocks["metrics"]
    assert adapter_block["seeds"]["seed"] == 3 and adapter_block["models"]["base"]["ref"] == tiny_model
    assert len(adapter_block["models"]["adapter_weights_sha256"]) == 64
    assert adapter_block["models"]["data_content_hash"] == load_manifest(data)["content_hash"]
    # the run names the adapter by its manifest's hash, and records each scenario's sampling and the seed
    assert run_block["models"]["user"]["kind"] == "adapter" and run_block["models"]["user_adapter_manifest_sha256"]
    assert run_block["seeds"]["seed"] == 5 and all("temperature" in s["user"] for s in run_block["sampling"].values())
    # the user model's template is the adapter's (saved with it), the one training rendered with
    assert run_block["chat_template_sha256"]["user"] == adapter_block["chat_template_sha256"]["user_model"]
    assert run_block["chat_template_sha256"]["assistant"]
    # the evaluation carries the run's sampling and seeds, and names its reference data
    assert metrics_block["sampling"] == run_block["sampling"] and metrics_block["seeds"] == run_block["seeds"]
    assert metrics_block["models"]["reference_content_hash"] == load_manifest(data)["content_hash"]
    assert metrics_block["config_sha256"] != run_block["config_sha256"]
