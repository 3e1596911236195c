"""The AI-voice classifier's options, apart from its code so that `--help` does not import numpy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from userlm.config import check_fields, option
from userlm.models import DEFAULT_ASSISTANT, DEFAULT_ENCODER

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios" / "everyday"


@dataclass
class ClassifierConfig:
    out: str = option("", "output directory (default: the cache's classifier for the data)")
    data: list = option(factory=list, help="prepared data dirs (default: the embedded ShareGPT, prepared by default)")
    max_per_class_per_source: int = option(1500, "human and AI turns per source at most, per split", min=1)
    stock_model: str = option(DEFAULT_ASSISTANT, "the stock assistant whose replies (and user imitations) are AI turns")
    # Off by default: a model whose turns are trained on is never used on that model's runs (classifier_guard).
    stock_turns: int = option(0, "the stock assistant's replies to real first human turns, over all splits", min=0)
    adversary_turns: int = option(0, "the stock model told to act as a user, over all splits", min=0)
    degenerate_turns: int = option(600, "looped copies of real turns (a sentence or word repeated), as AI turns", min=0)
    adversary_scenarios: str = option(str(SCENARIOS), "scenario intents for adversary opening turns (train split only)")
    length_control: bool = option(True, "add AI turns cut to paired human lengths, and balance lengths by weights")
    encoder: str = option(DEFAULT_ENCODER, "sentence-embedding model of the embeddings features")
    # MiniLM embeddings reached validation AUROC 0.78 length-controlled vs 0.95 for TF-IDF on ShareGPT + OASST,
    # and cost minutes on 2 cores.
    features: Literal["tfidf", "embeddings", "both", "auto"] = option(
        "tfidf", "tfidf | embeddings | both | auto (pick on validation)")
    held_out_generators: bool = option(True, "refit without each generated source and report AUROC on it")
    seed: int = option(0, "seed of sampling and generation")

    def __post_init__(self):
        check_fields(self)
