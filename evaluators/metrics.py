"""The metrics. Each is a statistic over units (conversations: {"user_turns": [...], "stop_reason": ...}),
so one bootstrap serves all of them, and the real-human reference is scored by the same code."""

from __future__ import annotations

import re

import numpy as np

# name -> (direction, description). direction: +1 higher is more human-like, -1 lower is, 0 neither. The one
# definition that evaluate, report and compare all read.
METRICS = {
    "human_likeness": (+1, "1 - mean P(AI) of user turns"),
    "ai_voice_rate": (-1, "share of user turns the classifier judges AI (P(AI) > 0.5)"),
    "role_adherence": (+1, "share of user turns that do not act as the assistant"),
    "termination_rate": (+1, "share of conversations the user ended"),
    "mean_user_turns": (0, "user turns per conversation"),
    "mean_turn_words": (0, "words per user turn (no better direction: see turn_length_w1)"),
    "truncated_share": (-1, "share of user turns cut off at max_new_tokens"),
    "turn_length_w1": (-1, "Wasserstein distance of user-turn word counts to real humans'"),
    "conversation_length_w1": (-1, "Wasserstein distance of user turns per conversation to real humans'"),
    "distinct_1": (+1, "distinct unigrams / unigrams over user turns"),
    "distinct_2": (+1, "distinct bigrams / bigrams over user turns"),
    "diversity_all": (+1, "mean pairwise cosine distance of all user-turn embeddings"),
    "vendi_all": (+1, "Vendi score of all user-turn embeddings"),
    "diversity_first": (+1, "mean pairwise cosine distance of first turns within a scenario"),
    "diversity_ratio_to_human": (+1, "diversity_all / real humans' diversity_all (1.0 = as diverse as people)"),
    "perplexity_real_user_turns": (-1, "user model's perplexity on held-out real human turns"),
    "perplexity_base_model": (0, "the base model's perplexity on the same turns, for comparison"),
    "perplexity_with_intent": (-1, "perplexity on held-out real human turns with their written intents in the "
                                   "system prompt (the examples that have one)"),
    "perplexity_without_intent": (-1, "the same examples' perplexity without the intent"),
    "intent_adherence": (+1, "share of other intents a conversation's user turns are less similar to than to its "
                             "own (0.5 = chance)"),
    "intent_decomposition": (0, "share of the intent's content words the first user turn already says "
                                "(real people reveal bit by bit: compare with their row)"),
    "end_f1": (+1, "F1 of ending where real people ended, at every point where they went on or stopped"),
    "end_precision": (+1, "share of the user model's ends that fall where the person ended"),
    "end_recall": (+1, "share of real ends where the user model ended"),
    "end_base_rate": (0, "share of decision points where the real person ended"),
}


def direction_word(metric: str) -> str:
    return {1: "higher", -1: "lower", 0: "neither"}[METRICS[metric][0]]


# Openings and phrases of an assistant's voice: a user turn that uses them is acting as the assistant.
ASSISTANT_PATTERNS = re.compile(
    r"^\s*(sure|certainly|of course|absolutely|great question)[!,.]|how (can|may) i (help|assist)|"
    r"i'?d be (happy|glad) to help|as an ai\b|i am an ai\b|i'?m an ai\b|as a (helpful )?(ai|language model)|"
    r"here (is|are) (a|an|some|the) [\w\s-]{0,40}(for you|you can|to help)|feel free to ask|"
    r"let me know if you (have|need) any|i hope (this|that) helps|is there anything else i can",
    re.IGNORECASE)


def acts_as_assistant(text: str) -> bool:
    return bool(ASSISTANT_PATTERNS.search(text))


def words(text: str) -> int:
    return len(text.split())


def all_turns(units: list[dict]) -> list[str]:
    return [t for u in units for t in u["user_turns"]]


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


def mean_pairwise_cosine_distance(vectors: np.ndarray) -> float:
    """For normalized vectors: mean over pairs i != j of 1 - cos. Identical vectors give 0."""
    n = len(vectors)
    if n < 2:
        return np.nan
    s = vectors @ vectors.T
    return float((n * n - s.sum()) / (n * (n - 1)))  # diagonal contributes n*(1-1)=0 to the distance sum


def vendi_score(vectors: np.ndarray) -> float:
    """exp(entropy of the eigenvalues of K/n), K the cosine similarity matrix (Friedman & Dieng, 2023): the
    effective number of distinct items. Computed on the smaller of X X^T and X^T X (same non-zero spectrum)."""
    n = len(vectors)
    if n == 0:
        return np.nan
    gram = vectors.T @ vectors if vectors.shape[1] < n else vectors @ vectors.T
    eig = np.clip(np.linalg.eigvalsh(gram / n), 0, None)
    eig = eig[eig > 1e-12]
    return float(np.exp(-(eig * np.log(eig)).sum()))
