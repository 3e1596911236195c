"""Fuzz the readers with mutated real records (OASST trees, ShareGPT conversations, shipped scenario files,
transcripts): every outcome is success, a clean skip under --skip-bad, or exit 2 with one line naming the
file. Seeded and bounded; no model is loaded."""

import copy
import gzip
import json
import random
from pathlib import Path

import pytest
import yaml
from conftest import OASST_EN, needs_shared

from userlm.io import UserError
from workflows.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEEP = "__DEEP__"
VALUES = [None, 5, -1, 0, 2.5, 1e308, True, "false", "", "x" * 300, [], {}, ["a", 1], {"a": [1]}, DEEP]


pytestmark = pytest.mark.usefixtures("keep_thread_settings")


def _paths(obj, prefix=()):
    """Every (container, key) in a JSON value, so a mutation can hit any field at any depth."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((obj, k))
            out += _paths(v)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append((obj, i))
            out += _paths(v)
    return out


def mutate_value(rng: random.Random, record):
    record = copy.deepcopy(record)
    container, key = rng.choice(_paths(record))
    action = rng.random()
    if action < 0.2 and isinstance(container, dict):
        del container[key]
    elif action < 0.3 and isinstance(container, dict):
        container[rng.choice(["extra", "replies", "role", "lang", "deleted", "from", "value"])] = rng.choice(VALUES)
    elif action < 0.35 and isinstance(container, list):
        container.append(copy.deepcopy(container[key]))
    else:
        container[key] = rng.choice(VALUES)
    return record


def mutate_text(rng: random.Random, text: str) -> bytes:
    data = text.encode()
    i = rng.randrange(len(data) + 1)
    action = rng.randrange(5)
    if action == 0:
        return data[:i] + bytes([rng.choice([0xFF, 0xC3, 0x80, 0xFE, 0x00])]) + data[i:]  # not UTF-8 / NUL
    if action == 1:
        return data[:i] + data[i + rng.randint(1, 8):]  # delete a few bytes
    if action == 2:
        return data[:i] + rng.choice([b"{", b"}", b"[", b"]", b",", b'"', b"\\", b":", b"\n"]) + data[i:]
    if action == 3:
        return data[:i] + b"[" * 3000 + b"]" * 3000 + data[i:]
    return data[:i]  # truncate


def deep(text: str, style: str = "json") -> str:
    return text.replace(f'"{DEEP}"', "[" * 3000 + "]" * 3000) if style == "json" else \
        text.replace(DEEP, "[" * 3000 + "]" * 3000)


def check_cli(capsys, tmp_path, path: Path, skip_bad: bool, n: int) -> tuple[int, dict | None]:
    out = tmp_path / f"out{n}"
    code = main(["data", "prepare", "--source", str(path), "--out", str(out), *(["--skip-bad"] if skip_bad else [])])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    if code == 0:
        manifest = json.loads((out / "manifest.json").read_text())
        return code, manifest["sources"][0]
    assert code == 2, (code, err)
    assert len(err) == 1 and err[0].startswith("error: ") and "unexpected" not in err[0], (path.read_bytes()[:300], err)
    assert path.name in err[0] or "no examples" in err[0], err
    assert not out.exists()
    return code, None


def run_file_fuzz(capsys, tmp_path, records, write, mutations: int, seed: int, name: str):
    rng = random.Random(seed)
    codes = {0: 0, 2: 0}
    (tmp_path / name).write_text(write(records))
    baseline = check_cli(capsys, tmp_path, tmp_path / name, False, -1)[1]["trees"]
    for n in range(mutations):
        mutated = list(records)
        if n % 2 == 0:  # a field of the middle record gets a wrong type, goes missing, or nests 3,000 deep
            mutated[1] = mutate_value(rng, records[1])
            data = write(mutated).encode("utf-8", errors="surrogatepass")
        else:  # raw bytes: not UTF-8, broken JSON, cut off, deep brackets
            data = mutate_text(rng, write(mutated))
        path = tmp_path / name
        path.write_bytes(data)
        skip_bad = n % 3 == 0
        code, source = check_cli(capsys, tmp_path, path, skip_bad, n)
        codes[code] += 1
        if code == 0 and n % 2 == 0:  # the structure is intact: the records around the bad one are all kept
            assert source["trees"] + source["duplicate_trees"] >= baseline - 1, source
            if not skip_bad:
                assert source["skipped_records"] == 0
    assert codes[0] > 0 and codes[2] > 0, codes  # the fuzz reached both outcomes


def _sharegpt_records(n=3):
    from userlm.data.sharegpt import embedded_sharegpt_path

    with open(embedded_sharegpt_path(), encoding="utf-8") as f:
        head = f.read(400_000)
    decoder, pos, records = json.JSONDecoder(), head.index("{"), []
    while len(records) < n:
        obj, pos = decoder.raw_decode(head, pos)
        records.append({"id": obj["id"], "conversations": obj["conversations"][:4]})
        pos = head.index("{", pos)
    return records


def test_fuzz_sharegpt_reader(tmp_path, capsys):
    run_file_fuzz(capsys, tmp_path, _sharegpt_records(), lambda rs: deep(json.dumps(rs, indent=1)),
                  mutations=120, seed=1, name="share.json")


@needs_shared
def test_fuzz_oasst_tree_reader(tmp_path, capsys):
    lines = OASST_EN.read_text(encoding="utf-8").splitlines()[:3]
    trees = [json.loads(line) for line in lines]
    write = lambda ts: "".join(deep(json.dumps(t)) + "\n" for t in ts)
    run_file_fuzz(capsys, tmp_path, trees, write, mutations=120, seed=2, name="o.trees.jsonl")
    # the same trees in a flat message table, and gzip files cut off or faked
    rng = random.Random(3)
    gz = tmp_path / "o.trees.jsonl.gz"
    whole = gzip.compress(write(trees).encode())
    for n in range(20):
        gz.write_bytes(whole[: rng.randrange(len(whole))] if n % 2 else write(trees).encode())
        check_cli(capsys, tmp_path, gz, n % 4 == 1, 1000 + n)


@needs_shared
def test_fuzz_flat_message_table(tmp_path, capsys):
    rows = []
    for line in OASST_EN.read_text(encoding="utf-8").splitlines()[:2]:
        tree = json.loads(line)
        stack = [(tree["prompt"], None)]
        while stack:
            m, parent = stack.pop()
            rows.append({k: v for k, v in m.items() if k != "replies"} | {
                "parent_id": parent, "message_tree_id": tree["message_tree_id"]})
            stack += [(r, m["message_id"]) for r in m.get("replies") or []]
    rng = random.Random(4)
    path = tmp_path / "rows.jsonl"
    for n in range(60):
        mutated = list(rows)
        i = rng.randrange(len(rows))
        mutated[i] = mutate_value(rng, rows[i])
        text = "".join(deep(json.dumps(r)) + "\n" for r in mutated)
        path.write_bytes(text.encode() if n % 2 else mutate_text(rng, text))
        check_cli(capsys, tmp_path, path, n % 3 == 0, 2000 + n)


def test_fuzz_scenario_files(tmp_path):
    from userlm.scenarios import load_scenarios

    originals = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "scenarios").rglob("*.yaml"))[:5]]
    rng = random.Random(5)
    path = tmp_path / "s.yaml"
    outcomes = {"ok": 0, "error": 0}
    for n in range(200):
        scenario = originals[n % len(originals)]
        if n % 2 == 0:
            data = deep(yaml.safe_dump(mutate_value(rng, scenario), allow_unicode=True), "yaml").encode()
        else:
            data = mutate_text(rng, yaml.safe_dump(scenario, allow_unicode=True))
        path.write_bytes(data)
        try:
            loaded = load_scenarios(path)
        except UserError as e:
            message = str(e)
            assert "\n" not in message and message.startswith(str(path)), message
            outcomes["error"] += 1
            continue
        assert loaded and all(s.samples >= 1 and s.max_turns >= 1 and isinstance(s.id, str) for s in loaded)
        outcomes["ok"] += 1
    assert outcomes["ok"] > 0 and outcomes["error"] > 0, outcomes


def test_fuzz_transcripts_and_run_json(tmp_path):
    from userlm.records import load_run

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    info = {"kind": "userlm-simulation-run", "identity": {}, "total_conversations": 2, "finished_at": "now",
            "config": {"user": "u", "assistant": "a"}}
    records = [{"scenario_id": "s", "sample": i, "stop_reason": "max_turns", "seed": 1,
                "turns": [{"role": "user", "text": "hi there"}, {"role": "assistant", "text": "hello"}]}
               for i in range(2)]
    rng = random.Random(6)
    for n in range(150):
        run_json, lines = json.dumps(info), [json.dumps(r) for r in records]
        target = rng.randrange(3)
        if target == 0:
            run_json = deep(json.dumps(mutate_value(rng, info))) if n % 2 else mutate_text(rng, run_json).decode(
                "utf-8", "surrogateescape")
        else:
            lines[target - 1] = deep(json.dumps(mutate_value(rng, records[target - 1]))) if n % 2 else \
                mutate_text(rng, lines[target - 1]).decode("utf-8", "surrogateescape")
        (run_dir / "run.json").write_bytes(run_json.encode("utf-8", "surrogateescape"))
        (run_dir / "transcripts.jsonl").write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
        try:
            load_run(run_dir)
        except UserError as e:
            assert "\n" not in str(e) and str(run_dir) in str(e), str(e)


@pytest.mark.parametrize("seed", [7])
def test_fuzz_is_deterministic(seed):
    a, b = random.Random(seed), random.Random(seed)
    assert mutate_text(a, "hello world") == mutate_text(b, "hello world")
