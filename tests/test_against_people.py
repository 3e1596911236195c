"""Judging the user model against people in the same contexts: discriminability (a classifier two-sample test)
with its controls, embedding MMD, end F1 from replay points, like-for-like references. Replay-format records
(CONTRACT.md) are built by hand from real ShareGPT conversations (the embedded file), the model's turns
replaced by a generator's."""

import numpy as np
import pytest

from evaluators import against_people as A
from evaluators import discriminability as D
from evaluators import distance, ends
from evaluators import like_for_like as L
from evaluators.reference import transcript_units


@pytest.fixture(scope="module")
def real():
    """The first 300 ShareGPT conversations that open with a person and hold at least two of their turns."""
    from userlm.data.sharegpt import embedded_sharegpt_path, read_sharegpt
    from userlm.data.trees import ReadReport

    out = []
    for tree in read_sharegpt(embedded_sharegpt_path(), ReadReport()):
        msgs, node = [], tree.root
        while node is not None:
            msgs.append({"role": node.role, "text": node.text})
            node = node.children[0] if node.children else None
        if msgs[0]["role"] == "user" and sum(m["role"] == "user" for m in msgs) >= 2:
            out.append(msgs)
        if len(out) == 300:
            return out
    return out


def replay_record(i: int, msgs: list[dict], generate, ended=None, person_ended=True) -> dict:
    """A replay record: each real user turn replaced by generate(index, real text); `ended(index)` says where the
    model ended instead (a decision point after an AI turn), the last point is after the last AI turn."""
    ended = ended or (lambda index: False)
    turns, points = [], []
    for index, m in enumerate(msgs):
        if m["role"] == "user":
            decision = index > 0
            gone = decision and ended(index)
            text = None if gone else generate(index, m["text"])
            points.append({"index": index, "real": m["text"], "generated": text, "ended": gone,
                           "person_ended": (False if person_ended is not None else None) if decision else None,
                           "decision": decision, "truncated": False, "tokens": 0})
            if text is not None:
                turns.append({"role": "user", "text": text, "tokens": 0, "truncated": False, "real": m["text"]})
        else:
            turns.append({"role": "assistant", "text": m["text"]})
    if msgs[-1]["role"] == "assistant":
        stop = ended(len(msgs))
        points.append({"index": len(msgs), "real": None, "generated": None if stop else "thanks", "ended": stop,
                       "person_ended": person_ended, "decision": True, "truncated": False, "tokens": 0})
    return {"scenario_id": "replay:test", "sample": i, "conversation_id": f"c{i}", "stop_reason": "replayed",
            "seed": i, "turns": turns, "real_turns": [{"role": m["role"], "text": m["text"]} for m in msgs],
            "points": points, "scenario_intent": None, "user_told_intent": False, "end_recorded": True}


def replay_units(conversations, generate, **kw) -> list[dict]:
    return transcript_units([replay_record(i, msgs, generate, **kw) for i, msgs in enumerate(conversations)])


DEGENERATE = {
    "ok spam": lambda index, real: ["ok", "?", "ok thanks"][index % 3],
    "one sentence": lambda index, real: "Can you tell me more about that?",
}


@pytest.mark.parametrize("name", DEGENERATE)
def test_a_degenerate_user_is_told_apart_from_people_in_the_same_contexts(real, name):
    units = replay_units(real[:120], DEGENERATE[name])
    metrics, card = A.evaluate(units, reference_dir=None)
    assert metrics["discriminability"]["run"]["value"] >= 0.95, metrics["discriminability"]
    assert metrics["discriminability"]["run"]["ci_low"] >= 0.9
    assert card["source"] == "replay" and card["discriminator"]["folds"] == 5


