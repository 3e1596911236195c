"""`simulate --replay DATA_DIR`: held-out real conversations are the contexts. At each real human turn the user
model writes that turn after the whole real history before it (the first from the intent alone); after every AI
turn it may end instead. The run directory is a normal one (docs/replay.md has the record format), so
`evaluate`, `report` and `compare` read it like any run.

A conversation's points are independent (each sees the real history), so they all run side by side, `batch_size`
points at a time, in plan order. Running a conversation's points one after another under one key instead lets
the hf backend start each prompt from the previous point's keys/values, but that saved only 7% on the 2-core CPU
while the chain (up to max_new_tokens decode steps per point, batches emptying as chains end) cost far more
(docs/replay.md). On the GPU engine the points share their history's keys/values across slots instead
(`share_prefixes`, docs/gpu.md). Each point's text depends only on (seed, conversation, point)."""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from simulator.end_decision import overrule, policy_info, resolve_policy
from simulator.guardrails import Guardrails, retry_seed, review, totals
from simulator.replay_fit import fit_points
from simulator.replay_plan import plan_hash, plan_points, replay_plan
from simulator.run_dir import RUN_KIND, check_run_dir, finished_conversations, merge_shards
from simulator.run_provenance import replay_provenance
from simulator.sim_config import SimulationConfig, _backend_options, _identity, identity_config
from userlm.backends import Backend, GenerationRequest, Sampling
from userlm.config import to_dict
from userlm.end_policy import EndPolicy
from userlm.io import UserError, append_jsonl, atomic_write_json, read_jsonl, stable_uint
from userlm.users import UserSpec, parse_user, user_sees_intent, user_system

# What self-play reads and replay does not (the assistant's turns are the real ones): not part of its identity.
NOT_REPLAYED = ("out", "batch_size", "scenarios", "samples", "assistant", "assistant_backend", "replay")


def point_seed(seed: int, conversation_id: str, index: int | None = None) -> int:
    return stable_uint(f"{seed}:replay:{conversation_id}" + ("" if index is None else f":{index}"), 4) >> 1


