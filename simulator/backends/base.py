from __future__ import annotations

from dataclasses import dataclass

from simulator.scenarios import Sampling


@dataclass
class GenerationRequest:
    messages: list[dict]  # already in the speaking model's view (userlm.chat.speaker_view)
    sampling: Sampling
    seed: int


@dataclass
class Generation:
    text: str
    tokens: int
    finish_reason: str = "stop"  # "stop" | "length"


class Backend:
    name = "base"

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        raise NotImplementedError

    def loglikelihood(self, requests: list[tuple[list[dict], str]]) -> list[tuple[float, int]]:
        """For each (messages, continuation): (sum of log-probabilities of the continuation's tokens after the
        rendered prompt, number of those tokens)."""
        raise NotImplementedError(f"the {self.name} backend cannot score log-likelihoods")
