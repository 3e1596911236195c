"""distribution_mmd (evaluators/distance.py): MMD^2 under a product kernel of MiniLM embeddings (topic) and the
discriminator's style features (length, repetition, punctuation, case, cut-off). Issue 22: a degenerate user
must rank below a sane one on every headline column; embedding_mmd alone ranked Gemma-3-270M's on-topic prose,
every turn cut off at the token budget, closer to people than the trained SmolLM2 user (-0.002 vs 0.060).
Replay-format runs are built from real ShareGPT conversations as in tests/test_against_people.py."""

import numpy as np
import pytest

from evaluators import against_people as A
from evaluators import distance
from tests.test_against_people import DEGENERATE, real, replay_units  # noqa: F401 (real: the fixture)

BUDGET = 110  # words: about a 160-token budget


def rambling(conversation):
    """An on-topic user whose every turn runs to the budget and stops mid-sentence: the person's turn followed by
    the conversation's next AI reply (on-topic prose), cut at BUDGET words (the Gemma-3-270M run's shape)."""
    def generate(index, text):
        after = conversation[index + 1]["text"] if index + 1 < len(conversation) else ""
        words = f"{text} {after} {text} {after}".split()
        return " ".join(words[:BUDGET])
    return generate


@pytest.fixture(scope="module")
def scored(real):  # noqa: F811
    from evaluators.cache import embed

    def other_person(conversations):
        turns = [[m["text"] for m in msgs if m["role"] == "user"] for msgs in real[60:]]
        pool = [t for t in turns if len(t) >= 3]
        return lambda i: (lambda index, text: pool[i][min(index // 2, len(pool[i]) - 1)])

    convs = [msgs[:6] for msgs in real[:60]]  # three user turns at most: MiniLM on one core takes its time
    users = {"people": lambda c, i: (lambda index, text: text), "another person": lambda c, i: other_person(convs)(i),
             "ok spam": lambda c, i: DEGENERATE["ok spam"], "one sentence": lambda c, i: DEGENERATE["one sentence"],
             "rambling, cut off": lambda c, i: rambling(c)}
    out = {}
    for name, make in users.items():
        from evaluators.reference import transcript_units
        from tests.test_against_people import replay_record

        units = transcript_units([replay_record(i, c, make(c, i)) for i, c in enumerate(convs)])
        out[name] = A.evaluate(units, None, embed=embed)[0]
    return out


def value(metrics, name):
    return metrics[name]["run"]["value"]


def test_the_people_control_holds_zero_and_people_themselves_read_zero(scored):
    for name in ("people", "another person"):
        control = scored[name]["distribution_mmd_people"]["run"]
        assert abs(control["value"]) < 0.03 and control["ci_low"] <= 0 <= control["ci_high"], control
    assert value(scored["people"], "distribution_mmd") == pytest.approx(0, abs=1e-9)  # the same turns
    null = scored["another person"]["distribution_mmd"]["run"]
    assert null["ci_low"] <= 0 <= null["ci_high"], null


@pytest.mark.parametrize("name", ["ok spam", "one sentence", "rambling, cut off"])
def test_a_degenerate_user_ranks_worse_than_another_person(scored, name):
    broken, null = scored[name]["distribution_mmd"]["run"], scored["another person"]["distribution_mmd"]["run"]
    assert broken["ci_low"] > null["ci_high"], (broken, null)
    assert broken["ci_low"] > scored[name]["distribution_mmd_people"]["run"]["ci_high"]


def test_embeddings_alone_miss_the_cut_off_rambler_that_the_product_kernel_sees(scored):
    """The rambler writes the conversation's own topic: embedding_mmd barely moves, distribution_mmd does."""
    ramble, null = scored["rambling, cut off"], scored["another person"]
    assert value(ramble, "distribution_mmd") > 2 * value(ramble, "embedding_mmd")
    assert value(ramble, "embedding_mmd") < 3 * max(value(null, "embedding_mmd"), 0.01)


def test_mmd2_product_matches_its_definition():
    rng = np.random.default_rng(0)
    x1, y1 = rng.normal(size=(30, 4)), rng.normal(0.5, size=(25, 4))
    x2, y2 = rng.normal(size=(30, 3)), rng.normal(0.0, 2.0, size=(25, 3))
    cx, cy = np.arange(30) // 3, 100 + np.arange(25) // 5

    def scaled(a, b):
        z = np.concatenate([a, b])
        d2 = ((z[:, None] - z[None]) ** 2).sum(-1)
        return d2 / np.median(d2[~np.eye(len(z), dtype=bool)])

    k = np.exp(-scaled(x1, y1) - scaled(x2, y2))
    apart = lambda a, b: a[:, None] != b[None, :]  # noqa: E731
    expected = (k[:30, :30][apart(cx, cx)].mean() + k[30:, 30:][apart(cy, cy)].mean()
                - 2 * k[:30, 30:][apart(cx, cy)].mean())
    assert distance.mmd2_product([x1, x2], [y1, y2], cx, cy) == pytest.approx(expected)
    # One block: the plain RBF MMD^2.
    assert distance.mmd2_product([x1], [y1], cx, cy) == pytest.approx(distance.mmd2_unbiased(x1, y1, cx, cy))


def test_style_is_standardised_per_call_so_units_do_not_matter():
    """Multiplying a style feature's scale (say counting characters instead of words) changes nothing."""
    rng = np.random.default_rng(1)
    units = [{"emb": (rng.normal(size=(3, 8)), rng.normal(size=(3, 8))),
              "style": (rng.normal(size=(3, 5)), rng.normal(1.0, size=(3, 5)))} for _ in range(10)]
    scaled = [dict(u, style=tuple(s * np.array([1, 10, 100, 1, 1]) for s in u["style"])) for u in units]
    assert distance.distribution_mmd(units) == pytest.approx(distance.distribution_mmd(scaled))


def test_compare_gates_on_distribution_mmd_when_a_thresholds_file_lists_it(real):  # noqa: F811
    """compare prepares embeddings and style rows when a gated metric reads them: a rambler replaying the same
    conversations as a sane user (who writes what the person wrote) is a regression on distribution_mmd."""
    from evaluators import metrics as M
    from evaluators.cache import embed
    from workflows.compare import metric_row, prepare_against_people
    from workflows.gate import decide

    convs = [msgs[:6] for msgs in real[:60]]
    sane = replay_units(convs, lambda index, text: text)
    broken = [u for i, c in enumerate(convs) for u in replay_units([c], rambling(c))]
    for i, u in enumerate(broken):  # one conversation a call above: give each its own id back
        u["id"], u["conversation_id"] = sane[i]["id"], sane[i]["conversation_id"]
    prepare_against_people(sane, broken, None, embed)
    row = metric_row("distribution_mmd", {"direction": "lower", "margin": 0.02}, None, sane, broken, [], M.Inputs())
    decide([row], "distribution_mmd", 0.05, 0.8)
    assert row["baseline"] == pytest.approx(0, abs=1e-9) and row["candidate"] > 0.05
    assert row["verdict"] == "regressed", row
