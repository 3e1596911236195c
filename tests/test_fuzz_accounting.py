"""Issue 27: a seeded property test of the readers under structural damage (flat message tables, OASST trees,
ShareGPT): whatever the damage, every input record is in a yielded tree or counted by reason, or the read
stops with a one-line error naming the file and the record. Tiny generated inputs; a few seconds."""

import json
import random
import re
from collections import Counter

import pytest

from userlm.data.oasst import jsonl_rows, read_oasst_trees, trees_from_message_rows
from userlm.data.prepare import PrepareConfig, threads
from userlm.data.sharegpt import read_sharegpt
from userlm.data.trees import ReadReport

ROLES = ("prompter", "assistant")


def size(msg) -> int:
    n, stack = 0, [msg]
    while stack:
        n += 1
        stack += stack.pop().children
    return n


def random_tree(rng, tree_id, n):
    """Rows of one tree of n messages: each row's parent an earlier message of the other role."""
    rows = [{"message_id": f"{tree_id}-0", "parent_id": None, "message_tree_id": tree_id, "role": "prompter"}]
    for i in range(1, n):
        parent = rng.choice(rows)
        rows.append({"message_id": f"{tree_id}-{i}", "parent_id": parent["message_id"], "message_tree_id": tree_id,
                     "role": ROLES[1 - ROLES.index(parent["role"])]})
    for r in rows:
        r.update(text=f"text of {r['message_id']}", lang="en", deleted=rng.random() < 0.1, review_result=True)
    return rows


def damage_rows(rng, rows):
    rows = [dict(r) for r in rows]
    for _ in range(rng.randint(1, 3)):
        r, other = rng.choice(rows), rng.choice(rows)
        kind = rng.randrange(8)
        if kind == 0:
            r["message_id"] = other["message_id"]  # a repeated id (possibly in another tree)
        elif kind == 1:
            r["parent_id"] = r["message_id"]  # its own parent
        elif kind == 2:
            r["parent_id"], other["parent_id"] = other["message_id"], r["message_id"]  # a cycle (or a self-parent)
        elif kind == 3:
            r["parent_id"] = "gone"  # an orphan (its parent filtered out)
        elif kind == 4:
            r["role"] = rng.choice(ROLES)  # maybe a reply of the same role
        elif kind == 5:
            r["parent_id"] = other["message_id"]  # maybe a parent in another tree
        elif kind == 6:
            r["text"] = rng.choice([None, 5, ["x"]])  # malformed
        else:
            rows.remove(r)  # a row missing from the table: its replies are orphans
    rng.shuffle(rows)
    return rows


def check(read, expected: int, skip_bad: bool, name: str):
    """Run a reader; return (trees, report) when it succeeds, None for a one-line error naming file + record."""
    from userlm.io import UserError

    report = ReadReport()
    try:
        trees = read(report)
    except UserError as e:
        assert name in str(e) and "\n" not in str(e), e
        assert any(w in str(e) for w in ("row ", "record ", f"{name}:")), e
        return None
    from userlm.data import trees as trees_module

    # (before issue 27 the report had no `dropped`: its counters then were skipped records and a cut-off tail)
    old = report.skipped_records + bool(report.dropped_bytes)
    dropped = getattr(report, "dropped", {"old": old} if old else {})
    counted = sum(dropped.values()) + report.empty_records
    assert len(trees) <= expected
    if not skip_bad:
        assert set(dropped) <= set(getattr(trees_module, "TOLERATED", ())), dropped
    return trees, report, counted


def check_threads(trees):
    """prepare's threads() accounts for every message of every tree it is given."""
    for tree in trees:
        for branches in ("all", "best"):
            dropped = Counter()
            paths = threads(tree, PrepareConfig(branches=branches), dropped)
            kept = {id(m) for p in paths for m in p}
            assert len(kept) + sum(dropped.values()) == size(tree.root), (branches, dropped)


@pytest.mark.parametrize("seed", range(4))
def test_flat_tables_account_for_every_row(tmp_path, seed):
    rng = random.Random(seed)
    outcomes = Counter()
    for n in range(60):
        rows = damage_rows(rng, [r for t in range(3) for r in random_tree(rng, f"t{t}", rng.randint(1, 8))])
        path = tmp_path / f"m{n}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        skip_bad = n % 2 == 0
        result = check(lambda rep: list(trees_from_message_rows(jsonl_rows(path, rep, skip_bad), str(path), rep,
                                                                skip_bad)), len(rows), skip_bad, path.name)
        outcomes[result is not None] += 1
        if result is None:
            continue
        trees, report, counted = result
        assert sum(size(t.root) for t in trees) + counted == len(rows), (rows, report)
        check_threads(trees)
    assert outcomes[True] and outcomes[False], outcomes  # both outcomes reached


