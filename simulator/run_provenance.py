"""The `provenance` block of a simulation's run.json (userlm.provenance.provenance, filled from the run)."""

from __future__ import annotations

import dataclasses

from userlm.provenance import chat_template_sha256, provenance
from userlm.scenarios import Scenario


def run_provenance(cfg, scenarios: list[Scenario], info: dict) -> dict:
    """`cfg` a SimulationConfig, `info` the run.json being started (its identity and model identities)."""
    sampling = {s.id: {"user": dataclasses.asdict(s.user_sampling),
                       "assistant": dataclasses.asdict(s.assistant_sampling)} for s in scenarios}
    user = info["user_model"]
    return provenance(
        info["identity"],  # the config and the scenario set that make two runs the same run
        models={"user": user, "assistant": info["assistant_model"], "user_kind": info["user_kind"],
                "user_adapter_manifest_sha256": user.get("manifest_sha256")},
        seeds={"seed": cfg.seed, "conversation_seed": "stable_uint(f'{seed}:{scenario_id}:{sample}', 4) >> 1, "
                                                      "recorded per conversation in transcripts.jsonl"},
        sampling=sampling,
        chat_templates={"user": chat_template_sha256(user["ref"], cfg.user_kind),
                        "assistant": chat_template_sha256(cfg.assistant, cfg.assistant_kind)})
