"""The metrics, each declared once in METRICS (name, direction, description, statistic, set-based or not),
which evaluate, report and compare all read. A statistic is a function of units (conversations:
{"user_turns": [...], "ended_by_user": ...}), so one bootstrap serves all of them, and the real-human
reference is scored by the same code."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from evaluators.embedding_stats import mean_pairwise_cosine_distance, vendi_score  # noqa: F401 (tests read M.*)

# Openings and phrases of an assistant's voice: a user turn that uses them is acting as the assistant.
ASSISTANT_PATTERNS = re.compile(
    r"^\s*(sure|certainly|of course|absolutely|great question)[!,.]|how (can|may) i (help|assist)|"
    r"i'?d be (happy|glad) to help|as an ai\b|i am an ai\b|i'?m an ai\b|as a (helpful )?(ai|language model)|"
    r"here (is|are) (a|an|some|the) [\w\s-]{0,40}(for you|you can|to help)|feel free to ask|"
    r"let me know if you (have|need) any|i hope (this|that) helps|is there anything else i can",
    re.IGNORECASE)


@functools.lru_cache(maxsize=65536)  # a bootstrap asks about the same turns a thousand times
def acts_as_assistant(text: str) -> bool:
    return bool(ASSISTANT_PATTERNS.search(text))


def words(text: str) -> int:
    return len(text.split())


def all_turns(units: list[dict]) -> list[str]:
    return [t for u in units for t in u["user_turns"]]


def distinct_turns(*unit_lists: list[dict]) -> list[str]:
    """Every distinct user turn of the given unit lists, sorted: what a classifier or encoder scores once."""
    return sorted({t for units in unit_lists for t in all_turns(units)})


def role_adherence(units):
    turns = all_turns(units)
    return float(np.mean([not acts_as_assistant(t) for t in turns])) if turns else np.nan


def termination_rate(units):
    """nan (n/a) where no unit records whether the person ended (OASST reference)."""
    ends = [u["ended_by_user"] for u in units if u["ended_by_user"] is not None]
    return float(np.mean(ends)) if ends else np.nan


def mean_turn_words(units):
    turns = all_turns(units)
    return float(np.mean([words(t) for t in turns])) if turns else np.nan


def truncated_share(units):
    """Share of user turns that hit max_new_tokens (units from transcripts carry a `truncated` flag per turn)."""
    flags = [f for u in units for f in u.get("truncated", [])]
    return float(np.mean(flags)) if flags else np.nan


def mean_user_turns(units):
    return float(np.mean([len(u["user_turns"]) for u in units]))


def wasserstein(values, reference) -> float:
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(values, reference)) if len(values) and len(reference) else np.nan


_GRAM_IDS: dict = {}


def unit_grams(unit: dict, n: int) -> np.ndarray:
    """The unit's n-grams as integer ids (cached on the unit), so bootstrap resamples are cheap."""
    key = f"_grams{n}"
    if key not in unit:
        ids = []
        for turn in unit["user_turns"]:
            tokens = turn.lower().split()
            ids += [_GRAM_IDS.setdefault(tuple(tokens[i: i + n]), len(_GRAM_IDS)) for i in range(len(tokens) - n + 1)]
        unit[key] = np.asarray(ids, dtype=np.int64)
    return unit[key]


def distinct_n(units, n: int):
    grams = [unit_grams(u, n) for u in units]
    total = sum(len(g) for g in grams)
    return len(np.unique(np.concatenate(grams))) / total if total else np.nan


@dataclass
class Inputs:
    """What statistics read beyond the units: per-turn scores of the models, and the real humans."""
    p_ai: dict = field(default_factory=dict)  # user-turn text -> the classifier's P(AI)
    vectors: dict = field(default_factory=dict)  # user-turn text -> normalized sentence embedding
    reference: list = field(default_factory=list)  # real-human units that distances are measured to