@dataclass
class Replayed:
    """One real conversation being replayed: its planned points, and those done so far."""
    run: int
    sample: int
    example: dict
    seed: int
    intent: str | None
    told: bool  # the user's system prompt carries the intent
    points: list[dict]
    upto: int  # the messages replayed: all, or those before the first point left out by max_turns
    system: str | None = None
    backend: Backend | None = None
    sampling: Sampling = field(default_factory=Sampling)
    budget: int = 2048  # prompt tokens at most
    history_cut: str = "latest"  # which turns a point over the budget sees (simulator/replay_fit.py)
    fitted: list = field(default_factory=list)  # point number -> (its messages, turns cut, prompt ids), found at once
    done: dict[int, dict] = field(default_factory=dict)  # point number -> what the model did there
    cuts: dict[int, int] = field(default_factory=dict)  # point number -> turns cut from its history
    guardrails: Guardrails | None = None  # the user side's (simulator/guardrails.py); None: off
    attempts: Counter = field(default_factory=Counter)  # point number -> resamples so far
    fired: Counter = field(default_factory=Counter)  # guardrail -> times it acted in this conversation
    end_policy: EndPolicy | None = None  # the user side's learned end policy (simulator/end_decision.py)
    lm_ends: str = "drop"
    policy_counts: Counter = field(default_factory=Counter)  # the model's ends the policy overruled

    @property
    def key(self) -> str:
        return f"{self.run}/{self.sample}"

    @property
    def finished(self) -> bool:
        return len(self.done) == len(self.points)

    def request(self, j: int) -> GenerationRequest:
        point = self.points[j]
        if not self.fitted:
            self.fitted = fit_points(self.backend.tokenizer, self.example["messages"], [p["index"] for p in self.points],
                                     self.system, self.budget, self.history_cut)
        messages, self.cuts[j], ids = self.fitted[j]
        seed = point_seed(self.seed, self.example["id"], point["index"])
        return GenerationRequest(messages, self.sampling, retry_seed(seed, self.attempts[j]) if self.attempts[j] else seed,
                                 prompt_ids=ids)

    def add(self, j: int, raw: str, tokens: int, truncated: bool, latency: float) -> bool:
        """Takes point j's generated turn; False when a guardrail wants it resampled (`request(j)` again)."""
        before = self.example["messages"][:self.points[j]["index"]]
        last_ai = next((m["content"] for m in reversed(before) if m["role"] == "assistant"), None)
        r = review(self.guardrails, raw, truncated, sum(m["role"] == "user" for m in before), last_ai,
                   self.attempts[j], self.fired)
        r = overrule(self.end_policy, self.lm_ends, before, r, self.attempts[j], self.policy_counts)
        if r.resample:
            self.attempts[j] += 1
            return False
        self.done[j] = {**self.points[j], "generated": r.text or None, "ended": r.ended,
                        "truncated": r.truncated and not r.ended, "tokens": tokens, "cut": self.cuts[j],
                        "latency_s": round(latency, 3), **({"end_by": "model" if r.ended else None}
                                                            if self.end_policy else {})}
        return True

    def policy_end(self, j: int) -> bool:
        """Point j ended by the end policy, without generating a turn (done at once); False: the model writes."""
        history = self.example["messages"][:self.points[j]["index"]]
        if self.end_policy is None or not self.end_policy.ends(history, self.seed):
            return False
        self.done[j] = {**self.points[j], "generated": None, "ended": True, "truncated": False, "tokens": 0,
                        "cut": 0, "latency_s": 0.0, "end_by": "policy"}
        return True

    def record(self, user: UserSpec, cfg: SimulationConfig, split: str) -> dict:
        done = [self.done[j] for j in range(len(self.points))]
        msgs, at = self.example["messages"], {p["index"]: p for p in done}
        turns = []
        for i, m in enumerate(msgs[:self.upto]):
            p = at.get(i)
            if m["role"] == "assistant":
                turns.append({"role": "assistant", "text": m["content"]})
            elif p and p["generated"] is not None:
                turns.append({"role": "user", "text": p["generated"], "tokens": p["tokens"],
                              "truncated": p["truncated"], "latency_s": p["latency_s"], "real": m["content"]})
        return {"scenario_id": f"replay:{split}", "sample": self.sample, "conversation_id": self.example["id"],
                "stop_reason": "replayed", "seed": self.seed, "n_user_turns": sum(t["role"] == "user" for t in turns),
                "turns": turns, "real_turns": [{"role": m["role"], "text": m["content"]} for m in msgs],
                "points": [{k: v for k, v in p.items() if k != "latency_s"} for p in done],
                "scenario_intent": self.intent, "user_told_intent": self.told,
                "end_recorded": bool(self.example.get("end_recorded")), "user_model": cfg.user, "user_kind": user.kind,
                **({"guardrails": dict(self.fired)} if self.guardrails else {}),
                **({"end_policy": dict(self.policy_counts)} if self.end_policy else {})}


def replay_conversations(pending: list[Replayed], batch_size: int, on_finish: Callable[[Replayed], None],
                         on_point: Callable[[int, int], None] = lambda *_: None) -> None:
    """`batch_size` points in flight, in plan order; the next is submitted as soon as one finishes, and a
    conversation is handed to `on_finish` once all its points are done."""
    backends = list({id(c.backend): c.backend for c in pending}.values())
    engines = [(e, e.share_prefixes) for e in (getattr(b, "slots", None) for b in backends) if e is not None]
    for engine, _ in engines:  # a conversation's points share their history: its keys/values are computed once
        engine.share_prefixes = True
    try:
        _replay(pending, batch_size, on_finish, on_point, backends)
    finally:
        for engine, was in engines:
            engine.share_prefixes = was


def _replay(pending, batch_size, on_finish, on_point, backends) -> None:
    pending, flying = deque((c, j) for c in pending for j in range(len(c.points))), {}
    while pending or flying:
        while pending and len(flying) < batch_size:
            conv, j = pending.popleft()
            if conv.policy_end(j):  # ended by the user's end policy: nothing to generate
                on_point(len(flying), 0)
                if conv.finished:
                    on_finish(conv)
                continue
            flying[f"{conv.key}#{j}"] = conv, j, time.perf_counter()
            conv.backend.submit((f"{conv.key}#{j}", "user"), conv.request(j))
        for backend in backends:
            for (key, _), out in backend.step():
                backend.release(key)
                conv, j, asked = flying.pop(key)
                if not conv.add(j, out.text, out.tokens, out.finish_reason == "length", time.perf_counter() - asked):
                    flying[key] = conv, j, time.perf_counter()  # resampled by a guardrail, another seed
                    conv.backend.submit((key, "user"), conv.request(j))
                    continue
                on_point(len(flying), out.tokens)
                if conv.finished:
                    on_finish(conv)


