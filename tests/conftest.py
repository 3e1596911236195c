import json
import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OASST2_SAMPLE = SHARED_DATA / "oasst2_sample.trees.jsonl"
OASST_EN = SHARED_DATA / "oasst_en_100.trees.jsonl"

needs_shared = pytest.mark.skipif(
    not OASST2_SAMPLE.exists(), reason=f"shared OASST data not found at {SHARED_DATA} (checkout without ../shared)"
)


@pytest.fixture(autouse=True, scope="session")
def _offline_cache(tmp_path_factory):
    # Everything runs offline; derived artifacts (dequantized models, classifiers) go to one cache per session
    # unless the caller points USERLM_CACHE at a warm one.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("USERLM_CACHE", str(Path.home() / ".cache" / "userlm"))
    yield


def msg(mid, role, text, replies=(), **extra):
    return {"message_id": mid, "role": role, "text": text, "lang": extra.pop("lang", "en"),
            "review_result": extra.pop("review_result", True), "deleted": extra.pop("deleted", False),
            "synthetic": extra.pop("synthetic", False), "replies": list(replies), **extra}


def write_trees(path: Path, trees: list[dict]) -> Path:
    path.write_text("".join(json.dumps(t) + "\n" for t in trees))
    return path


# Shared by the reliability tests (test_reliability.py, test_bad_input.py): the CLI run in-process, its one-line
# errors, and a small OASST source.
SMOKE_SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios" / "smoke"
TREE = {"message_tree_id": "t1", "prompt": msg("p1", "prompter", "How do I boil an egg?", [
    msg("a1", "assistant", "Boil it for 8 minutes.", [msg("p2", "prompter", "And a soft one?")])])}


def cli(capsys, *argv):
    """Run the CLI in-process; return (exit code, stderr lines)."""
    from workflows.cli import main

    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def one_line_error(err, *needles):
    assert len(err) == 1 and err[0].startswith("error: ") and "unexpected" not in err[0], err
    for needle in needles:
        assert str(needle) in err[0], err
    return err[0]


@pytest.fixture
def source(tmp_path):
    return write_trees(tmp_path / "x.trees.jsonl", [TREE])


@pytest.fixture
def branching_tree():
    """One tree, two assistant answers (rank 0 and 1), the better one followed up by the human."""
    return {"message_tree_id": "t1", "prompt": msg("p1", "prompter", "How do I boil an egg?", [
        msg("a1", "assistant", "Boil it for 8 minutes.", [
            msg("p2", "prompter", "And a soft one?", [msg("a3", "assistant", "6 minutes.", rank=0)])], rank=0),
        msg("a2", "assistant", "Use a pan.", rank=1),
    ])}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Qwen2's real architecture, tiny and random, with a byte-level BPE tokenizer trained on the shipped
    scenarios' text by benchmarks/random_model.py (as on the GPU machine, which cannot download weights):
    a real model for the fast tier, loaded in well under a second."""
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("random_model", root / "benchmarks" / "random_model.py")
    random_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(random_model)
    texts = [p.read_text(encoding="utf-8") for p in sorted((root / "scenarios").rglob("*.yaml"))]
    tokenizer = random_model.build_tokenizer(texts, vocab_size=600)
    config = Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=4096,
                         tie_word_embeddings=True, initializer_range=0.3,  # peaked logits: no near-ties in argmax
                         eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-qwen2")
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def under_triton_interpreter(module: str) -> None:
    """`module`'s `interpreter_checks()` in a fresh process under Triton's interpreter (skipped where Triton is not
    installed): TRITON_INTERPRET is read when Triton is first imported, which another test in this process may
    already have done (and setting it here would leak into later tests)."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("triton") is None:
        pytest.skip("Triton is not installed here (it ships with the CUDA torch wheel)")
    here = Path(__file__).resolve().parent
    r = subprocess.run([sys.executable, "-c", f"from {module} import interpreter_checks; interpreter_checks()"],
                       cwd=here, env={**os.environ, "TRITON_INTERPRET": "1",
                                      "PYTHONPATH": os.pathsep.join([str(here.parent), os.environ.get("PYTHONPATH", "")])},
                       capture_output=True, text=True, timeout=600)
    if r.returncode and "only 0-dimensional arrays can be converted to Python scalars" in r.stderr:
        import numpy

        # Triton 3.6's interpreter holds a kernel's scalar arguments as 1-element arrays and calls int() on them (a
        # loop bounded by an argument); NumPy 2.4 refuses that conversion: not this project's kernels
        pytest.skip(f"Triton's interpreter cannot loop over a scalar argument under NumPy {numpy.__version__} "
                    "(use NumPy < 2.4 to run it)")
    assert r.returncode == 0, r.stderr[-3000:]


def every_turn(backend, convs: list, sampling) -> list[str]:
    """Each conversation's next turn submitted at once (keyed by its index, seeded by it), the backend stepped until
    all are done: their texts in order."""
    from userlm.backends import GenerationRequest

    for i, chat in enumerate(convs):
        backend.submit((i, "user"), GenerationRequest(chat, sampling, seed=i))
    done = {}
    while len(done) < len(convs):
        done.update(backend.step())
    return [done[(i, "user")].text for i in range(len(convs))]


def sharegpt_file(path: Path, records: list[tuple[str, list[tuple[str, str]]]]) -> str:
    """A ShareGPT JSON file from (id, [(from, value), ...]) records."""
    path.write_text(json.dumps([{"id": i, "conversations": [{"from": f, "value": v} for f, v in turns]}
                                for i, turns in records]))
    return str(path)


@pytest.fixture
def keep_thread_settings(monkeypatch):
    """The CLI sets OMP_NUM_THREADS etc. for its process; tests that run it in-process must not leak them."""
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"):
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
        else:
            monkeypatch.delenv(key, raising=False)
