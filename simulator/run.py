"""`simulate`: scenarios x samples -> transcripts.jsonl (appended as conversations finish) + run.json."""

from __future__ import annotations

import dataclasses
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from simulator.end_decision import policy_info, resolve_policy
from simulator.guardrails import Guardrails, totals
from simulator.loop import Conversation, Side, run_conversations
from simulator.run_dir import RUN_KIND, check_run_dir, finished_conversations, merge_shards  # noqa: F401
from simulator.run_provenance import run_provenance
from simulator.sim_config import (  # noqa: F401 (SimulationConfig is imported from here by its users)
    REPLAY_FIELDS,
    SimulationConfig,
    _backend_options,
    _identity,
    identity_config,
)
from userlm.config import to_dict
from userlm.io import UserError, append_jsonl, atomic_write_json, read_jsonl, stable_uint
from userlm.locks import locked
from userlm.scenarios import Scenario, load_scenarios, scenarios_hash
from userlm.users import UserSpec, parse_user, user_sees_intent, user_system


def conversation_seed(seed: int, scenario_id: str, sample: int) -> int:
    return stable_uint(f"{seed}:{scenario_id}:{sample}", 4) >> 1


def plan(cfg: SimulationConfig) -> tuple[list[Scenario], list[tuple[Scenario, int]]]:
    for name in ("samples", "max_turns", "batch_size"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise UserError(f"{name} must be >= 1, got {value}")
    scenarios = load_scenarios(cfg.scenarios)
    if cfg.max_turns is not None:
        scenarios = [dataclasses.replace(s, max_turns=cfg.max_turns) for s in scenarios]
    if cfg.samples is not None:
        scenarios = [dataclasses.replace(s, samples=cfg.samples) for s in scenarios]
    jobs = [(s, i) for s in scenarios for i in range(s.samples)]
    return scenarios, jobs


def run_identity(cfg: SimulationConfig, scenarios: list[Scenario]) -> dict:
    """What must match for --resume (and for caches) to treat two runs as the same."""
    from userlm.backends import backend_options

    keep = identity_config(to_dict(cfg), ("out", "batch_size", *REPLAY_FIELDS))
    # typed, so `--backend-arg retries=0` and YAML `retries: 0` are one run; concurrency changes no result
    typed = backend_options([cfg.user_kind, cfg.assistant_kind], cfg.backend_options)
    keep["backend_options"] = {k: v for options in typed.values() for k, v in options.items() if k != "concurrency"}
    return {"config": keep, "scenarios_sha256": scenarios_hash(scenarios)}


@dataclass
class _Run:
    """One run's part of a simulation in this process: where it goes and the conversations left to do here."""
    cfg: SimulationConfig
    user: UserSpec
    out: Path
    jobs: list[tuple[Scenario, int]]
    done: set
    info: dict
    todo: list[Conversation]
    transcripts: Path
    tokens: int = 0


def simulate(cfg: SimulationConfig, resume: bool = False, console=None) -> Path:
    """Under `accelerate launch` / `torchrun` each process takes every N-th conversation on its own GPU and
    appends to shards/rank-R.jsonl; process 0 merges them when all are done. A conversation's text depends
    only on its seed, so the split changes nothing, and --resume skips what any process finished."""
    if cfg.replay:
        from simulator.replay import replay_together

        return replay_together([cfg], resume, console)[0]
    return simulate_together([cfg], resume, console)[0]


def simulate_together(cfgs: list[SimulationConfig], resume: bool = False, console=None) -> list[Path]:
    """Several runs in one conversation loop, each written as `simulate` alone would write it. Sides that use the
    same model share one backend and its batches (three users against one assistant decode as one batch, where
    a small batch costs nearly as much as a large one: decoding on a CPU reads every weight each step)."""
    from rich.console import Console

    from userlm import distributed

    console = console or Console()
    rank, world = distributed.rank(), distributed.world_size()
    if len({Path(c.out).resolve() for c in cfgs}) < len(cfgs):
        raise UserError("runs simulated together need different out directories")
    with ExitStack() as locks:
        for cfg in cfgs if rank == 0 else []:  # one writer per run directory (the ranks of a launch are one)
            locks.enter_context(locked(cfg.out, "--out"))
        return _simulate_locked(cfgs, resume, console, rank, world)


def _simulate_locked(cfgs: list[SimulationConfig], resume: bool, console, rank: int, world: int) -> list[Path]:
    from userlm import distributed

    runs = [_start_run(n, cfg, resume, rank, world) for n, cfg in enumerate(cfgs)]
    distributed.wait_for_everyone()  # every process has read the finished sets before any appends to them
    started, todo = time.perf_counter(), [c for r in runs for c in r.todo]
    if todo:
        label = "simulate" + (f" {len(runs)} runs" if len(runs) > 1 else "") + (f" {rank}/{world}" if world > 1 else "")
        run_todo(runs, todo, label, console)
    distributed.wait_for_everyone()
    for r in runs if rank == 0 else []:
        merge_shards(r.out, [(s.id, i) for s, i in r.jobs])
        r.info["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        r.info["generated_tokens" if world == 1 else "generated_tokens_process_0"] = r.tokens
        r.info["seconds"] = round(time.perf_counter() - started, 1)
        if r.cfg.user_guardrails and (r.out / "transcripts.jsonl").exists():  # each guardrail's firings, all told
            r.info["guardrails"] = {"options": r.cfg.user_guardrails,
                                    "fired": totals(read_jsonl(r.out / "transcripts.jsonl"))}
        atomic_write_json(r.out / "run.json", r.info)
        if not r.jobs:
            console.print(f"{r.out}: no conversations to run")
        elif not r.todo and r.done:
            console.print(f"{r.out}: all {len(r.jobs)} conversations already done")
    return [r.out for r in runs]


def _start_run(index: int, cfg: SimulationConfig, resume: bool, rank: int, world: int) -> _Run:
    if world > 1 and "vllm" in (cfg.backend, cfg.user_backend, cfg.assistant_backend):
        raise UserError("the vllm backend shards a model over GPUs itself: run one process with "
                        "--backend-arg tensor_parallel_size=N, or `vllm serve --data-parallel-size N` with backend=openai")
    out = Path(cfg.out)
    scenarios, jobs = plan(cfg)
    user = parse_user(cfg.user, cfg.user_kind)
    policy = resolve_policy(cfg.end_policy, user)
    ident = {**run_identity(cfg, scenarios), **policy_info(policy, cfg.end_policy_lm_ends, identity=True)}
    check_run_dir(out)
    done = finished_conversations(out, ident, resume)
    info = {**start_run_info(cfg, user, ident, len(jobs), world), **policy_info(policy, cfg.end_policy_lm_ends)}
    info["provenance"] = run_provenance(cfg, scenarios, info)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "run.json", info)
    guard = Guardrails.parse(cfg.user_guardrails)
    todo = [Conversation(s, i, conversation_seed(cfg.seed, s.id, i), run=index, guardrails=guard, end_policy=policy,
                         lm_ends=cfg.end_policy_lm_ends)
            for s, i in jobs if (s.id, i) not in done][rank::world]
    transcripts = out / "transcripts.jsonl" if world == 1 else out / "shards" / f"rank-{rank}.jsonl"
    transcripts.parent.mkdir(parents=True, exist_ok=True)
    return _Run(cfg, user, out, jobs, done, info, todo, transcripts)


def start_run_info(cfg: SimulationConfig, user: UserSpec, ident: dict, total: int, world: int) -> dict:
    from userlm.provenance import library_versions

    return {
        "kind": RUN_KIND, "identity": ident, "config": to_dict(cfg), "user_kind": user.kind,
        "user_model": _identity(user.model, cfg.user_kind),
        "assistant_model": _identity(cfg.assistant, cfg.assistant_kind),
        "user_adapter_manifest": user.manifest.to_dict() if user.manifest else None, "versions": library_versions(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "total_conversations": total, "processes": world,
    }


def run_todo(runs: list[_Run], todo: list[Conversation], label: str, console) -> None:
    """Runs `todo` with a progress bar, appending each conversation to its run's transcripts as it finishes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from userlm.backends import get_backend

    started, tokens, turns = time.perf_counter(), 0, 0  # the rates shown count model loading
    for r in runs:
        options = _backend_options(r.cfg, [r.cfg.user_kind, r.cfg.assistant_kind])
        user_side = Side(get_backend(r.cfg.user_kind, r.user.model, **options[r.cfg.user_kind]), "user",
                         lambda s, user=r.user: user_system(user, s.intent, s.persona))
        assistant_side = Side(get_backend(r.cfg.assistant_kind, r.cfg.assistant, **options[r.cfg.assistant_kind]),
                              "assistant", lambda s: s.assistant_system or None)
        for conv in r.todo:
            conv.user, conv.assistant = user_side, assistant_side

    def finish(conv: Conversation) -> None:
        r = runs[conv.run]
        told = user_sees_intent(r.user) and bool(conv.scenario.intent or conv.scenario.persona)
        append_jsonl(r.transcripts, {
            "scenario_id": conv.scenario.id, "sample": conv.sample, "seed": conv.seed,
            "stop_reason": conv.stop_reason, "n_user_turns": len(conv.user_turns), "turns": conv.turns,
            # the scenario's intent (what the conversation should pursue) and whether the user was told it
            "scenario_intent": conv.scenario.intent, "user_told_intent": told,
            "user_model": r.cfg.user, "user_kind": r.user.kind, "assistant_model": r.cfg.assistant,
            "user_adapter_manifest_sha256": r.info["user_model"].get("manifest_sha256"),
            **({"guardrails": dict(conv.fired)} if conv.guardrails else {}),
            **({"end_by": conv.end_by, "end_policy": dict(conv.policy_counts)} if conv.end_policy else {})})
        r.tokens += conv.generated_tokens
        bar.advance(task)

    def step(live: int, new_tokens: int, new_turns: int) -> None:
        nonlocal tokens, turns
        tokens, turns = tokens + new_tokens, turns + new_turns
        elapsed = time.perf_counter() - started
        bar.update(task, description=f"{live} live, {turns / elapsed:.1f} turns/s, {tokens / elapsed:.0f} tok/s")

    with Progress(TextColumn(f"[bold]{label}[/bold]"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("starting", total=len(todo))
        run_conversations(todo, max(r.cfg.batch_size for r in runs), finish, step)
