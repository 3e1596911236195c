"""Checks of a model reference before anything slow reads it, each failure a one-line UserError naming the file,
field or model and what was expected: a GGUF's magic bytes, a model directory's config.json, an adapter's
config, weights and base model; a hub id that cannot be reached fails in seconds (no retries), and a reference
that looks like a path is never sent to the hub."""

from __future__ import annotations

import functools
import os
import re
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from userlm.io import UserError, read_json

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
PROBE_TIMEOUT_S = 3.0


def looks_like_path(ref: str) -> bool:
    """`./x`, `../x`, `~/x`, `/x`, `a/b/c`, `x/`, or `adapters/my-usr` where `adapters/` is a local folder: a
    path, which is never looked up on the hub (a hub id is `owner/name`)."""
    if ref.startswith(("/", ".", "~")) or "\\" in ref or not HUB_ID.fullmatch(ref):
        return True
    return Path(ref.split("/")[0]).is_dir()


def missing_path_error(ref: str) -> UserError:
    where = Path(ref).expanduser()
    parent = next((p for p in where.parents if p.is_dir()), None) if not where.is_absolute() else None
    hint = f" ({parent}/ exists)" if parent not in (None, Path(".")) else ""
    return UserError(f"{ref}: no such file or directory{hint}; a local path, so not looked up on the hub")


@functools.lru_cache(maxsize=None)
def _hub_unreachable(endpoint: str) -> str | None:
    """Why `endpoint` cannot be reached (a TCP connection within PROBE_TIMEOUT_S), or None. Name resolution
    runs in a thread: getaddrinfo has no timeout of its own."""
    url = urlparse(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    result: dict = {}

    def lookup():
        try:
            result["addr"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4]
        except OSError as e:
            result["error"] = f"cannot resolve {host}: {e.strerror or e}"

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S)
    if "addr" not in result:
        return result.get("error", f"no answer resolving {host} within {PROBE_TIMEOUT_S:g} s")
    try:
        socket.create_connection(result["addr"][:2], timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        return f"cannot connect to {host}:{port}: {e.strerror or e}"
    return None


def check_hub_model(ref: str) -> None:
    """A hub id that from_pretrained can load without waiting on the network: in the local hub cache (then, if
    the hub is unreachable, huggingface_hub's offline mode is switched on so nothing retries), or reachable."""
    from huggingface_hub import constants, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(ref, "config.json"), str)
    if constants.HF_HUB_OFFLINE:
        if not cached:
            raise UserError(f"{ref}: no such local path, and hub model '{ref}' is not in the local hub cache "
                            f"(HF_HUB_OFFLINE is set); check the name, or download it with the network on")
        return
    reason = _hub_unreachable(constants.ENDPOINT)
    if reason is None:
        return
    if cached:
        os.environ["HF_HUB_OFFLINE"] = "1"
        constants.HF_HUB_OFFLINE = True  # read by huggingface_hub and transformers at each call
        return
    raise UserError(f"{ref}: no such local path, and the hub ({constants.ENDPOINT}) cannot be reached to fetch "
                    f"model '{ref}' ({reason}); check the name and the network, or set HF_HUB_OFFLINE=1")


def check_gguf(path: Path) -> None:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise UserError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes)")


@contextmanager
def gguf_read_errors(path: str):
    """A GGUF that passed check_gguf but that transformers cannot read (cut off, an unknown architecture)."""
    try:
        yield
    except (ValueError, KeyError, IndexError, TypeError, OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read this GGUF file ({type(e).__name__}: {e}); is it complete?") from None


def check_model_dir(path: Path) -> None:
    read_json(path / "config.json", "model config", {"model_type": str})


def check_adapter(path: Path, base_model: str) -> None:
    """adapter_config.json readable and of the weights' rank, the weights readable, and a base model that is
    not an adapter (the adapter itself in its manifest was a RecursionError)."""
    config = read_json(path / "adapter_config.json", "adapter config", {"r": int})
    base = Path(base_model).expanduser()
    if (base / "adapter_config.json").exists():
        what = "this adapter itself" if base.resolve() == path.resolve() else "an adapter"
        raise UserError(f"{path / 'manifest.json'}: base_model '{base_model}' is {what}; expected the model the "
                        f"adapter was trained on")
    weights = path / "adapter_model.safetensors"
    if not weights.exists():
        if (path / "adapter_model.bin").exists():
            return
        raise UserError(f"{path}: adapter weights adapter_model.safetensors not found")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            ranks = {f.get_slice(k).get_shape()[0] for k in f.keys() if ".lora_A." in k}
    except (SafetensorError, OSError) as e:
        raise UserError(f"{weights}: adapter weights cannot be read ({e}); the file is cut off or damaged: restore "
                        f"it or train again") from None
    if ranks and ranks != {config["r"]} and not config.get("rank_pattern"):
        raise UserError(f"{path / 'adapter_config.json'}: r is {config['r']} but the weights have rank "
                        f"{'/'.join(map(str, sorted(ranks)))}; was adapter_config.json edited?")


@contextmanager
def adapter_fit_errors(adapter: str, base_model: str):
    """Weights that do not fit the base model: base_model in the manifest is not the model it was trained on."""
    try:
        yield
    except (RuntimeError, ValueError) as e:
        text = str(e)
        if "size mismatch" not in text and "not found in the base model" not in text:
            raise
        shapes = re.search(r"with shape (torch.Size\(\[[\d, ]*\]\)) from checkpoint, the shape in current "
                           r"model is (torch.Size\(\[[\d, ]*\]\))", text)
        detail = f"weights of shape {shapes[1]}, the model's {shapes[2]}" if shapes else " ".join(text.split())
        raise UserError(f"{adapter}: the adapter does not fit base model '{base_model}' (manifest.json base_model): "
                        f"{detail[:200]}; base_model must be the model the adapter was trained on") from None
