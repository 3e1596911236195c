"""Issue 27 items 5 and 6: a damaged or wrong model, adapter, prepared split or cache is one line naming the file,
field or model and what was expected (the old code said "unexpected X (a bug)"); a model reference that is
neither a local path nor reachable fails in seconds. Real tiny models (conftest.tiny_model) and a real LoRA
adapter made by peft on it; every failing case stops before or at the load, in well under a second."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TREE, cli, one_line_error, write_trees

pytestmark = pytest.mark.usefixtures("keep_thread_settings")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model, tmp_path_factory):
    """A LoRA adapter (rank 2) on the tiny model, with the manifest `userlm train` writes (its needed fields)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("adapter") / "a"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    (out / "manifest.json").write_text(json.dumps({"kind": "userlm-adapter", "base_model": tiny_model,
                                                   "system_prompt": None, "trained_with_intent": False}))
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from workflows.cli import main

    root = tmp_path_factory.mktemp("data")
    trees = [json.loads(json.dumps(TREE).replace("egg", f"egg number {i}").replace('"t1"', f'"t{i}"'))
             for i in range(3)]
    src = write_trees(root / "x.trees.jsonl", trees)
    assert main(["data", "prepare", "--source", str(src), "--out", str(root / "d"), "--test-fraction", "0",
                 "--validation-fraction", "0"]) == 0
    return root / "d"


def perplexity(capsys, model, data):
    return cli(capsys, "evaluate", "perplexity", "--model", model, "--data", data, "--split", "train", "--limit", "2")


def damaged(adapter: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "damaged"
    shutil.copytree(adapter, copy)
    change(copy)
    return copy


def _edit_json(path: Path, **fields):
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def test_a_good_adapter_loads(capsys, tiny_adapter, data):
    assert perplexity(capsys, tiny_adapter, data)[0] == 0


@pytest.mark.parametrize("change, needles", [
    (lambda d: (d / "adapter_model.safetensors").write_bytes((d / "adapter_model.safetensors").read_bytes()[:300]),
     ["adapter_model.safetensors", "cannot be read", "cut off or damaged"]),
    (lambda d: (d / "adapter_model.safetensors").write_bytes(b""), ["adapter_model.safetensors", "cannot be read"]),
    (lambda d: (d / "adapter_config.json").write_text((d / "adapter_config.json").read_text()[:100]),
     ["adapter_config.json:", "adapter config is not valid JSON"]),
    (lambda d: _edit_json(d / "adapter_config.json", r=8), ["adapter_config.json", "r is 8", "rank 2"]),
    (lambda d: _edit_json(d / "manifest.json", base_model=str(d)), ["manifest.json", "this adapter itself"]),
    (lambda d: _edit_json(d / "manifest.json", system_prompt=12345),
     ["manifest.json", "'system_prompt' must be str or null", "12345"]),
    (lambda d: _edit_json(d / "manifest.json", trained_with_intent="yes"), ["'trained_with_intent' must be bool"]),
    (lambda d: (d / "adapter_model.safetensors").unlink(), ["adapter_model.safetensors not found"]),
])
def test_damaged_adapter_is_named(tmp_path, capsys, tiny_adapter, data, change, needles):
    code, err = perplexity(capsys, damaged(tiny_adapter, tmp_path, change), data)
    assert code == 2
    one_line_error(err, *needles)


def test_adapter_on_another_base_model_is_named(tmp_path, capsys, tiny_adapter, tiny_model, data):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_model)
    config.hidden_size, config.intermediate_size = 32, 64  # same family and tokenizer, other sizes
    other = tmp_path / "other-base"
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(other)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(other)
    capsys.readouterr()  # the save's progress bar
    adapter = damaged(tiny_adapter, tmp_path, lambda d: _edit_json(d / "manifest.json", base_model=str(other)))
    code, err = perplexity(capsys, adapter, data)
    assert code == 2
    one_line_error(err, str(adapter), "does not fit base model", str(other), "trained on")


def test_junk_gguf_and_empty_model_config_are_named(tmp_path, capsys, data):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(os.urandom(1000))
    code, err = perplexity(capsys, junk, data)
    assert code == 2
    one_line_error(err, "junk.gguf", "not a GGUF file")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    code, err = perplexity(capsys, tmp_path / "m", data)
    assert code == 2
    one_line_error(err, "config.json", "'model_type' is missing")


