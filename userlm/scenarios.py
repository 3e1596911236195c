"""Scenario files (YAML): one scenario a file, or a list of them; a folder is read recursively."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from userlm.backends.base import Sampling
from userlm.config import check_bounds, check_value
from userlm.io import UserError, sha256_text
from userlm.yamlio import load_yaml

# Upper bounds of a scenario's (and the --samples/--max-turns overrides') conversation count and length: far
# above any real run (the job plan is built in memory: 10^12 samples took 3 GB in 19 s before this bound).
MAX_SAMPLES = 100_000
MAX_TURNS = 1_000


@dataclass(frozen=True)
class Scenario:
    id: str
    description: str
    opening: str = ""  # the assistant's first message; empty = the user opens
    intent: str = ""  # what the user wants, revealed bit by bit; given to user models trained with it, and
    persona: str = ""  # to prompted baselines
    assistant_system: str = ""
    max_turns: int = 8  # user turns at most (a safety cap: the user model ends a conversation when it chooses)
    samples: int = 4  # conversations per scenario
    user_sampling: Sampling = field(default_factory=Sampling)
    assistant_sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.7, max_new_tokens=128))
    language: str = "en"
    tags: tuple = ()
    source: str = ""  # file it came from (not a YAML field)


# The type each YAML field is read as: the Scenario field's own type, checked by the same code as the configs
# (userlm.config.check_value); samplings are mappings and tags a list in YAML.
_YAML_TYPES = {"user_sampling": dict, "assistant_sampling": dict, "tags": list}
_REQUIRED = ("id", "description")


def _yaml_types() -> dict:
    hints = typing.get_type_hints(Scenario)
    return {name: _YAML_TYPES.get(name, hint) for name, hint in hints.items() if name != "source"}


def _sampling(value: dict, where: str) -> Sampling:
    known = {f.name: f.type for f in fields(Sampling)}
    for key, v in value.items():
        if key not in known:
            raise UserError(f"{where}.{key}: unknown sampling field (known: {', '.join(known)})")
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise UserError(f"{where}.{key}: must be a number, got {v!r}")
    s = Sampling(**{k: (int(v) if k == "max_new_tokens" else float(v)) for k, v in value.items()})
    if s.temperature < 0 or not 0 < s.top_p <= 1 or s.max_new_tokens < 1:
        raise UserError(f"{where}: need temperature >= 0, 0 < top_p <= 1, max_new_tokens >= 1")
    return s


def parse_scenario(obj, where: str) -> Scenario:
    if not isinstance(obj, dict):
        raise UserError(f"{where}: a scenario must be a mapping")
    for key in _REQUIRED:
        if key not in obj:
            raise UserError(f"{where}: missing required field '{key}'")
    types = _yaml_types()
    values = {}
    for key, value in obj.items():
        if key not in types:
            raise UserError(f"{where}: unknown field '{key}' (known: {', '.join(types)})")
        values[key] = "" if value is None and types[key] is str else check_value(types[key], key, value, where)
    values["id"] = values["id"].strip()
    if not values["id"]:
        raise UserError(f"{where}: field 'id' is empty")
    for key in ("user_sampling", "assistant_sampling"):
        if key in values:
            values[key] = _sampling(values[key], f"{where}: {key}")
    check_bounds(values.get("max_turns"), 1, MAX_TURNS, f"{where}: field 'max_turns'")
    check_bounds(values.get("samples"), 1, MAX_SAMPLES, f"{where}: field 'samples'")
    if not all(isinstance(t, str) for t in values.get("tags", ())):
        raise UserError(f"{where}: field 'tags' must be a list of strings")
    values["tags"] = tuple(values.get("tags", ()))
    return Scenario(**values, source=where.split(":")[0])


def load_scenarios(path: str | Path) -> list[Scenario]:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: scenario file or folder not found")
    files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")) if path.is_dir() else [path]
    if not files:
        raise UserError(f"{path}: no .yaml scenario files")
    scenarios, seen = [], {}
    for file in files:
        data = file.read_bytes()
        try:
            loaded = load_yaml(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            raise UserError(f"{file}:{line}: not UTF-8 text") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            detail = " ".join(str(getattr(e, "problem", None) or e).split())[:200]
            raise UserError(f"{file}{line}: invalid YAML ({detail})") from None
        except RecursionError:
            raise UserError(f"{file}: YAML nested too deeply") from None
        items = loaded if isinstance(loaded, list) else [loaded]
        if not items:
            raise UserError(f"{file}: holds an empty list; a scenario file needs at least one scenario")
        for i, item in enumerate(items):
            scenario = parse_scenario(item, f"{file}" if len(items) == 1 else f"{file}: item {i}")
            if scenario.id in seen:
                raise UserError(f"{file}: duplicate scenario id '{scenario.id}' (also in {seen[scenario.id]})")
            seen[scenario.id] = file
            scenarios.append(scenario)
    return scenarios


def scenarios_hash(scenarios: list[Scenario]) -> str:
    text = repr(sorted((repr({**s.__dict__, "source": ""}) for s in scenarios)))
    return sha256_text(text)