def nest(rows_of_tree):
    by_id = {r["message_id"]: {**r, "replies": []} for r in rows_of_tree}
    root = None
    for r in by_id.values():
        if r["parent_id"] is None:
            root = r
        else:
            by_id[r["parent_id"]]["replies"].append(r)
    return {"message_tree_id": root["message_tree_id"], "prompt": root}


@pytest.mark.parametrize("seed", range(3))
def test_oasst_tree_files_account_for_every_line(tmp_path, seed):
    rng = random.Random(100 + seed)
    outcomes = Counter()
    for n in range(40):
        trees = [nest(random_tree(rng, f"t{t}", rng.randint(1, 8))) for t in range(4)]
        lines = [json.dumps(t) for t in trees]
        k = rng.randrange(len(lines))
        damage = rng.randrange(4)
        if damage == 0:  # a reply of the same role somewhere below the root
            msgs = [m for m in _walk(trees[k]["prompt"]) if m["replies"]]
            if msgs:
                m = rng.choice(msgs)
                m["replies"][0]["role"] = m["role"]
            lines[k] = json.dumps(trees[k])
        elif damage == 1:
            lines[k] = lines[k][: rng.randrange(1, len(lines[k]))]  # a cut line (mid-file or the last)
        elif damage == 2:
            lines[k] = lines[k].replace('"text"', '"txet"', 1)  # a missing field
        else:
            lines.insert(k, "")  # a blank line: not a record
        path = tmp_path / f"o{n}.trees.jsonl"
        path.write_text("".join(line + "\n" for line in lines))
        skip_bad = n % 2 == 0
        result = check(lambda rep: list(read_oasst_trees(path, rep, skip_bad)), len(trees), skip_bad, path.name)
        outcomes[result is not None] += 1
        if result is not None:
            got, _report, counted = result
            assert len(got) + counted == len(trees)
            check_threads(got)
    assert outcomes[True] and outcomes[False], outcomes


def _walk(m):
    yield m
    for r in m["replies"]:
        yield from _walk(r)


def _sharegpt(rng, n):
    return [{"id": f"r{i}", "conversations": [{"from": f, "value": f"{f} says {i}.{j} " + "w" * rng.randrange(5)}
                                              for j, f in enumerate(["human", "gpt"] * rng.randint(1, 2))]}
            for i in range(n)]


@pytest.mark.parametrize("seed", range(4))
def test_sharegpt_files_account_for_every_record(tmp_path, seed):
    rng = random.Random(200 + seed)
    outcomes = Counter()
    for n in range(60):
        records = _sharegpt(rng, rng.randint(2, 8))
        text = json.dumps(records, indent=rng.choice([None, 1]))
        starts = [m.start() for m in re.finditer(r'\{\s*"id"', text)]
        i = rng.randrange(starts[0], len(text))
        damage = rng.randrange(6)
        if damage == 0:
            text = text[:i]  # cut off: the records starting before the cut are the input
            expected = sum(s < i for s in starts)
        else:
            expected = len(records)
            if damage == 1:
                text = text[:i] + text[i + 1:]  # a byte gone (a quote, a bracket, a comma...)
            elif damage == 2:
                text = text[:i] + rng.choice('"{}:,\\') + text[i:]  # a stray character
            elif damage == 3:
                k = rng.randrange(len(records))
                text = re.sub(rf'"r{k}",(\s*)"conversations": \[', rf'"r{k}",\1"conversations": 5, "x": [', text)
            elif damage == 4:
                q = [j for j in range(len(text)) if text[j] == '"']
                j = rng.choice(q)
                text = text[:j] + text[j + 1:]  # a missing quote anywhere
            else:
                text = text[:i] + "\n" + text[i:]
        path = tmp_path / f"s{n}.json"
        path.write_text(text)
        skip_bad = n % 2 == 0
        result = check(lambda rep: list(read_sharegpt(path, rep, skip_bad)), expected, skip_bad, path.name)
        outcomes[result is not None] += 1
        if result is not None:
            got, report, counted = result
            assert len(got) + counted == expected, (damage, text, [t.tree_id for t in got], report)
    assert outcomes[True] and outcomes[False], outcomes
