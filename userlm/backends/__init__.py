"""Model backends behind one interface (`base.Backend`), found by name in a registry. A backend's module is
imported only when it is chosen, so `--help` and the CPU-only paths never import vLLM or openai."""

from __future__ import annotations

import importlib
import inspect
import typing

from userlm.backends.base import Backend, BatchBackend, Generation, GenerationRequest, Sampling

# The modules that register the built-in backends, imported on first use of their name.
BUILTIN_BACKENDS = {"hf": "userlm.backends.hf", "vllm": "userlm.backends.vllm", "openai": "userlm.backends.openai"}
_REGISTRY: dict[str, type[Backend]] = {}
_CACHE: dict = {}


def register_backend(name: str):
    """Class decorator: `get_backend(name, model, **options)` builds this class with `cls(model, **options)`."""
    def register(cls: type[Backend]) -> type[Backend]:
        _REGISTRY[name] = cls
        cls.name = name
        return cls
    return register


def backend_names() -> list[str]:
    return sorted({*BUILTIN_BACKENDS, *_REGISTRY})


def backend_class(name: str) -> type[Backend]:
    if name not in _REGISTRY and name in BUILTIN_BACKENDS:
        importlib.import_module(BUILTIN_BACKENDS[name])
    if name not in _REGISTRY:
        from userlm.io import UserError

        raise UserError(f"unknown backend '{name}' (known: {', '.join(backend_names())})")
    return _REGISTRY[name]


def backend_option_types(name: str) -> dict[str, type]:
    """The options a backend takes (its constructor's keyword arguments after the model) and their types."""
    init = backend_class(name).__init__
    hints = typing.get_type_hints(init)
    params = list(inspect.signature(init).parameters.values())[2:]  # after self and model
    return {p.name: hints.get(p.name, str) for p in params}


def backend_options(names: list[str], options: dict) -> dict[str, dict]:
    """Per backend name, the options of `options` it takes, each checked against its declared type. An option
    that none of them takes is a UserError naming the options they do take."""
    from userlm.io import UserError

    types = {name: backend_option_types(name) for name in dict.fromkeys(names)}
    for key in options:
        if not any(key in t for t in types.values()):
            known = ", ".join(sorted({k for t in types.values() for k in t}))
            raise UserError(f"backend option '{key}': not an option of the {'/'.join(types)} backend "
                            f"(known: {known})")
    return {name: {k: _typed(k, v, t[k]) for k, v in options.items() if k in t} for name, t in types.items()}


def _typed(key: str, value, hint):
    """A value (from YAML, or a `--backend-arg` string) as the option's declared type."""
    from userlm.config import parse_typed

    return parse_typed(hint, key, value, f"backend option '{key}'")


def get_backend(kind: str, model: str, **options) -> Backend:
    """A backend per (kind, model, options), shared within a process so a model used on both sides loads once."""
    key = (kind, model, tuple(sorted(options.items())))
    if key not in _CACHE:
        _CACHE[key] = backend_class(kind)(model, **options)
    return _CACHE[key]


__all__ = ["Backend", "BatchBackend", "Generation", "GenerationRequest", "Sampling", "backend_names",
           "backend_options", "get_backend", "register_backend"]
