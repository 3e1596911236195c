"""`simulate`'s config (SimulationConfig, one dataclass for self-play and --replay) and the backend options and
model identities both read: its own module so that simulator/run.py and simulator/replay.py each import it and
neither imports the other."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from userlm.config import DType, Quantization, check_fields, flag_name, option
from userlm.io import UserError
from userlm.models import DEFAULT_ASSISTANT
from userlm.scenarios import MAX_SAMPLES, MAX_TURNS

# The hf backend's options that fields of SimulationConfig set (option -> field): not a --backend-arg.
HF_FIELD_OPTIONS = {"quantization": "quantization", "dtype": "dtype", "max_batch": "batch_size",
                    "static_cache": "static_cache"}


# Fields only `--replay` reads (kept out of a self-play run's identity, so runs written before them resume).
REPLAY_FIELDS = ("replay", "split", "limit", "with_intent", "context_tokens", "history_cut")


# The end policy is in an identity as the policy resolved (its file's hash), only where one is used.
END_POLICY_FIELDS = ("end_policy", "end_policy_lm_ends")


def identity_config(config: dict, leave_out: tuple[str, ...]) -> dict:
    """A run's config as its identity: without `leave_out`, nor guardrails when none is on (so that runs
    written before `user_guardrails` existed still resume)."""
    return {k: v for k, v in config.items() if k not in leave_out and not (k == "user_guardrails" and not v)
            and not (k == "history_cut" and v == "latest") and k not in END_POLICY_FIELDS}


@dataclass
class SimulationConfig:
    scenarios: str = option("scenarios/smoke", "scenario YAML file or folder")
    user: str = option(f"prompted:{DEFAULT_ASSISTANT}",
                       "user model: an adapter dir from `userlm train`, base:<ref> (an untrained model in the "
                       "user-model format), or prompted:<ref> (a stock instruct model told to act as a human user: "
                       "the baseline to beat)")
    assistant: str = option(DEFAULT_ASSISTANT, "assistant model reference")
    out: str = option("results/runs/run", "run directory (transcripts.jsonl, run.json)")
    backend: str = option("hf", "backend of both sides unless overridden: hf | vllm | openai")
    user_backend: str | None = option(None, "backend of the user side (default: --backend)")
    assistant_backend: str | None = option(None, "backend of the assistant side (default: --backend)")
    samples: int | None = option(None, "conversations per scenario (overrides the scenario files)",
                                 min=1, max=MAX_SAMPLES)
    max_turns: int | None = option(None, "user turns at most (overrides the scenario files; --replay: points per "
                                         "conversation, the first ones)", min=1, max=MAX_TURNS)
    seed: int = option(0, "seed of every conversation (each gets its own, derived from it)")
    batch_size: int = option(32, "live conversations at once", min=1)
    quantization: Quantization = option("none", "hf backend: none | nf4 | auto")
    # bfloat16 on a CPU with AMX decodes ~1.4x faster.
    dtype: DType = option("auto", "hf backend: auto = bfloat16 on GPU, float32 on CPU")
    static_cache: Literal["auto", "on", "off"] = option(
        "auto", "hf backend: the static-slot engine (fixed slots, batched prefill, decode as a CUDA graph); "
                "auto = on CUDA")
    replay: str | None = option(None, "a prepared data dir (`userlm data prepare`): instead of self-play, replay its "
                                "held-out conversations, the user writing each real human turn (or ending) after "
                                "the real history before it (docs/replay.md)")
    split: str = option("test", "--replay: the split replayed")
    limit: int | None = option(None, "--replay: conversations at most (one per tree, a fixed seeded choice)", min=1)
    with_intent: bool = option(False, "--replay: only conversations with a written intent (intents.jsonl)")
    context_tokens: int = option(2048, "--replay: prompt plus the user's turn at most, in tokens; a longer history "
                                       "loses its oldest turns (counted in run.json)", min=1)
    history_cut: Literal["latest", "blocks"] = option(
        "latest", "--replay: a history over context_tokens keeps its latest turns that fit (latest), or the turns "
                  "the conversation's previous point kept while they fit, else those within half the budget "
                  "(blocks: points share their prompt's prefix, computed once on the GPU; docs/gpu.md)")
    user_guardrails: dict[str, int] = option(
        factory=dict, flag="guardrail",
        help="a guardrail of the user side (repeatable KEY=VALUE, all off by default; docs/user-behaviour.md): "
             "min_turns, no_assistant_opening, echo_words, max_words, retries")
    end_policy: str = option(
        "auto", "the user's learned end policy (docs/user-behaviour.md): auto = the user adapter's end_policy.json "
                "where it has one, off, or an end_policy.json file; it decides each end, the model writes the turns")
    end_policy_lm_ends: Literal["drop", "keep"] = option(
        "drop", "with an end policy, the model's own end marker: drop (the policy alone ends) or keep (either ends)")
    backend_options: dict = option(
        factory=dict, flag="backend-arg",
        help="an option of the backends in use, typed by their constructors (repeatable KEY=VALUE): openai "
             "base_url, api_key, concurrency, timeout_s, retries; vllm tensor_parallel_size, "
             "gpu_memory_utilization, max_lora_rank, max_model_len")

    # Fields of earlier versions, and what replaced them (an old YAML config gets this as its error).
    REPLACED_FIELDS = {f"{kind}_{name}": f"backend_options: {{{name}: ...}} (--backend-arg {name}=VALUE)"
                       for kind, names in (("openai", ("base_url", "api_key", "concurrency", "timeout_s", "retries")),
                                           ("vllm", ("tensor_parallel_size", "gpu_memory_utilization")))
                       for name in names}

    def __post_init__(self):
        check_fields(self)
        from simulator.guardrails import Guardrails

        Guardrails.parse(self.user_guardrails)
        fields = {f.name: f for f in dataclasses.fields(self)}
        for key in self.backend_options:
            if key in HF_FIELD_OPTIONS:
                name = HF_FIELD_OPTIONS[key]
                raise UserError(f"backend option '{key}' has its own setting: use {flag_name(fields[name])} "
                                f"({name}: in YAML), not --backend-arg {key}=...")

    @property
    def user_kind(self) -> str:
        return self.user_backend or self.backend

    @property
    def assistant_kind(self) -> str:
        return self.assistant_backend or self.backend


def _backend_options(cfg: SimulationConfig, kinds: list[str]) -> dict[str, dict]:
    """Per backend kind: its options (hf's from the config's own fields, the rest from backend_options)."""
    from userlm.backends import backend_options

    per_kind = backend_options(kinds, cfg.backend_options)
    if "hf" in per_kind:
        per_kind["hf"] = {**{key: getattr(cfg, name) for key, name in HF_FIELD_OPTIONS.items()}, **per_kind["hf"]}
    return per_kind


def _identity(ref: str, backend: str) -> dict:
    if backend == "openai":
        return {"ref": ref, "kind": "served"}
    from userlm.models import identity

    return identity(ref)