def _stack(s: Inputs, turns: list[str]) -> np.ndarray:
    return np.stack([s.vectors[t] for t in turns]) if turns else np.zeros((0, 384))


def turn_p_ai(s: Inputs, units) -> list[float]:
    """P(AI) of every user turn, 1.0 where the turn is degenerate in its conversation (evaluators/degenerate.py)."""
    from evaluators.degenerate import conversation_p_ai

    return [p for u in units for p in conversation_p_ai(u["user_turns"], s.p_ai)]


def human_likeness(s: Inputs):
    return lambda us: 1 - float(np.mean(turn_p_ai(s, us))) if all_turns(us) else np.nan


def ai_voice_rate(s: Inputs):
    return lambda us: float(np.mean(np.asarray(turn_p_ai(s, us)) > 0.5)) if all_turns(us) else np.nan


def turn_length_w1(s: Inputs):
    real = [words(t) for t in all_turns(s.reference)]
    return lambda us: wasserstein([words(t) for t in all_turns(us)], real)


def conversation_length_w1(s: Inputs):
    real = [len(u["user_turns"]) for u in s.reference]
    return lambda us: wasserstein([len(u["user_turns"]) for u in us], real)


def diversity_all(s: Inputs):
    return lambda us: mean_pairwise_cosine_distance(_stack(s, all_turns(us)))


def vendi_all(s: Inputs):
    return lambda us: vendi_score(_stack(s, all_turns(us)))


def diversity_first(s: Inputs):
    def statistic(us):
        by_scenario = {}
        for u in us:
            if u["user_turns"]:
                by_scenario.setdefault(u["scenario_id"], []).append(u["user_turns"][0])
        values = [mean_pairwise_cosine_distance(_stack(s, v)) for v in by_scenario.values() if len(v) > 1]
        return float(np.mean(values)) if values else np.nan
    return statistic


def diversity_ratio_to_human(s: Inputs):
    div_all = diversity_all(s)
    human = div_all(s.reference)
    return lambda us: div_all(us) / human


def _set():
    from evaluators import set_metrics  # imports this module: imported where it is called

    return set_metrics


def plain(fn: Callable[[list], float]):
    """A statistic that reads nothing but the units."""
    return lambda s: fn


@dataclass(frozen=True)
class Metric:
    name: str
    direction: int  # +1 higher is more human-like, -1 lower is, 0 neither (compare cannot gate on it)
    description: str
    # Inputs -> (units -> value); None where the evaluator scores its own units with a model (perplexity,
    # intent, termination) and bootstraps them itself.
    statistic: Callable[[Inputs], Callable[[list], float]] | None = None
    # Drops when a resample repeats a conversation: resampled without repeats (evaluators/stats.py).
    set_based: bool = False
    # Also scored on the real humans' units (not for distances to them, nor flags they never carry).
    reference_row: bool = True
    needs_reference: bool = False  # measured against the real humans: undefined without them
    embeds: bool = False  # reads the turns' sentence embeddings (so the encoder loads only when one does)
    headline: bool = False  # shown in the terminal's short table (every metric stays in JSON, markdown and HTML)
    # Measures the simulation's setup more than the user (a length under a turn cap): shown, never gated.
    measures_setup: bool = False
    bounded: bool = False  # a proportion or other value in [0, 1]: Wilson intervals (evaluators/stats.py)


def _people(module: str, name: str):
    """A statistic of units the against-people evaluator prepared (out-of-fold scores, embeddings, end
    decisions on them): evaluators/discriminability.py, distance.py, ends.py, imported when first scored."""
    def statistic(s: Inputs):
        import importlib

        return getattr(importlib.import_module(f"evaluators.{module}"), name)
    return statistic


