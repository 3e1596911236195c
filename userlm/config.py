"""One dataclass per command, loaded from YAML and overridden with `--set key=value` (TRL's style)."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from userlm.io import UserError

T = TypeVar("T")


def _check_type(cls: type, name: str, value: Any, source: str) -> Any:
    hint = typing.get_type_hints(cls)[name]
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        base = typing.get_origin(option) or option
        if base is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if base is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(base, type) and isinstance(value, base) and not (base is int and isinstance(value, bool)):
            return value
    names = " | ".join(getattr(o, "__name__", str(o)) for o in options)
    raise UserError(f"{source}: field '{name}' must be {names}, got {value!r}")


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build `cls` from an optional YAML file, then `key=value` overrides (values parsed as YAML)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise UserError(f"{path}: config file not found") from None
        except yaml.YAMLError as e:
            raise UserError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: expected a mapping of config fields")
        for key, value in loaded.items():
            if key not in fields:
                raise UserError(f"{path}: unknown field '{key}' (known: {', '.join(sorted(fields))})")
            values[key] = _check_type(cls, key, value, str(path))
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: expected key=value")
        if key not in fields:
            raise UserError(f"--set {key}: unknown field (known: {', '.join(sorted(fields))})")
        values[key] = _check_type(cls, key, yaml.safe_load(raw) if raw else "", f"--set {key}")
    missing = [
        f.name for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in values
    ]
    if missing:
        raise UserError(f"{path or 'config'}: missing required field(s): {', '.join(missing)}")
    return cls(**values)


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)
