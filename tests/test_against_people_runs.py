"""`userlm evaluate RUN --reference DIR` scores a run against people like for like: a replay run against its own
people (points), a self-play run against as many real conversations cut to its positions and word budget."""

import json

import pytest

from tests.test_against_people import DEGENERATE, replay_record


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from userlm.data.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("people") / "data"
    prepare(PrepareConfig(sources=["sharegpt"], out=str(out), max_trees_per_source=600))
    return out


def write_run(path, records, mode=None):
    path.mkdir()
    info = {"config": {"user": "prompted:x", "assistant": "x"}, "finished_at": "now",
            "total_conversations": len(records), **({"mode": mode} if mode else {})}
    (path / "run.json").write_text(json.dumps(info))
    (path / "transcripts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_evaluate_scores_a_replay_run_against_its_own_people(tmp_path, data):
    from evaluators.run import evaluate_run
    from userlm.data.prepare import read_split

    conversations = [[{"role": m["role"], "text": m["content"]} for m in ex["messages"]]
                     for ex in read_split(data, "test")][:20]
    records = [replay_record(i, msgs, DEGENERATE["ok spam"]) for i, msgs in enumerate(conversations)]
    run = write_run(tmp_path / "replay", records, mode="replay")
    report = evaluate_run(str(run), reference=str(data), evaluators="people,behaviour")
    m = report["metrics"]
    assert m["discriminability"]["run"]["value"] >= 0.95
    assert m["discriminability_people"]["run"]["value"] is not None
    assert m["end_f1_always"]["run"]["value"] is not None and "end_f1" in m
    assert report["against_people"]["source"] == "replay"
    # Every metric's human row is the same people in the same contexts.
    people_turns = sum(len([p for p in r["points"] if p["real"] is not None]) for r in records)
    assert sum(report["turn_words_reference"]) == sum(len(p["real"].split()) for r in records
                                                      for p in r["points"] if p["real"] is not None)
    assert len(report["turn_words_reference"]) == people_turns
    header = (run / "metrics.md").read_text().splitlines()[2]
    assert header.startswith("| run | discriminability | discriminability_people |")


def test_evaluate_compares_a_self_play_run_with_people_cut_alike(tmp_path, data):
    from evaluators.run import evaluate_run

    records = [{"scenario_id": f"s{i % 4}", "sample": i // 4, "stop_reason": "max_turns", "seed": i,
                "turns": [t for k in range(3) for t in (
                    {"role": "user", "text": DEGENERATE["ok spam"](k, ""), "tokens": 2, "truncated": k == 2},
                    {"role": "assistant", "text": "Sure, here is more."})]} for i in range(16)]
    run = write_run(tmp_path / "selfplay", records)
    report = evaluate_run(str(run), reference=str(data), evaluators="people,behaviour")
    m, card = report["metrics"], report["against_people"]
    assert card["source"] == "reference" and card["budget_words"] == 2  # the run's capped turn: "ok thanks"
    assert m["discriminability"]["run"]["value"] >= 0.95 and m["discriminability"]["run"]["n"] == 16
    assert "end_f1" not in m  # a self-play run records no real ends: the termination evaluator's job
    # The human row: 16 real conversations, at most 3 turns each, each cut to 2 words.
    assert len(report["turn_words_reference"]) <= 48 and max(report["turn_words_reference"]) <= 2
    assert m["mean_user_turns"]["reference"]["n"] == 16


def test_a_self_play_run_without_people_says_why():
    from evaluators.against_people import evaluate

    units = [{"id": "s#0", "user_turns": ["hi"], "truncated": [False], "ended_by_user": False}]
    metrics, card = evaluate(units, None)
    assert metrics["discriminability"]["run"]["value"] is None and "--reference" in card["note"]


def test_compare_reports_for_each_side_what_evaluate_reports_for_that_run_alone(tmp_path, data):
    """Like-for-like people are paired by position and the folds follow the order: compare (its pairing order)
    and evaluate (the run's file order) read one order (like_for_like.canonical), so one number per run. On the
    old code the demo's run read 0.570 in evaluate and 0.758 in compare."""
    from evaluators import metrics as M
    from evaluators.against_people import evaluate
    from evaluators.reference import transcript_units
    from userlm.data.prepare import read_split
    from userlm.records import load_run
    from workflows.compare import metric_row, paired_units, prepare_against_people

    people = [[m["content"] for m in ex["messages"] if m["role"] == "user"] for ex in read_split(data, "train")]

    def run(name, offset, spam_every):  # people's turns of other conversations, every k-th user a spammer
        keys = [(s, i) for s in ("s-b", "s-a") for i in range(12)]  # file order: not the sorted one
        records = [{"scenario_id": s, "sample": i, "stop_reason": "max_turns", "seed": i, "turns": [
            t for k, text in enumerate((people[offset + n] + ["and?"])[:2]) for t in (
                {"role": "user", "text": "ok thanks" if n % spam_every == 0 else text, "tokens": 9, "truncated": False},
                {"role": "assistant", "text": f"Sure, here is part {k}."})]} for n, (s, i) in enumerate(keys)]
        return write_run(tmp_path / name, records)

    runs = [run("base", 0, 5), run("cand", 100, 3)]
    alone = [evaluate(transcript_units(load_run(r)[1]), str(data))[0]["discriminability"]["run"]["value"]
             for r in runs]
    base, cand = paired_units(runs)
    prepare_against_people(base, cand, str(data))
    row = metric_row("discriminability", {"direction": "lower", "margin": 0.05}, None, base, cand, [], M.Inputs())
    assert [row["baseline"], row["candidate"]] == pytest.approx(alone)
    assert all(0.5 < v < 1 for v in alone)  # neither chance nor told apart every time: the pairing matters


def test_the_people_control_of_a_replay_with_intents_draws_other_people_with_intents(tmp_path, data):
    """A --with-intent replay's people are conversations whose intent was written and passed its checks, not a
    random sample: the control's other people are drawn from such conversations too (like for like)."""
    import shutil

    from evaluators import against_people
    from evaluators.reference import transcript_units
    from userlm.data.prepare import read_split

    shutil.copytree(data, tmp_path / "data")
    examples = read_split(data, "test")
    trees = sorted({ex["tree_id"] for ex in examples})
    with_intent = {ex["id"] for ex in examples if trees.index(ex["tree_id"]) % 3}  # two trees in three
    (tmp_path / "data" / "intents.jsonl").write_text("".join(json.dumps(
        {"example_id": i, "split": "test", "key": i, "writer": "w", "intent": "You want help.", "flags": []}) + "\n"
        for i in sorted(with_intent)) + json.dumps({"example_id": next(ex["id"] for ex in examples if ex["id"] not in with_intent), "split": "test", "key": "k",
                                                    "writer": "w", "intent": "You copy.", "flags": ["copied"]}) + "\n")
    replayed = [ex for ex in examples if ex["id"] in with_intent][:6]
    records = [{**replay_record(i, [{"role": m["role"], "text": m["content"]} for m in ex["messages"]],
                                DEGENERATE["ok spam"]), "conversation_id": ex["id"], "scenario_intent": "You want help."}
               for i, ex in enumerate(replayed)]
    units = transcript_units(records)
    others = against_people.reference_pool_units(units, str(tmp_path / "data"), 6)
    assert len(others) == 6 and all(r["id"] in with_intent for r in others)  # never a flagged or missing intent
    assert not {r["id"] for r in others} & {ex["id"] for ex in replayed}
    card = against_people.prepare(units, str(tmp_path / "data"))["info"]
    assert card["people_control"].endswith("(with written intents, like the replayed ones)")
    # without intents on the run's conversations, the other people are any held-out conversations
    plain = transcript_units([{**r, "scenario_intent": None} for r in records])
    drawn = against_people.reference_pool_units(plain, str(tmp_path / "data"), 30)
    assert any(r["id"] not in with_intent for r in drawn)
