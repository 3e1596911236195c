"""The hf backend's GPU engine: a fixed set of conversation slots x positions, so that one decode step has the
same shapes from step to step and can be replayed as a CUDA graph.

On a GPU the dynamic scheduler (`hf.py`) is bound by Python and kernel launches, not by the card: ~30 ms a
forward pass at any batch for Qwen2.5-0.5B's shapes, under 1% of the memory bandwidth (results/benchmarks/).
Here:
- each layer's keys/values live in one buffer [slots, kv heads, positions, head dim] (`slot_kv.py`); a row keeps
  its slot from prefill to its last token, and writes its next position in place (no rebuild, no concatenation);
- a decode step runs the rows of slots [0, b) against positions [0, Lb), b and Lb rounded up to buckets, and is
  captured once per (b, Lb) as a CUDA graph, then replayed (`decode_graphs.py`, which also fuses its small
  kernels with `torch.compile` under `compile_decode`);
- joining requests are prefilled together, their new tokens packed into one sequence (`slot_prefill.py`),
  straight into their slots; the tokens a conversation's previous turn left cached are copied into its slot
  first, so only new tokens are fed;
- rows sample exactly as in `hf.py` (per-row seeded generators), finished rows keep their KV for the next turn;
  a decode step samples on the GPU inside its graph (`sample_head`: each row's uniform, temperature and top-p
  are static inputs, its uniform drawn on the host from the row's generator beforehand; compiled under
  `compile_head`, its 128 most likely tokens chosen by the bf16 logits, `head_topk`), and only a row whose
  nucleus is wider than the 128 most likely tokens makes the batch sort the vocabulary after the replay
  (`sample_sorted`), or with `wide_sort` off takes `sample_wide`'s token (no sort; its search compiled under
  `compile_decode`), the same paths and the same decisions as `sample_next` (with `search`). On CUDA with Triton,
  `wide_sort` off draws by rejection instead (`sample_rejection`, one Triton kernel, `triton_top_p.py`): every row,
  with no head (`rejection_every_row`), or only the wide ones; another draw than `sample_next`'s, a row's token
  still a function of its own logits, top_p and uniform."""

from __future__ import annotations

import time
from collections.abc import Hashable

from userlm.backends import live_attention, triton_top_p
from userlm.backends.chunk_decode import ChunkDecode, batch_bucket
from userlm.backends.decode_graphs import DecodeGraphs
from userlm.backends.slot_kv import SlotBuffers, register_slot_attention, slot_cache_class
from userlm.backends.slot_prefill import SlotPrefill