@dataclass
class _ReplayRun:
    cfg: SimulationConfig
    user: UserSpec
    out: Path
    info: dict
    todo: list[Replayed]
    transcripts: Path  # transcripts.jsonl, or this process's shard of a data-parallel launch
    tokens: int = 0


def _start(index: int, cfg: SimulationConfig, resume: bool, rank: int = 0, world: int = 1) -> _ReplayRun:
    from userlm.backends import backend_options
    from userlm.provenance import library_versions

    for name in ("batch_size", "max_turns"):
        if (getattr(cfg, name) or 1) < 1:
            raise UserError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    sampling, out = Sampling(), Path(cfg.out)
    if cfg.context_tokens <= sampling.max_new_tokens:
        raise UserError(f"context_tokens must exceed the user's turn budget ({sampling.max_new_tokens}), "
                        f"got {cfg.context_tokens}")
    examples, intents, manifest = replay_plan(cfg.replay, cfg.split, cfg.limit, cfg.with_intent)
    user = parse_user(cfg.user, cfg.user_kind)
    typed = backend_options([cfg.user_kind], cfg.backend_options)[cfg.user_kind]
    policy = resolve_policy(cfg.end_policy, user)
    ident = {"config": identity_config(to_dict(cfg), NOT_REPLAYED),
             "backend_options": {k: v for k, v in typed.items() if k != "concurrency"},
             "data_content_hash": manifest["content_hash"], "plan_sha256": plan_hash(examples, intents),
             **policy_info(policy, cfg.end_policy_lm_ends, identity=True)}
    check_run_dir(out)
    done = finished_conversations(out, ident, resume)
    every = [plan_points(ex) for ex in examples]
    plans = [points[:cfg.max_turns] for points in every]  # max_turns: the first points of each conversation
    info = {"kind": RUN_KIND, "mode": "replay", "identity": ident,
            "config": {**to_dict(cfg), "assistant": "replayed"}, "user_kind": user.kind,
            "user_model": _identity(user.model, cfg.user_kind), "assistant_model": {"ref": "replayed", "kind": "replayed"},
            "user_adapter_manifest": user.manifest.to_dict() if user.manifest else None,
            "versions": library_versions(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "total_conversations": len(examples), "processes": world,
            "replay": {"data_dir": cfg.replay, "split": cfg.split, "limit": cfg.limit, "with_intent": cfg.with_intent,
                       "data_content_hash": manifest["content_hash"], "plan_sha256": ident["plan_sha256"],
                       "context_tokens": cfg.context_tokens, "history_cut": cfg.history_cut,
                       "points": sum(map(len, plans)),
                       "points_left_out": sum(map(len, every)) - sum(map(len, plans)),
                       "decision_points": sum(p["decision"] for ps in plans for p in ps),
                       "conversations_with_intent": len(intents)}, **policy_info(policy, cfg.end_policy_lm_ends)}
    info["provenance"] = replay_provenance(cfg, info, sampling)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "run.json", info)
    todo = []
    for n, (ex, points, all_points) in enumerate(zip(examples, plans, every)):
        if (f"replay:{cfg.split}", n) in done:
            continue
        intent, told = intents.get(ex["id"]), user_sees_intent(user) and ex["id"] in intents
        upto = all_points[len(points)]["index"] if len(points) < len(all_points) else len(ex["messages"])
        todo.append(Replayed(index, n, ex, point_seed(cfg.seed, ex["id"]), intent, told, points, upto,
                             system=user_system(user, intent if told else ""), sampling=sampling,
                             budget=cfg.context_tokens - sampling.max_new_tokens, history_cut=cfg.history_cut,
                             guardrails=Guardrails.parse(cfg.user_guardrails), end_policy=policy,
                             lm_ends=cfg.end_policy_lm_ends))
    transcripts = out / "transcripts.jsonl" if world == 1 else out / "shards" / f"rank-{rank}.jsonl"
    transcripts.parent.mkdir(parents=True, exist_ok=True)
    return _ReplayRun(cfg, user, out, info, todo[rank::world], transcripts)  # every world-th conversation