# Against people in the same contexts (evaluators/against_people.py): first in every table.
AGAINST_PEOPLE = (
    Metric("discriminability", -1, "cross-validated AUROC of a discriminator trained to tell the model's user turns "
                                   "from people's in the same contexts (0.5 = indistinguishable, 1 = told apart)",
           _people("discriminability", "auroc"), reference_row=False, headline=True),
    Metric("discriminability_people", 0, "control: the same test, people vs other people cut alike (should hold "
                                         "0.5 in its CI)", _people("discriminability", "auroc"),
           reference_row=False, headline=True),
    Metric("discriminability_self", 0, "control: the same test, the model vs itself (two halves of its "
                                       "conversations, other seeds)", _people("discriminability", "auroc"),
           reference_row=False),
    Metric("distribution_mmd", -1, "unbiased MMD^2 of the model's user turns vs people's at equal sizes under a "
                                   "product kernel: MiniLM embedding (topic) x 16 style features (length, "
                                   "repetition, punctuation, case, cut-off), each RBF with median bandwidth "
                                   "(0 = same distribution)",
           _people("distance", "distribution_mmd"), set_based=True, reference_row=False, headline=True,
           embeds=True),
    Metric("distribution_mmd_people", 0, "control: the same distance, people vs other people at the same size "
                                         "(should hold 0 in its CI)",
           _people("distance", "distribution_mmd"), set_based=True, reference_row=False, embeds=True),
    Metric("embedding_mmd", -1, "topic view: unbiased MMD^2 (RBF, median bandwidth) of MiniLM embeddings alone, the "
                                "model's user turns vs people's at equal sizes (blind to length, cut-off, repetition)",
           _people("distance", "embedding_mmd"), set_based=True, reference_row=False, embeds=True),
    Metric("embedding_mmd_people", 0, "control: the same distance, people vs other people at the same size",
           _people("distance", "embedding_mmd"), set_based=True, reference_row=False, embeds=True),
    Metric("end_f1", +1, "F1 of ending where real people ended, at every point where they went on or stopped",
           _people("ends", "f1"), reference_row=False, headline=True),
    Metric("end_f1_always", 0, "the always-end baseline's F1 on the same points (end_f1 should beat it)",
           _people("ends", "f1_always"), reference_row=False),
    Metric("end_f1_position", 0, "the best F1 of 'end at each of the first K decisions' (K = 1..8, chosen on these "
           "points): a bar a user that knows only the turn position clears", _people("ends", "f1_position"), reference_row=False),
    Metric("end_precision", +1, "share of the user model's ends that fall where the person ended",
           _people("ends", "precision"), reference_row=False),
    Metric("end_recall", +1, "share of real ends where the user model ended", _people("ends", "recall"),
           reference_row=False),
    Metric("end_base_rate", 0, "share of decision points where the real person ended", _people("ends", "base_rate"),
           reference_row=False),
)


