"""The conversation loop: scenario -> alternating user / assistant turns -> a finished transcript."""

from __future__ import annotations

import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

from simulator.end_decision import overrule
from simulator.guardrails import Guardrails, retry_seed, review
from userlm.backends import Backend, GenerationRequest
from userlm.chat import speaker_view, strip_end_marker
from userlm.end_policy import EndPolicy
from userlm.scenarios import Scenario


@dataclass
class Side:
    """One participant: a backend and how its system prompt is built for a scenario."""
    backend: Backend
    speaker: str  # "user" | "assistant"
    system: Callable[[Scenario], str | None]


@dataclass
class Conversation:
    scenario: Scenario
    sample: int
    seed: int
    user: Side | None = None  # who speaks each side (the loop needs both)
    assistant: Side | None = None
    run: int = 0  # which of the runs simulated together it belongs to
    turns: list[dict] = field(default_factory=list)
    stop_reason: str | None = None
    generated_tokens: int = 0  # both sides', kept turns or not
    guardrails: Guardrails | None = None  # the user side's (simulator/guardrails.py); None: off
    attempt: int = 0  # resamples of the user turn being written
    fired: Counter = field(default_factory=Counter)  # guardrail -> times it acted in this conversation
    end_policy: EndPolicy | None = None  # the user side's learned end policy (simulator/end_decision.py)
    lm_ends: str = "drop"
    end_by: str | None = None  # with an end policy: who ended (policy | model)
    policy_counts: Counter = field(default_factory=Counter)  # the model's ends the policy overruled

    def __post_init__(self):
        if self.scenario.opening and not self.turns:
            self.turns.append({"role": "assistant", "text": self.scenario.opening, "tokens": 0, "latency_s": 0.0})

    @property
    def key(self) -> str:
        return f"{self.run}/{self.scenario.id}#{self.sample}"

    @property
    def user_turns(self) -> list[str]:
        return [t["text"] for t in self.turns if t["role"] == "user"]

    def request(self, side: Side) -> GenerationRequest:
        history = [{"role": t["role"], "content": t["text"]} for t in self.turns]
        sampling = self.scenario.user_sampling if side.speaker == "user" else self.scenario.assistant_sampling
        seed = self.seed * 1000 + len(self.turns)
        if side.speaker == "user" and self.attempt:
            seed = retry_seed(seed, self.attempt)
        return GenerationRequest(speaker_view(history, side.speaker, side.system(self.scenario)), sampling, seed)

    @property
    def last_assistant(self) -> str | None:
        return next((t["text"] for t in reversed(self.turns) if t["role"] == "assistant"), None)


def degenerate(text: str) -> bool:
    """No letters or digits, or a long turn that is mostly one phrase repeated."""
    words = text.lower().split()
    if not re.search(r"\w", text):
        return True
    return len(words) >= 16 and len(set(words)) / len(words) < 0.2


def add_user_turn(conv: Conversation, text: str, tokens: int, latency: float, truncated: bool = False,
                  ended: bool | None = None) -> None:
    """`truncated`: the turn hit max_new_tokens (recorded, so that a cut-off turn is not read as a short one).
    `ended`: whether the user ended (None: read from the end marker in `text`)."""
    if ended is None:
        text, ended = strip_end_marker(text)
    previous = {t.strip().lower() for t in conv.user_turns}
    if text:
        if text.strip().lower() in previous:
            conv.stop_reason = "repeated_turn"
        elif degenerate(text):
            conv.stop_reason = "degenerate_turn"
        conv.turns.append({"role": "user", "text": text, "tokens": tokens, "latency_s": round(latency, 3),
                           "truncated": truncated and not ended})
    if ended:
        conv.stop_reason = "user_ended"
    elif not text:
        conv.stop_reason = "empty_turn"


def run_conversations(pending: list[Conversation], batch_size: int, on_finish: Callable[[Conversation], None],
                      on_step: Callable[[int, int, int], None] = lambda *_: None):
    """Each live conversation has one generation in flight, on the side whose turn it is. Backends advance a step
    at a time; a finished turn goes to the other side at once, and a finished conversation's place goes to the
    next waiting one, so batches stay full (by token on the hf backend, by turn on the others). Conversations of
    several runs may share a backend (the same assistant, or users of the same model): one batch serves them all."""
    pending, live, asked_at = deque(pending), {}, {}
    backends = list({id(side.backend): side.backend for c in pending for side in (c.user, c.assistant)}.values())

    def ask(conv: Conversation, speaker: str) -> None:
        asked_at[conv.key] = time.perf_counter()
        side = conv.user if speaker == "user" else conv.assistant
        side.backend.submit((conv.key, speaker), conv.request(side))

    while pending or live:
        while pending and len(live) < batch_size:
            conv = pending.popleft()
            live[conv.key] = conv
            ask(conv, "user")
        new_tokens = turns = 0
        for backend in backends:
            for (key, speaker), out in backend.step():
                conv, latency = live[key], time.perf_counter() - asked_at[key]
                new_tokens, turns = new_tokens + out.tokens, turns + 1
                conv.generated_tokens += out.tokens
                if speaker == "user":
                    r = review(conv.guardrails, out.text, out.finish_reason == "length", len(conv.user_turns),
                               conv.last_assistant, conv.attempt, conv.fired)
                    r = overrule(conv.end_policy, conv.lm_ends, conv.turns, r, conv.attempt, conv.policy_counts)
                    conv.attempt = conv.attempt + 1 if r.resample else 0
                    if r.resample:  # the same turn again, another seed
                        ask(conv, "user")
                        continue
                    add_user_turn(conv, r.text, out.tokens, latency, r.truncated, r.ended)
                    conv.end_by = "model" if conv.end_policy and r.ended else None
                else:
                    conv.turns.append({"role": "assistant", "text": out.text.strip(), "tokens": out.tokens,
                                       "latency_s": round(latency, 3)})
                    if conv.end_policy and conv.end_policy.ends(conv.turns, conv.seed):  # before the cap: the user's choice
                        conv.stop_reason, conv.end_by = "user_ended", "policy"
                    elif len(conv.user_turns) >= conv.scenario.max_turns:
                        conv.stop_reason = "max_turns"
                if conv.stop_reason:
                    for b in backends:
                        b.release(key)
                    on_finish(live.pop(key))
                else:
                    ask(conv, "assistant" if speaker == "user" else "user")
        on_step(len(live), new_tokens, turns)
