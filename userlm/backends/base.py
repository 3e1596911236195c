"""The interface every model backend implements, and the records that cross it."""

from __future__ import annotations

import abc
from collections import deque
from dataclasses import dataclass
from typing import Hashable, Iterator


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 160  # enough for a user turn to finish (cut-off turns are marked `truncated`)


@dataclass
class GenerationRequest:
    messages: list[dict]  # already in the speaking model's view (userlm.chat.speaker_view)
    sampling: Sampling
    seed: int
    prompt_ids: list[int] | None = None  # the rendered prompt's token ids where the caller has them (replay): the
    # hf backend then skips rendering and tokenizing it; other backends read `messages`


@dataclass
class Generation:
    text: str
    tokens: int
    finish_reason: str = "stop"  # "stop" | "length" (the loop marks a "length" user turn `truncated`)


class Backend(abc.ABC):
    """A model that continues chats. The conversation loop drives generation a step at a time: `submit` a
    request under a key, call `step` until the key comes back, `release` a conversation that is over. The
    perplexity evaluator calls `masked_loglikelihood` on token ids encoded with `tokenizer`."""

    name = "base"
    tokenizer = None  # the tokenizer prompts are rendered and scored with; None where the server renders them

    @abc.abstractmethod
    def submit(self, key: Hashable, request: GenerationRequest) -> None:
        """Queue one generation; its result comes back from a later `step` with this key."""

    @abc.abstractmethod
    def step(self) -> list[tuple[Hashable, Generation]]:
        """Advance the submitted work; returns the generations that finished, with their keys."""

    @abc.abstractmethod
    def release(self, conversation: Hashable) -> None:
        """The conversation (the first element of its keys) is over: drop whatever the backend kept for it."""

    @abc.abstractmethod
    def masked_loglikelihood(self, encoded: list[tuple[list[int], list[int]]],
                             batch_tokens: int | None = None, per_token: bool = False) -> list:
        """Per (input ids, labels) pair: (sum of log p of the tokens whose label is not -100, their count), or
        with `per_token` the list of those log p in order (perplexity per word, end tokens apart).
        Labels are aligned with the input ids (the token at position i is scored given positions < i). The
        backend chooses how to batch them (`batch_tokens`: padded tokens a batch at most, where it batches)."""

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        """A whole batch at once, in order (for callers outside the conversation loop)."""
        done = dict(self.generate_each(requests))
        return [done[i] for i in range(len(requests))]

    def generate_each(self, requests: list[GenerationRequest],
                      in_flight: int | None = None) -> Iterator[tuple[int, Generation]]:
        """(index, generation) of each request as it finishes, with at most `in_flight` submitted at once (all:
        None) and the next submitted as soon as one finishes. Each finished request is released at once, so
        the hf backend keeps no KV cache for it; results left in flight by an interrupted earlier call are
        released and ignored."""
        call, pending, flying = object(), deque(enumerate(requests)), set()  # call: keys unlike any earlier call's
        while pending or flying:
            while pending and len(flying) < (in_flight or len(requests)):
                i, request = pending.popleft()
                flying.add((call, i))
                self.submit(((call, i), "generate"), request)
            done = [(conversation, out) for (conversation, _), out in self.step()]
            for conversation, _ in done:  # all first: a caller that stops at a yield leaves nothing kept
                self.release(conversation)
            for conversation, out in done:
                if conversation in flying:
                    flying.discard(conversation)
                    yield conversation[1], out


class BatchBackend(Backend):
    """A backend that generates a whole batch in one call: `step` runs everything submitted since the last
    step as one `generate_batch` (batching by turn). It keeps nothing between turns."""

    @abc.abstractmethod
    def generate_batch(self, requests: list[GenerationRequest]) -> list[Generation]:
        """One generation per request, in order."""

    def submit(self, key: Hashable, request: GenerationRequest) -> None:
        self.__dict__.setdefault("_submitted", []).append((key, request))

    def step(self) -> list[tuple[Hashable, Generation]]:
        submitted, self._submitted = self.__dict__.get("_submitted", []), []
        return list(zip([k for k, _ in submitted], self.generate_batch([r for _, r in submitted]))) if submitted else []

    def release(self, conversation: Hashable) -> None:
        pass