METRICS = {m.name: m for m in (
    *AGAINST_PEOPLE,
    Metric("human_likeness", +1, "1 - mean P(AI) of user turns", human_likeness, bounded=True),
    Metric("ai_voice_rate", -1, "share of user turns the classifier judges AI (P(AI) > 0.5)", ai_voice_rate,
           bounded=True),
    Metric("role_adherence", +1, "share of user turns that do not act as the assistant", plain(role_adherence),
           bounded=True),
    Metric("termination_rate", 0, "share of conversations the user ended (no better direction: see end_f1)",
           plain(termination_rate), bounded=True),
    Metric("echo_rate", 0, "share of user turns that copy 8+ consecutive words of the assistant turns before them "
                           "(no better direction: compare with people's row)", _people("echo", "echo_rate"),
           bounded=True),
    Metric("mean_user_turns", 0, "user turns per conversation", plain(mean_user_turns)),
    Metric("mean_turn_words", 0, "words per user turn (no better direction: see turn_length_w1)",
           plain(mean_turn_words)),
    Metric("truncated_share", -1, "share of user turns cut off at max_new_tokens", plain(truncated_share),
           reference_row=False, bounded=True),
    Metric("turn_length_w1", -1, "Wasserstein distance of user-turn word counts to real humans'", turn_length_w1,
           reference_row=False, needs_reference=True),
    Metric("conversation_length_w1", -1, "Wasserstein distance of user turns per conversation to real humans' "
                                         "(under a turn cap it measures the cap)",
           conversation_length_w1, reference_row=False, needs_reference=True, measures_setup=True),
    Metric("distinct_1", +1, "distinct unigrams / unigrams over user turns", plain(lambda us: distinct_n(us, 1)),
           set_based=True),
    Metric("distinct_2", +1, "distinct bigrams / bigrams over user turns", plain(lambda us: distinct_n(us, 2)),
           set_based=True),
    Metric("distinct_2_pair", +1, "distinct bigrams / bigrams of two conversations, averaged over pairs (does not "
           "shrink as a run grows: evaluators/set_metrics.py)", plain(lambda us: _set().distinct_pair(us, 2)),
           set_based=True),
    Metric("diversity_between", +1, "mean cosine distance between user turns of different conversations",
           lambda s: _set().diversity_between(s), set_based=True, embeds=True),
    Metric("diversity_all", +1, "mean pairwise cosine distance of all user-turn embeddings", diversity_all,
           set_based=True, embeds=True),
    Metric("vendi_all", +1, "Vendi score of all user-turn embeddings", vendi_all, set_based=True,
           embeds=True),
    Metric("diversity_first", +1, "mean pairwise cosine distance of first turns within a scenario",
           diversity_first, set_based=True, reference_row=False, embeds=True),
    Metric("diversity_ratio_to_human", +1, "diversity_all / real humans' diversity_all (1.0 = as diverse as people)",
           diversity_ratio_to_human, set_based=True, reference_row=False, needs_reference=True, embeds=True),
    Metric("perplexity_real_user_turns", -1, "user model's perplexity per word of held-out real human turns' text "
                                             "(end tokens apart)"),
    Metric("perplexity_base_model", 0, "the base model's perplexity per word on the same turns, for comparison"),
    Metric("end_of_turn_nll", -1, "nats per end of a held-out human turn (the end-of-turn tokens)"),
    Metric("end_of_conversation_nll", -1, "nats per end of a held-out conversation (the end marker's turn)"),
    Metric("perplexity_with_intent", -1, "perplexity per word on held-out real human turns with their written "
                                         "intents in the system prompt (the examples that have one)"),
    Metric("perplexity_without_intent", -1, "the same examples' perplexity per word without the intent"),
    Metric("perplexity_mismatched_intent", 0, "the same examples with another conversation's intent (the control: "
                                              "a gain over it is the model using its own intent)"),
    Metric("perplexity_base_with_intent", 0, "the base model's perplexity per word with the intents (its gain "
                                             "beside the trained model's)"),
    Metric("perplexity_base_without_intent", 0, "the base model's perplexity per word on those examples without"),
    Metric("intent_adherence", +1, "share of hard negatives (its task with the constraints of the nearest other "
                                   "intents) the user turns are less similar to than to its own intent (0.5 = chance: "
                                   "on topic, constraints ignored)"),
    Metric("intent_topic", +1, "share of the other intents in play the user turns are less similar to than to its "
                               "own (topic only: the old intent_adherence)"),
    Metric("intent_checklist", +1, "share of the intent's constraints the user turns say (lexical checklist)"),
    Metric("intent_decomposition", 0, "share of the intent's constraints the first user turn already says (people "
                                      "reveal bit by bit: below their checklist; compare with their row)"),
)}


# What `userlm compare` can gate on: a statistic of the paired conversations with a better direction that
# measures the user, not the setup.
COMPARABLE = [name for name, m in METRICS.items()
              if m.statistic is not None and m.direction != 0 and not m.measures_setup]


def direction_word(metric: str) -> str:
    return {1: "higher", -1: "lower", 0: "neither"}[METRICS[metric].direction]
