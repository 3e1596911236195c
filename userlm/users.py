"""Who plays the user: a trained adapter, an untrained model in the user-model format, or a stock instruct
model prompted to act as a person, and the system prompt each is given for a scenario."""

from __future__ import annotations

from dataclasses import dataclass

from userlm.chat import PROMPTED_USER_SYSTEM, USER_MODEL_SYSTEM, user_model_system
from userlm.io import UserError
from userlm.records import AdapterManifest, read_adapter_manifest


@dataclass(frozen=True)
class UserSpec:
    kind: str  # adapter | base | prompted
    model: str
    system_prompt: str
    manifest: AdapterManifest | None = None


def parse_user(spec: str, backend: str) -> UserSpec:
    """`prompted:<ref>`, `base:<ref>`, an adapter directory, or any other model ref (read as `base:`)."""
    from userlm.models import DEFAULT_ASSISTANT, resolve

    kind, sep, ref = spec.partition(":")
    if sep and kind in ("prompted", "base") and not ref.strip():
        raise UserError(f"user '{spec}': expected a model reference after '{kind}:' (e.g. {kind}:{DEFAULT_ASSISTANT})")
    if spec.startswith("prompted:"):
        return UserSpec("prompted", spec.split(":", 1)[1], PROMPTED_USER_SYSTEM)
    if spec.startswith("base:"):
        return UserSpec("base", spec.split(":", 1)[1], USER_MODEL_SYSTEM)
    if backend != "openai" and resolve(spec).kind == "adapter":
        manifest = read_adapter_manifest(spec)
        return UserSpec("adapter", spec, USER_MODEL_SYSTEM if manifest.system_prompt is None else manifest.system_prompt, manifest)
    return UserSpec("base", spec, USER_MODEL_SYSTEM)


def user_sees_intent(user: UserSpec) -> bool:
    """Prompted baselines and user models trained with intents are told the scenario's intent and persona."""
    return user.kind == "prompted" or bool(user.manifest and user.manifest.trained_with_intent)


def user_system(user: UserSpec, intent: str = "", persona: str = "") -> str:
    """The user side's system prompt for a scenario with this intent and persona."""
    about = " ".join(x for x in (f"You are {persona}." if persona else "",
                                 f"Your goal: {intent}. Reveal it bit by bit, not all at once." if intent else "")
                     if x)
    if user.kind == "prompted":
        return PROMPTED_USER_SYSTEM.format(intent=about + " " if about else "")
    if user_sees_intent(user):
        return user_model_system(user.system_prompt, intent, persona)
    return user.system_prompt
