"""One small interface for every model backend (lm-evaluation-harness style): generate for a batch of
chats, log-likelihood of given continuations. Backends are imported only when chosen."""

from __future__ import annotations

from userlm.backends.base import Backend, Generation, GenerationRequest

_CACHE: dict = {}


def get_backend(kind: str, model: str, **options) -> Backend:
    """A backend per (kind, model, options), shared within a process so a model used on both sides loads once."""
    key = (kind, model, tuple(sorted(options.items())))
    if key not in _CACHE:
        if kind == "hf":
            from userlm.backends.hf import HFBackend as cls
        elif kind == "vllm":
            from userlm.backends.vllm import VLLMBackend as cls
        elif kind == "openai":
            from userlm.backends.openai import OpenAIBackend as cls
        else:
            from userlm.io import UserError

            raise UserError(f"unknown backend '{kind}' (known: hf, vllm, openai)")
        _CACHE[key] = cls(model, **options)
    return _CACHE[key]


def release_backends() -> None:
    _CACHE.clear()


__all__ = ["Backend", "Generation", "GenerationRequest", "get_backend", "release_backends"]