def test_people_vs_people_holds_chance_on_real_conversations(real):
    """The control on real ShareGPT people (two disjoint halves), and the main test fed another person's turns at
    the same positions (one other person a conversation): both CIs contain 0.5."""
    def user_turns(msgs):
        return [m["text"] for m in msgs if m["role"] == "user"]

    others, records = [msgs for msgs in real[120:]], []
    for i, msgs in enumerate(real[:120]):  # each conversation against another person with as many turns
        other = next((o for o in others if len(user_turns(o)) >= len(user_turns(msgs))), None)
        if other is None:
            continue
        others.remove(other)
        records.append(replay_record(i, msgs, lambda index, text, turns=user_turns(other): turns[index // 2]))
    assert len(records) >= 100
    metrics, _ = A.evaluate(transcript_units(records), reference_dir=None)
    for name in ("discriminability", "discriminability_people"):
        ci = metrics[name]["run"]
        assert ci["ci_low"] <= 0.5 <= ci["ci_high"], (name, ci)


def test_no_conversation_is_in_two_folds(real):
    units = replay_units(real[:60], DEGENERATE["ok spam"])
    L.attach_sides(units)
    _, _, labels, groups, _ = D._rows(units)
    folds = D.folds_of(labels, groups)
    seen = np.concatenate([groups[test] for _, test in folds])
    assert sorted(set(seen)) == list(range(len(units))) and len(seen) == len(groups)  # each turn tested once
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert set(labels[test]) == {0, 1}  # both sides of every conversation together


def test_mmd_is_near_zero_for_people_and_large_for_a_degenerate_user(real):
    from evaluators.cache import embed

    def encoder(texts):
        return embed(texts)

    convs = [msgs[:6] for msgs in real[:60]]  # three user turns at most: MiniLM on one core takes its time
    people, _ = A.evaluate(replay_units(convs, lambda index, text: text), None, embed=encoder)
    degenerate, _ = A.evaluate(replay_units(convs, DEGENERATE["ok spam"]), None, embed=encoder)
    control = people["embedding_mmd_people"]["run"]
    assert abs(control["value"]) < 0.02 and control["ci_low"] <= 0 <= control["ci_high"], control
    assert people["embedding_mmd"]["run"]["value"] == pytest.approx(0, abs=1e-6)  # the same turns
    assert degenerate["embedding_mmd"]["run"]["value"] > 0.3
    assert degenerate["embedding_mmd"]["run"]["ci_low"] > 10 * max(control["ci_high"], 0.01)


def test_mmd2_unbiased_matches_its_definition():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 4)), rng.normal(1.0, size=(25, 4))
    z = np.concatenate([x, y])
    d2 = ((z[:, None] - z[None]) ** 2).sum(-1)
    h = np.median(d2[~np.eye(55, dtype=bool)])
    k = np.exp(-d2 / h)
    kxx, kyy = k[:30, :30], k[30:, 30:]
    expected = ((kxx.sum() - 30) / (30 * 29) + (kyy.sum() - 25) / (25 * 24) - 2 * k[:30, 30:].mean())
    assert distance.mmd2_unbiased(x, y) == pytest.approx(expected)
    # With conversations: pairs within one conversation stay out of every term.
    cx, cy = np.arange(30) // 3, np.arange(25) // 5
    same = lambda a, b: a[:, None] != b[None, :]  # noqa: E731
    expected = (kxx[same(cx, cx)].mean() + kyy[same(cy, cy)].mean() - 2 * k[:30, 30:][same(cx, cy)].mean())
    assert distance.mmd2_unbiased(x, y, cx, cy) == pytest.approx(expected)


def test_end_f1_on_constructed_points_beside_the_always_end_baseline(real):
    # Every conversation has len(user turns) - 1 went-on points and one stop point after its last AI turn.
    convs = [msgs for msgs in real[:40] if msgs[-1]["role"] == "assistant"][:20]
    # The model ends at the real stop of the first half of them, and once too early in every conversation.
    stop_at = {i: {len(msgs)} if i < 10 else set() for i, msgs in enumerate(convs)}
    early = {i: next(k for k, m in enumerate(msgs) if k > 0 and m["role"] == "user") for i, msgs in enumerate(convs)}
    records = [replay_record(i, msgs, lambda index, text: text,
                             ended=lambda index, i=i: index in stop_at[i] or index == early[i])
               for i, msgs in enumerate(convs)]
    units = transcript_units(records)
    assert ends.attach_ends(units) == sum(sum(m["role"] == "user" for m in c) for c in convs)
    n = sum(len(u["ends"]) for u in units)
    tp, fp, fn = 10, 20, 10
    assert ends.precision(units) == pytest.approx(tp / (tp + fp)) and ends.recall(units) == pytest.approx(0.5)
    assert ends.f1(units) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert ends.f1_always(units) == pytest.approx(2 * 20 / (2 * 20 + (n - 20)))
    metrics, _ = A.evaluate(units, None)
    assert metrics["end_f1"]["run"]["value"] == pytest.approx(ends.f1(units))
    low, high = metrics["end_f1"]["run"]["ci_low"], metrics["end_f1"]["run"]["ci_high"]
    assert low < metrics["end_f1"]["run"]["value"] < high
    assert metrics["end_f1_always"]["run"]["value"] == pytest.approx(ends.f1_always(units))


def test_position_baseline_is_the_best_first_k_decisions_rule(real):
    # A user that ends exactly at each conversation's first decision: the position rule K = 1 is that user.
    convs = [msgs for msgs in real[:60] if msgs[-1]["role"] == "assistant"][:20]
    first = {i: next((k for k, m in enumerate(msgs) if k > 0 and m["role"] == "user"), len(msgs))
             for i, msgs in enumerate(convs)}
    records = [replay_record(i, msgs, lambda index, text: text, ended=lambda index, i=i: index == first[i])
               for i, msgs in enumerate(convs)]
    units = transcript_units(records)
    ends.attach_ends(units)
    assert all(u["end_ordinals"] == list(range(1, len(u["ends"]) + 1)) for u in units)
    by_k = []
    for top in ends.POSITION_RULES:
        said = [(k <= top, t) for u in units for k, (_, t) in zip(u["end_ordinals"], u["ends"])]
        tp = sum(p and t for p, t in said)
        by_k.append(2 * tp / (sum(p for p, _ in said) + sum(t for _, t in said)))
    assert ends.f1_position(units) == pytest.approx(max(by_k))
    assert by_k[0] == pytest.approx(ends.f1(units))  # the user above is the K = 1 rule
    metrics, _ = A.evaluate(units, None)
    assert metrics["end_f1_position"]["run"]["value"] == pytest.approx(max(by_k))


def test_end_f1_is_na_where_the_source_records_no_ends(real):
    units = replay_units(real[:10], lambda index, text: text, person_ended=None)
    metrics, _ = A.evaluate(units, None)
    assert metrics["end_f1"]["run"]["value"] is None and metrics["end_f1"]["run"]["note"] == ends.NO_ENDS


def test_self_play_people_are_cut_like_the_run():
    units = [{"id": f"s#{i}", "user_turns": ["one two three four", "five six"], "truncated": [True, False],
              "ended_by_user": False} for i in range(3)]
    pool = [["a b c d e f g", "h", "i j"], ["k"], ["l m n o p q", "r s t u v w"]]
    info = L.attach_sides(units, pool)
    assert info["budget_words"] == 4 and info["source"] == "reference"
    assert [u["people_turns"] for u in units] == [["a b c d", "h"], ["k"], ["l m n o", "r s t u"]]
    assert [len(u["model_turns"]) for u in units] == [2, 1, 2]  # the positions both have
    assert L.people_units(units)[1]["user_turns"] == ["k"]


def test_people_are_cut_to_the_runs_token_budget_even_when_no_turn_reached_it():
    """A run that never hit max_new_tokens still could not write a longer turn: people's pasted documents are cut
    to the budget in the run's own words per token (here 2 words in 4 tokens: 10 tokens hold 5 words)."""
    from evaluators.reference import transcript_units

    record = lambda i: {"scenario_id": "s", "sample": i, "stop_reason": "max_turns", "turns": [
        {"role": "user", "text": "short turn", "tokens": 4, "truncated": False}, {"role": "assistant", "text": "ok"}]}
    info = {"provenance": {"sampling": {"s": {"user": {"max_new_tokens": 10}}}}}
    units = transcript_units([record(i) for i in range(2)], info)
    assert L.word_budget(units) == 5 and units[0]["token_budget"] == 10
    L.attach_sides(units, [["one two three four five six seven"], ["a b"]])
    assert [u["people_turns"] for u in units] == [["one two three four five"], ["a b"]]
    assert L.word_budget(transcript_units([record(0)])) is None  # no run.json: the budget is not known
    replay_info = {"provenance": {"sampling": {"user": {"max_new_tokens": 10}}}}  # one budget in a replay
    assert L.word_budget(transcript_units([record(0)], replay_info)) == 5


def test_compare_pairs_discriminability_by_conversation(real):
    """Prepared units carry what the metric's statistic reads, so compare's paired bootstrap works unchanged."""
    from evaluators.metrics import METRICS, Inputs
    from evaluators.stats import paired_bootstrap_delta

    sane = replay_units(real[:60], lambda index, text: text)  # writes what the person wrote: 0.5
    broken = replay_units(real[:60], DEGENERATE["ok spam"])
    for units in (sane, broken):
        A.prepare(units)
    statistic = METRICS["discriminability"].statistic(Inputs())
    assert statistic(sane) == pytest.approx(0.5)
    ci = paired_bootstrap_delta(sane, broken, statistic)
    assert ci["ci_low"] > 0.4 and ci["n"] == 60