def replay_together(cfgs: list[SimulationConfig], resume: bool = False, console=None) -> list[Path]:
    """Several replay runs in one loop (users of the same model share one backend and its batches), each
    written as `simulate --replay` alone would write it. Under `accelerate launch` each process takes every N-th
    conversation on its own GPU into shards/rank-R.jsonl, and process 0 merges them in plan order."""
    from rich.console import Console

    from userlm import distributed

    console, rank, world = console or Console(), distributed.rank(), distributed.world_size()
    if len({Path(c.out).resolve() for c in cfgs}) < len(cfgs):
        raise UserError("runs replayed together need different out directories")
    runs = [_start(n, cfg, resume, rank, world) for n, cfg in enumerate(cfgs)]
    distributed.wait_for_everyone()  # every process has read the finished sets before any appends to them
    started, todo = time.perf_counter(), [c for r in runs for c in r.todo]
    if todo:
        _run_todo(runs, todo, "replay" + (f" {len(runs)} runs" if len(runs) > 1 else "")
                  + (f" {rank}/{world}" if world > 1 else ""), console)
    distributed.wait_for_everyone()
    for r in runs if rank == 0 else []:
        merge_shards(r.out, [(f"replay:{r.cfg.split}", n) for n in range(r.info["total_conversations"])])  # plan order
        records = list(read_jsonl(r.out / "transcripts.jsonl")) if (r.out / "transcripts.jsonl").exists() else []
        r.info["replay"]["points_cut"] = sum(p.get("cut", 0) > 0 for rec in records for p in rec["points"])
        if r.cfg.user_guardrails:  # each guardrail's firings, all told
            r.info["guardrails"] = {"options": r.cfg.user_guardrails, "fired": totals(records)}
        r.info["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        r.info["generated_tokens" if world == 1 else "generated_tokens_process_0"] = r.tokens
        r.info["seconds"] = round(time.perf_counter() - started, 1)
        atomic_write_json(r.out / "run.json", r.info)
        if not r.todo:
            console.print(f"{r.out}: all {len(records)} conversations already done")
        elif r.info["replay"]["points_cut"]:
            console.print(f"{r.out}: {r.info['replay']['points_cut']} of {r.info['replay']['points']} points had "
                          f"their history cut to context_tokens={r.cfg.context_tokens}")
    return [r.out for r in runs]


def _run_todo(runs: list[_ReplayRun], todo: list[Replayed], label: str, console) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from userlm.backends import get_backend

    for r in runs:
        options = _backend_options(r.cfg, [r.cfg.user_kind])[r.cfg.user_kind]
        backend = get_backend(r.cfg.user_kind, r.user.model, **options)
        for conv in r.todo:
            conv.backend = backend
    started, tokens, points = time.perf_counter(), 0, 0  # the rates shown count model loading

    def finish(conv: Replayed) -> None:
        r = runs[conv.run]
        append_jsonl(r.transcripts, {**conv.record(r.user, r.cfg, r.cfg.split),
                                                   "user_adapter_manifest_sha256": r.info["user_model"].get("manifest_sha256")})
        r.tokens += sum(p["tokens"] for p in conv.done.values())

    def point(live: int, new_tokens: int) -> None:
        nonlocal tokens, points
        tokens, points = tokens + new_tokens, points + 1
        elapsed = time.perf_counter() - started
        bar.update(task, advance=1, description=f"{live} in flight, {points / elapsed:.1f} points/s, {tokens / elapsed:.0f} tok/s")

    with Progress(TextColumn(f"[bold]{label}[/bold]"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("starting", total=sum(len(c.points) for c in todo))
        replay_conversations(todo, max(r.cfg.batch_size for r in runs), finish, point)
    seconds = time.perf_counter() - started
    console.print(f"{label}: {tokens} tokens in {seconds:.1f} s after loading the model ({tokens / seconds:.0f} tok/s)")