class SlotEngine(SlotPrefill, DecodeGraphs, ChunkDecode, SlotBuffers):
    def __init__(self, backend, slots: int, graphs: bool, prefill_tokens: int = 16384, compile_decode: bool = False):
        import torch

        register_slot_attention()
        self.backend, self.model, self.slots = backend, backend.model, slots
        # prefill_tokens: the tokens a prefill pass computes (packed: its new tokens; left-padded: rows x width)
        self.use_graphs, self.prefill_tokens = graphs, prefill_tokens
        # prefill_padding (`slot_prefill.py`, left-padded passes only: `pack_prefill` off): a prefill pass over 2,048
        # tokens holds at most a tenth of them as left padding. On CUDA, where measured (H200, 7B/128, 2026-11-30:
        # 52,608 -> 42,612 tokens computed in 4 -> 11 passes, 11,840 -> 12,386 tok/s;
        # results/benchmarks/2026-11-30-h200-sample-head.md)
        self.prefill_padding = 0.1 if backend.device.type == "cuda" else 1.0
        configs = {id(m.config): m.config for m in self.model.modules() if hasattr(m, "config")}
        self.configs = [c for c in configs.values() if hasattr(c, "num_key_value_heads")]
        config = self.configs[0]
        self.n_layers, self.kv_heads = config.num_hidden_layers, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.heads = config.num_attention_heads
        self.max_positions = getattr(config, "max_position_embeddings", 32768)
        self.device = backend.device
        self.dtype = next(p.dtype for p in self.model.parameters() if p.is_floating_point())
        if self.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            self.dtype = torch.bfloat16
        self.length = 0  # positions per slot; buffers are allocated on first use and doubled when a row needs more
        self.keys = self.values = self.mask = None
        self.rows: list = [None] * slots
        self.resident: list = [None] * slots  # slot -> the tokens whose keys/values it holds (slot_prefill.py)
        self.ahead: dict = {}  # slot -> (its row, the row's next uniforms), drawn `ahead_size` at a time (chunk_decode.py)
        # uniforms drawn a row at a time: 1 (one a step, while the GPU runs it: as before), or AHEAD (64, opt-in:
        # 1.00x at 7B/128, 0.94-1.02x at 0.5B/32 on an H200, 2026-11-30; results/benchmarks/2026-11-30-h200-decode-host.md)
        self.ahead_size = 1
        self.graphs: dict = {}
        self.pool = None
        self.cache = slot_cache_class()(self)
        self.mode = None  # what `write_and_read` does in the pass under way: ("decode", b, Lb) or ("prefill", ...)
        self.graph_error: str | None = None
        n = slots
        self.tokens = torch.zeros(n, 1, dtype=torch.long, device=self.device)  # the decode step's static inputs
        self.positions = torch.zeros(n, 1, dtype=torch.long, device=self.device)
        self.writes = torch.zeros(n, dtype=torch.long, device=self.device)
        self.slot_index = torch.arange(n, device=self.device)
        self.true = torch.ones((), dtype=torch.bool, device=self.device)
        self.staging = torch.zeros(3, n, dtype=torch.long, pin_memory=self.device.type == "cuda")
        # sampling's static inputs: an idle slot has temperature 0 and top_p 0 (greedy, never widens the nucleus)
        self.gpu_sampling = True  # False: sample on the host after the replay (as before; benchmarks compare)
        self.temperatures = torch.zeros(n, dtype=torch.float32, device=self.device)
        self.top_ps = torch.zeros(n, dtype=torch.float32, device=self.device)
        self.uniforms = torch.zeros(n, dtype=torch.float32, device=self.device)
        self.staging_f = torch.zeros(3, n, dtype=torch.float32, pin_memory=self.device.type == "cuda")
        self.wide_steps = 0  # decode steps where some row's nucleus was wider than the head (`sample_wide` ran)
        # wide_sort off (opt-in): rows wider than the head drawn without a sort (`sample_wide`, or on CUDA with
        # Triton the rejection draw below; results/benchmarks/2026-11-30-h200-decode-live-kv.md)
        self.wide_fn, self.wide_sort = None, True
        # compile_head (default with compile_decode on CUDA, where measured: H200, 2026-11-30,
        # results/benchmarks/2026-11-30-h200-sample-head.md): `sample_head` compiled, the logits' cast, temperature
        # and softmax one kernel (its probabilities may differ from eager ones in the last bits, so `verify` can count
        # a row at a boundary); head_by_logits: the top 128 chosen by 16-bit logits (`head_topk`; as `sample_next`)
        self.compile_head = bool(compile_decode) and self.device.type == "cuda"
        self.head_by_logits, self.head_fns = True, {}
        # wide_kernel (CUDA with Triton installed; a failed compile prints one line and falls back to torch's):
        # "triton-rejection", the default: those rows drawn by rejection (`sample_rejection`, one Triton program a row,
        # `triton_top_p.rejection_tokens`: 0.084 against the top-p row kernel's 0.770 ms at 128 flat rows x 152k,
        # 0.068 against 0.613 at 32; with rejection_every_row 7B/128 7.16 -> 6.42 ms a step side by side; H200
        # 2026-12-01, results/benchmarks/2026-12-01-h200-rejection-draw.md); "triton": `sample_wide`'s own
        # draw by the top-p kernels (`triton_top_p.py`). Else "torch" (`sample_wide`; "rejection": `sample_rejection`)
        self.wide_kernel = "triton-rejection" if self.device.type == "cuda" and triton_top_p.available() is None else "torch"
        # rejection_every_row (with a rejection wide_kernel and wide_sort off): no head, every row drawn by rejection
        # (a greedy row: its most likely token), so no top 128 a step and no wide flags
        self.rejection_every_row = True
        # softmax_in_kernel (with every row drawn by the Triton rejection kernel): the kernel computes each row's
        # probabilities from its logits, pass by pass, instead of reading a float32 softmax written before it
        self.softmax_in_kernel = True
        # verify (benchmarks): each step's rows drawn again eagerly (`sample_next`; every row by rejection: torch's
        # `sample_rejection`), the differences counted (wide rows alone by rejection count as differences)
        self.verify = False
        self.verified = self.mismatches = 0
        self.compile_decode, self.fused = compile_decode, None
        # fuse_projections: q/k/v and gate/up one matmul each in the decode step (`fused_projections.py`; the
        # weights become views of the concatenation); fuse_kv_write (with compile_decode): a step's key and value
        # writes one compiled kernel a layer. On with compile_decode on CUDA, where measured (H200, 2026-11-30:
        # 0.5B/32 2.79 -> 2.14 ms a step, 7B/128 10.8 -> 7.8 ms; results/benchmarks/2026-11-30-h200-fused-decode.md)
        self.fuse_projections = self.fuse_kv_write = bool(compile_decode) and self.device.type == "cuda"
        self.kv_writer = None
        # live_attention: decode attention reads each row's own positions only (`live_attention.py`; flex attention
        # compiled, one graph a batch bucket at every length). On where it was measured (CUDA graphs + compile:
        # 7B/128 1.15x, replay's long rows 14.5 -> 12.6 ms a step, H200 2026-11-30); it falls back by itself
        self.live_attention, self.live_kv = graphs and compile_decode and self.device.type == "cuda", None
        # attention_options: flex decoding's `kernel_options` ({"BLOCK_N": 128}: 1.00x all-in at 7B/128, 2026-12-01)
        self.attention_options: dict = {}
        # wide_in_graph (with wide_sort off): after a step that had a wide row, the next step's graph runs
        # `sample_wide` itself (one sync a step, no eager launches after it); a step without one reverts. Opt-in
        self.wide_in_graph, self.last_wide, self.wide_inside = False, False, False
        # decode_chunk k > 1 (with live attention and GPU sampling): k steps a CUDA graph, one host sync (chunk_decode.py)
        self.decode_chunk, self.chunking, self.uniform_block = 1, 0, None
        self.graph_steps, self.uniform_window = 0, None  # steps a chunk's graph holds (0: all k)

    # ---- buffers ----------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Free the slot buffers and graphs (benchmarks measure each configuration's peak memory afresh)."""
        assert self.live() == 0, "reset with rows in flight"
        self.keys = self.values = self.mask = None
        self.graphs.clear()
        self.pool, self.length = None, 0
        self.resident = [None] * self.slots
        self.inflight = None  # an overlapped chunk's leftover (no live rows: nothing in it is read)

    # ---- scheduling -------------------------------------------------------------------------------------
    def live(self) -> int:
        return sum(r is not None for r in self.rows)

    def step(self) -> list[tuple[Hashable, object]]:
        import torch

        backend = self.backend
        finished = []
        with torch.inference_mode():
            live = self.live()
            if backend.waiting and (backend.continuous or not live):
                joining = []
                while backend.waiting and live + len(joining) < self.slots:
                    joining.append(backend.waiting.popleft())
                if joining:
                    started = time.perf_counter()
                    finished += self._prefill(joining)
                    backend.seconds["prefill"] += time.perf_counter() - started
            if self.live():
                started = time.perf_counter()
                finished += self._decode()
                backend.seconds["decode"] += time.perf_counter() - started
        return finished

    def _decode_now(self) -> list:
        """One decode step, or a chunk of steps read before returning (`ChunkDecode._decode` decides)."""
        import torch

        top = max(i for i, r in enumerate(self.rows) if r is not None) + 1
        b = batch_bucket(top, self.slots)
        longest = max(len(r.ids) for r in self.rows if r is not None) + 1
        k = self._chunk_size()
        self._ensure_length(longest + k - 1)
        lb = self.length if self.live_attention else self._positions_read(longest)
        tokens, positions, writes = [0] * self.slots, [0] * self.slots, [self.trash] * self.slots
        for i, r in enumerate(self.rows[:b]):
            if r is not None:
                tokens[i], positions[i], writes[i] = r.generated[-1], len(r.ids), len(r.ids)
        self.staging.copy_(torch.tensor([tokens, positions, writes]))
        moved = self.staging.to(self.device, non_blocking=True)
        self.tokens[:, 0].copy_(moved[0])
        self.positions[:, 0].copy_(moved[1])
        self.writes.copy_(moved[2])
        index = [i for i, r in enumerate(self.rows[:b]) if r is not None]
        rows = [self.rows[i] for i in index]
        if k > 1:
            return self._decode_chunk(b, lb, index, rows, k)
        if self.gpu_sampling:  # each row's next uniform from its generator (as `_sample` would draw it after)
            temps, top_ps, uniforms = [0.0] * self.slots, [0.0] * self.slots, [0.0] * self.slots
            for i, r in zip(index, rows):
                temps[i], top_ps[i] = r.sampling.temperature, r.sampling.top_p
                uniforms[i] = self._uniforms(i, r, 1)[0]
            self.staging_f.copy_(torch.tensor([temps, top_ps, uniforms], dtype=torch.float32))
            moved_f = self.staging_f.to(self.device, non_blocking=True)
            self.temperatures.copy_(moved_f[0])
            self.top_ps.copy_(moved_f[1])
            self.uniforms.copy_(moved_f[2])
        self.wide_inside = self.gpu_sampling and self.wide_in_graph and not self.wide_sort and self.last_wide
        started = time.perf_counter()
        out = self._run_decode(b, lb)
        if self.gpu_sampling:  # the replay runs asynchronously: draw each row's next uniform meanwhile. Its
            # generator is its own and is dropped with it, so a draw for a row that ends now changes nothing.
            for i, r in zip(index, rows):
                self._uniforms(i, r, 2)
                self._consume(i, 1)
        if self.device.type == "cuda":  # split the step's time between the model and the host (sampling)
            torch.cuda.synchronize()
        self.backend.seconds["decode forward"] += time.perf_counter() - started
        self.backend.counts["decode"] += 1
        self.backend.counts["kv positions"] += sum(len(r.ids) + 1 for r in rows)  # what live attention reads
        for r in rows:
            r.ids.append(r.generated[-1])
        if self.gpu_sampling:
            logits, picked, greedy, probs = out
            picked = picked.tolist()  # b tokens from the head, then b flags: the row's nucleus is wider
            nb = len(greedy)
            self.last_wide = any(picked[nb + i] for i in index)
            if self.last_wide and self.wide_inside:  # the graph's tokens are `sample_wide`'s where wide
                self.wide_steps += 1
                picked = [picked[i] for i in index]
            elif self.last_wide and self.wide_sort:  # the default: `sample_next`'s own
                from userlm.backends.sampling import sample_sorted

                self.wide_steps += 1
                picked = sample_sorted(probs, greedy, self.top_ps[:nb], self.uniforms[:nb]).tolist()
                picked = [picked[i] for i in index]
            elif any(picked[nb + i] for i in index):
                self.wide_steps += 1
                try:
                    wide = self._sample_wide()(probs, self.top_ps[:nb], self.uniforms[:nb]).tolist()
                except Exception as e:  # noqa: BLE001 - a compile that fails: the eager search finds the same nucleus
                    print(f"hf backend: compiled nucleus search failed ({type(e).__name__}); eager from now on",
                          flush=True)
                    self.wide_fn = False
                    wide = self._sample_wide()(probs, self.top_ps[:nb], self.uniforms[:nb]).tolist()
                picked = [wide[i] if picked[nb + i] else picked[i] for i in index]
            else:
                picked = [picked[i] for i in index]
            if self.verify:  # the same draw, eager and in torch
                at = torch.tensor(index, device=self.device)
                self._verify_draws(picked, logits[at], self.temperatures[at], self.top_ps[at], self.uniforms[at])
            for r, token in zip(rows, picked):
                r.generated.append(token)
        else:
            self.backend._sample(rows, out[index])
        return self._finish_slots([i for i, r in zip(index, rows) if self.backend._done(r)])

    def _decode_pass(self, b: int, lb: int):
        """What is captured: a chunk of k steps while `chunking` (`_chunk_pass`), else one step (`_step`)."""
        return self._chunk_pass(b, lb) if self.chunking else self._step(b, lb)

    def _step(self, b: int, lb: int):
        """One decode step: mark each row's new position, then one token for slots [0, b): the logits,
        or with `gpu_sampling` (logits, [b tokens from the head, wide], greedy, probs) (see `sample_head`)."""
        import torch

        # the value is a device tensor: a Python `True` would be copied from the host, which a capture forbids
        self.mask.index_put_((self.slot_index[:b], self.writes[:b]), self.true)
        self.mode = ("decode", b, lb)
        try:
            mask = self.mask[:b, None, None, :lb]
            if self.live_attention:  # the mask is built from each row's position; `mask` is passed unread
                if self.live_kv is None:
                    self.live_kv = live_attention.LiveAttention(self.slots, self.device, compiled=self.device.type == "cuda")
                self.live_kv.options = self.attention_options
                self.live_kv.prepare(b, self.positions, self.heads // self.kv_heads, lb)
            elif self.compile_decode:  # the additive mask once a step, not converted from booleans in every layer
                mask = torch.zeros(mask.shape, dtype=self.dtype, device=self.device).masked_fill_(~mask, float("-inf"))
            with self._compiled():
                logits = self._forward(input_ids=self.tokens[:b], position_ids=self.positions[:b], attention_mask=mask)
        finally:
            self.mode = None
            live_attention.done()
        if not self.gpu_sampling:
            return logits
        return logits, *self._sample_step(logits, b)

    finish_together = True  # rows that end together are copied out in shared gathers (`-batchfin` measures it)

    def _finish_slots(self, slots: list[int]) -> list:
        """Free the slots; each row's keys/values (its `ids`) are copied out for its conversation's next turn
        (`_copy_out`: a turn's rows that end together in a few gathers, not two copies and two mask writes a row)."""
        if not slots:  # most steps and chunks: nothing to launch
            return []
        if not self.finish_together and len(slots) > 1:  # one at a time, as before (a measurement)
            return [done for slot in slots for done in self._finish_slots([slot])]
        rows = [self.rows[slot] for slot in slots]
        kvs = self._copy_out(slots, [len(row.ids) for row in rows]) if self.backend.prefix_cache else [[]] * len(rows)
        self._reset_masks(slots)
        for slot in slots:
            self.rows[slot] = None
            self.ahead.pop(slot, None)
        return [self.backend._finish(row, kv) for row, kv in zip(rows, kvs)]
