"""Command-line flags made from a config dataclass: one option per field, its help the field's
`metadata["help"]`, its type the field's declared type (`Literal` values become argparse choices), so the
flags, the YAML keys and `--set` never drift apart. `config_from_args` builds the config back from them."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from userlm.config import (
    allowed_values,
    field_types,
    flag_name,
    load_config,
    parse_string,
    range_text,
    required,
    type_options,
)
from userlm.io import UserError


def base_type(hint):
    """The container or class a field's value is (its first alternative's): dict for `dict[str, int] | None`."""
    first = type_options(hint)[0]
    return typing.get_origin(first) or first


def _default_text(f: dataclasses.Field) -> str:
    bounds = range_text(f.metadata.get("min"), f.metadata.get("max"))
    return _default_value_text(f)[:-1] + f"; {bounds})" if bounds and _default_value_text(f) else \
        f" ({bounds})" if bounds else _default_value_text(f)


def _default_value_text(f: dataclasses.Field) -> str:
    if required(f):
        return " (required)"
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if value in (None, "", [], {}) or isinstance(value, bool):
        return ""
    text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return f" (default: {text if len(text) <= 60 else text[:57] + '...'})"


def _parser_for(hint, name: str, flag: str):
    """An argparse `type`: the string parsed by the field's type; a bad value is argparse's own usage error."""
    def parse(raw: str) -> Any:
        try:
            return parse_string(hint, name, raw, flag)
        except UserError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = name  # argparse names the type in its messages
    return parse


def add_config_flags(parser: argparse.ArgumentParser, cls: type, positional: tuple[str, ...] = ()) -> None:
    """One option per field of `cls` (a positional argument for the names in `positional`). Every default is
    None, so a flag left out does not override the YAML config or `--set`; a field without a default is required
    by the loader (it may come from `--config`), not by argparse."""
    hints = field_types(cls)
    for f in dataclasses.fields(cls):
        help_text = f.metadata.get("help", "")
        if not help_text:
            raise TypeError(f"{cls.__name__}.{f.name} has no help text (metadata['help'])")
        help_text = (help_text + ("" if f.name in positional else _default_text(f))).replace("%", "%%")
        hint, flag, base, metavar = hints[f.name], flag_name(f), base_type(hints[f.name]), f.metadata.get("metavar")
        if f.name in positional:
            parser.add_argument(f.name, help=help_text)
        elif base is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif base is list:
            parser.add_argument(flag, dest=f.name, action="append", help=help_text,
                                metavar=metavar or f.name.upper().rstrip("S") or "VALUE")
        elif base is dict:
            parser.add_argument(flag, dest=f.name, action="append", metavar=metavar or "KEY=VALUE", help=help_text)
        else:
            choices = allowed_values(hint)
            parser.add_argument(flag, dest=f.name, choices=choices, help=help_text,
                                metavar=None if choices else metavar or f.name.upper(),
                                type=None if choices else _parser_for(hint, f.name, flag))


def _key_values(cls: type, name: str, items: list[str]) -> dict:
    """`KEY=VALUE` items as a dict, each value parsed by the dict's declared value type (strings where it has
    none: backend options are typed later, by the backend that takes them)."""
    value_type = (typing.get_args(type_options(field_types(cls)[name])[0]) or (str, str))[1]
    flag = flag_name(next(f for f in dataclasses.fields(cls) if f.name == name))
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key] = parse_string(value_type, name, raw, f"{flag} {key}")
    return out


def config_from_args(cls: type, args: argparse.Namespace, **fixed: Any):
    """The config from `--config` YAML, then `--set`, then the flags `add_config_flags` made (and `fixed`)."""
    hints = field_types(cls)
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is not None and base_type(hints[f.name]) is dict:
            value = _key_values(cls, f.name, value)
        values[f.name] = value
    values.update(fixed)
    return load_config(cls, getattr(args, "config", None), getattr(args, "set", None), values)


def add_config_file_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """`--config FILE` and `--set KEY=VALUE`; no `--set` where a field of `cls` is that flag (compare's
    simulation overrides): `--config` then sets the command's own fields."""
    parser.add_argument("--config", help=f"YAML file of {cls.__name__} fields (the flags above override it)")
    if "--set" not in map(flag_name, dataclasses.fields(cls)):
        parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                            help="override a config field, the value parsed by its type (repeatable)")
