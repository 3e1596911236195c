from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

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
    """`generate` for a batch; `submit`/`step` for the conversation loop. The default `step` runs everything
    submitted since the last step as one `generate` call (batching by turn); a backend with its own scheduler
    (hf) overrides `submit`/`step` to batch by token and to keep each conversation's KV cache between turns."""
    name = "base"

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        raise NotImplementedError

    def loglikelihood(self, requests: list[tuple[list[dict], str]]) -> list[tuple[float, int]]:
        """For each (messages, continuation): (sum of log-probabilities of the continuation's tokens after the
        rendered prompt, number of those tokens)."""
        raise NotImplementedError(f"the {self.name} backend cannot score log-likelihoods")

    def submit(self, key: Hashable, request: GenerationRequest) -> None:
        self.__dict__.setdefault("_submitted", []).append((key, request))

    def step(self) -> list[tuple[Hashable, Generation]]:
        """Advance the submitted work; returns the generations that finished, with their keys."""
        submitted, self._submitted = self.__dict__.get("_submitted", []), []
        return list(zip([k for k, _ in submitted], self.generate([r for _, r in submitted]))) if submitted else []

    def release(self, conversation: Hashable) -> None:
        """The conversation is over: drop whatever the backend kept for it."""
