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
        if base is float and isinstance(value, str):  # YAML 1.1 reads 5e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
        if base is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(base, type) and isinstance(value, base) and not (base is int and isinstance(value, bool)):
            return value
    names = " | ".join(getattr(o, "__name__", str(o)) for o in options)
    raise UserError(f"{source}: field '{name}' must be {names}, got {value!r}")


def _options(cls: type, name: str) -> tuple:
    hint = typing.get_type_hints(cls)[name]
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def parse_value(cls: type, name: str, raw: str, source: str) -> Any:
    """A command-line string parsed by the field's declared type (not as YAML: `run #1` stays `run #1`)."""
    options = _options(cls, name)
    if type(None) in options and raw.strip().lower() in ("null", "none", "~"):
        return None
    for option in options:
        base = typing.get_origin(option) or option
        if base is str:
            return raw
        if base is bool:
            if raw.strip().lower() in ("true", "yes", "on", "1"):
                return True
            if raw.strip().lower() in ("false", "no", "off", "0"):
                return False
        elif base is int:
            try:
                return int(raw.strip())
            except ValueError:
                pass
        elif base is float:
            try:
                return float(raw.strip())
            except ValueError:
                pass
        elif base in (list, dict, tuple):
            try:
                value = yaml.safe_load(raw)
            except (yaml.YAMLError, RecursionError):
                break
            if base is list and isinstance(value, str):
                value = [value]
            return _check_type(cls, name, value, source)
    names = " | ".join(getattr(o, "__name__", str(o)) for o in options)
    raise UserError(f"{source}: field '{name}' must be {names}, got {raw!r}")


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                values_from_cli: dict[str, Any] | None = None) -> T:
    """Build `cls` from an optional YAML file, then `key=value` overrides (each value parsed by the field's
    declared type), then typed command-line options (`values_from_cli`, already parsed by argparse)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise UserError(f"{path}: config file not found") from None
        except IsADirectoryError:
            raise UserError(f"{path}: is a directory, expected a YAML config file") from None
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
        except yaml.YAMLError as e:
            raise UserError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
        except RecursionError:
            raise UserError(f"{path}: nested too deeply") from None
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
        values[key] = parse_value(cls, key, raw, f"--set {key}")
    for key, value in (values_from_cli or {}).items():
        if value is not None:
            values[key] = _check_type(cls, key, value, f"--{key.replace('_', '-')}")
    missing = [
        f.name for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in values
    ]
    if missing:
        raise UserError(f"{path or 'config'}: missing required field(s): {', '.join(missing)}")
    return cls(**values)


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)