@pytest.mark.parametrize("change, needles", [
    (lambda ex: ex["messages"][0].update(content=5), ["train.jsonl: record 1", "messages[0]", "content: string"]),
    (lambda ex: ex.update(messages="hi"), ["train.jsonl: record 1", "'messages' must be a non-empty list"]),
    (lambda ex: ex["messages"][0].update(role="human"), ["messages[0]", "role: user|assistant|system"]),
])
def test_wrongly_typed_example_in_a_prepared_split_is_named(tmp_path, capsys, tiny_model, data, change, needles):
    copy = tmp_path / "d"
    shutil.copytree(data, copy)
    lines = (copy / "train.jsonl").read_text().splitlines()
    example = json.loads(lines[0])
    change(example)
    (copy / "train.jsonl").write_text("\n".join([json.dumps(example), *lines[1:]]) + "\n")
    code, err = perplexity(capsys, tiny_model, copy)
    assert code == 2
    one_line_error(err, *needles)


@pytest.mark.parametrize("user", ["prompted:", "base:"])
def test_empty_model_after_prompted_or_base_is_named(tmp_path, capsys, tiny_model, user):
    code, err = cli(capsys, "simulate", "--user", user, "--assistant", tiny_model, "--out", tmp_path / "r")
    assert code == 2
    one_line_error(err, f"user '{user}'", "expected a model reference after")


def test_openai_concurrency_zero_is_named():
    from userlm.backends.openai import OpenAIBackend
    from userlm.io import UserError

    pytest.importorskip("openai")
    with pytest.raises(UserError, match=r"openai backend option 'concurrency' .* must be >= 1, got 0"):
        OpenAIBackend("m", concurrency=0)
    with pytest.raises(UserError, match=r"'retries' .* >= 0"):
        OpenAIBackend("m", retries=-1)


# 6. fail fast


@pytest.mark.parametrize("ref", ["adapters/my-usr", "./my-usr", "../nowhere/x", "~/no-such-userlm-adapter"])
def test_a_path_is_never_sent_to_the_hub(tmp_path, capsys, monkeypatch, data, ref):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adapters").mkdir()  # `adapters/my-user` was meant
    started = time.monotonic()
    code, err = perplexity(capsys, ref, data)
    assert code == 2 and time.monotonic() - started < 5
    one_line_error(err, ref, "no such file or directory", "not looked up on the hub")


def _run_offline(args, env_extra, cwd):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])  # this checkout, not an installed one
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "workflows.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**env, **env_extra})
    return done, time.monotonic() - started


def test_unreachable_hub_fails_in_seconds_naming_what_was_tried(tmp_path, data):
    # a hub that refuses connections (the old code retried for ~54 s, 22 lines, on a machine without network)
    done, seconds = _run_offline(["evaluate", "perplexity", "--model", "nobody/no-such-model", "--data", data,
                                  "--split", "train"],
                                 {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}, tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and seconds < 15, (seconds, done.stderr)
    assert len(lines) == 1 and "nobody/no-such-model: no such local path" in lines[0], lines
    assert "http://127.0.0.1:9" in lines[0] and "cannot be reached" in lines[0] and "HF_HUB_OFFLINE" in lines[0]


def test_hub_id_with_hf_hub_offline_is_named(tmp_path, capsys, data, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty hub cache
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    code, err = perplexity(capsys, "nobody/no-such-model", data)
    assert code == 2
    one_line_error(err, "nobody/no-such-model", "not in the local hub cache", "HF_HUB_OFFLINE")


def test_read_only_cache_fails_before_the_gguf_conversion(tmp_path, data):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a cache under a file cannot be written (chmod does not stop root)
    done, seconds = _run_offline(["evaluate", "perplexity", "--model", "embedded:smollm2-135m-instruct", "--data",
                                  data, "--split", "train", "--limit", "1"], {"USERLM_CACHE": str(blocker / "cache"),
                                                          "HF_HUB_OFFLINE": "1"}, tmp_path)
    assert done.returncode == 2 and seconds < 20, (seconds, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{blocker / 'cache'}: the userlm cache is not writable" in lines[0], lines
    assert "USERLM_CACHE" in lines[0]


def test_read_only_cache_names_the_folder_for_the_vector_store(tmp_path, monkeypatch):
    from evaluators.cache import VectorCache
    from userlm.io import UserError

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("USERLM_CACHE", str(blocker / "cache"))
    with pytest.raises(UserError, match=r"a-file/cache: the userlm cache is not writable"):
        VectorCache("embeddings")
