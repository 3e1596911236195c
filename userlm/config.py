"""One dataclass per command, loaded from YAML, overridden with `--set key=value`, and turned into command-line
flags (TRL's style). Every field carries its help text in `metadata["help"]`; enumerated values are `Literal`
types, checked when the dataclass is built (`check_fields` in its `__post_init__`) and by the loader."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from userlm.io import UserError
from userlm.yamlio import load_yaml

T = TypeVar("T")
_MISSING = dataclasses.MISSING
# Values shared by several configs (and by load_causal_lm, which checks them again for direct callers).
Quantization = typing.Literal["auto", "nf4", "none"]
DType = typing.Literal["auto", "float32", "bfloat16", "float16"]


def option(default: Any = _MISSING, help: str = "", factory: Any = _MISSING, flag: str | None = None,
           metavar: str | None = None, min: float | None = None, max: float | None = None) -> Any:
    """A config field with its help text (shown by `--help`). `flag` spells its command-line option where
    the field's own name would not (`--source` for `sources`); `metavar` names its value there. A number's
    bounds `min` and `max` (inclusive) are checked by `check_fields` (None, where the type allows it, passes)."""
    metadata = {"help": help, **({"flag": flag} if flag else {}), **({"metavar": metavar} if metavar else {}),
                **({"min": min} if min is not None else {}), **({"max": max} if max is not None else {})}
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_name(f: dataclasses.Field) -> str:
    """The command-line option of a config field: `metadata["flag"]` where `option(flag=...)` set one."""
    return "--" + f.metadata.get("flag", f.name.replace("_", "-"))


def required(f: dataclasses.Field) -> bool:
    """A field without a default: the config file, `--set` or its flag must give it."""
    return f.default is _MISSING and f.default_factory is _MISSING


def type_options(hint) -> tuple:
    """The alternatives of a declared type: (int, NoneType) for `int | None`, (hint,) for anything else."""
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def allowed_values(hint) -> tuple | None:
    """The values a `Literal[...]` type (or `Literal[...] | None`) allows; None for any other type."""
    for option_type in type_options(hint):
        if typing.get_origin(option_type) is typing.Literal:
            return typing.get_args(option_type)
    return None


def _type_names(options: tuple) -> str:
    names = []
    for o in options:
        literal = typing.get_args(o) if typing.get_origin(o) is typing.Literal else None
        names.append(f"one of {', '.join(map(str, literal))}" if literal else getattr(o, "__name__", str(o)))
    return " | ".join(names)


def check_value(hint, name: str, value: Any, source: str) -> Any:
    """A value read from YAML (or already typed) checked against the field's declared type, coerced where
    that is lossless (an int for a float, 5e-4 that YAML 1.1 read as a string)."""
    options = type_options(hint)
    if value is None and type(None) in options:
        return None
    for option_type in options:
        if typing.get_origin(option_type) is typing.Literal:
            if value in typing.get_args(option_type) and not isinstance(value, bool):
                return value
            continue
        base = typing.get_origin(option_type) or option_type
        if base is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if base is float and isinstance(value, str):  # YAML 1.1 reads 5e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
        if base is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if base is typing.Any:
            return value
        if isinstance(base, type) and isinstance(value, base) and not (base is int and isinstance(value, bool)):
            return value
    raise UserError(f"{source}: field '{name}' must be {_type_names(options)}, got {value!r}")


def parse_string(hint, name: str, raw: str, source: str) -> Any:
    """A command-line string parsed by the field's declared type (not as YAML: `run #1` stays `run #1`)."""
    options = type_options(hint)
    if type(None) in options and raw.strip().lower() in ("null", "none", "~"):
        return None
    for option_type in options:
        base = typing.get_origin(option_type) or option_type
        if base is typing.Literal:
            if raw in typing.get_args(option_type):
                return raw
        elif base is str or base is typing.Any:
            return raw
        elif base is bool:
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
                value = load_yaml(raw)
            except (yaml.YAMLError, RecursionError):
                break
            if base is list and isinstance(value, str):
                value = [value]
            return check_value(hint, name, value, source)
    raise UserError(f"{source}: field '{name}' must be {_type_names(options)}, got {raw!r}")


def parse_typed(hint, name: str, value: Any, source: str) -> Any:
    """A string parsed by the type, anything else checked against it."""
    return parse_string(hint, name, value, source) if isinstance(value, str) else check_value(hint, name, value, source)


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def range_text(lo: float | None, hi: float | None) -> str:
    """"1 to 100000", ">= 1", "<= 1", or "" without bounds."""
    if lo is not None and hi is not None:
        return f"{lo} to {hi}"
    return f">= {lo}" if lo is not None else f"<= {hi}" if hi is not None else ""


def check_bounds(value: Any, lo: float | None, hi: float | None, what: str) -> None:
    """A number within [lo, hi] (and finite), or a one-line UserError naming `what`; None passes."""
    if (lo is None and hi is None) or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise UserError(f"{what} must be {range_text(lo, hi)}, got {value!r}")


def check_fields(config: Any) -> None:
    """Every `Literal` field of a config holds one of its allowed values and every bounded number is within
    its `min`/`max` (a one-line UserError naming the field and what it allows otherwise). Called from each
    config's `__post_init__`."""
    for f in dataclasses.fields(config):
        check_bounds(getattr(config, f.name), f.metadata.get("min"), f.metadata.get("max"),
                     f"{type(config).__name__}: field '{f.name}' ({flag_name(f)})")
    for name, hint in field_types(type(config)).items():
        allowed = allowed_values(hint)
        value = getattr(config, name)
        if allowed is not None and value not in allowed and not (value is None and type(None) in type_options(hint)):
            raise UserError(f"{type(config).__name__}: field '{name}' must be one of "
                            f"{', '.join(map(str, allowed))}, got {value!r}")


def _unknown_field(cls: type, key: str, where: str) -> UserError:
    replaced = getattr(cls, "REPLACED_FIELDS", {})
    if key in replaced:
        return UserError(f"{where}: field '{key}' was replaced: use {replaced[key]}")
    known = ", ".join(sorted(f.name for f in dataclasses.fields(cls)))
    return UserError(f"{where}: unknown field '{key}' (known: {known})")


def parse_overrides(cls: type, overrides: list[str], flag: str = "--set") -> dict[str, Any]:
    """`key=value` items as {field: value}, each key a field of `cls` and each value parsed by its type and
    within its bounds (a one-line UserError naming the item otherwise)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = field_types(cls)
    values = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"{flag} {item!r}: expected key=value")
        if key not in fields:
            raise _unknown_field(cls, key, f"{flag} {key}")
        values[key] = parse_string(hints[key], key, raw, f"{flag} {key}")
        check_bounds(values[key], fields[key].metadata.get("min"), fields[key].metadata.get("max"), f"{flag} {key}")
    return values


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                values_from_cli: dict[str, Any] | None = None) -> T:
    """Build `cls` from an optional YAML file, then `key=value` overrides (each value parsed by the field's
    declared type), then typed command-line options (`values_from_cli`, already parsed by argparse)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = field_types(cls)
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = load_yaml(Path(path).read_text(encoding="utf-8")) or {}
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
                raise _unknown_field(cls, key, str(path))
            values[key] = check_value(hints[key], key, value, str(path))
    values.update(parse_overrides(cls, overrides or []))
    for key, value in (values_from_cli or {}).items():
        if value is not None:
            value = check_value(hints[key], key, value, flag_name(fields[key]))
            # key=value flags add to the config file's mapping (a --backend-arg beside a YAML backend_options)
            values[key] = {**values[key], **value} if isinstance(value, dict) and isinstance(values.get(key), dict) \
                else value
    missing = [f"{f.name} ({flag_name(f)})" for f in fields.values() if required(f) and f.name not in values]
    if missing:
        raise UserError(f"{path or 'config'}: missing required field(s): {', '.join(missing)}")
    return cls(**values)


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)
