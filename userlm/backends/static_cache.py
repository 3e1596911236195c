"""The hf backend's GPU engine: a fixed set of conversation slots x positions, so that one decode step has the
same shapes from step to step and can be replayed as a CUDA graph.

On a GPU the dynamic scheduler (`hf.py`) is bound by Python and kernel launches, not by the card: ~30 ms a
forward pass at any batch for Qwen2.5-0.5B's shapes, under 1% of the memory bandwidth (results/benchmarks/).
Here:
- each layer's keys/values live in one buffer [slots, kv heads, positions, head dim]; a row keeps its slot from
  prefill to its last token, and writes its next position in place (no rebuild, no concatenation);
- a decode step runs the rows of slots [0, b) against positions [0, Lb), b and Lb rounded up to buckets, and is
  captured once per (b, Lb) as a CUDA graph, then replayed (one launch instead of ~15 a layer);
- joining requests are prefilled together, left-padded to a common length, straight into their slots; the
  tokens a conversation's previous turn left cached are copied into its slot first, so only new tokens are fed;
- rows sample exactly as in `hf.py` (per-row seeded generators), finished rows keep their KV for the next turn;
  a decode step samples on the GPU inside its graph (`sample_head`: each row's uniform, temperature and top-p
  are static inputs, its uniform drawn on the host from the row's generator beforehand), and only a batch
  whose nucleus is wider than the 128 most likely tokens sorts the vocabulary after the replay
  (`sample_sorted`), the same two paths and the same decision as `sample_next`.
With `compile_decode`, the RMSNorms and the rotary embedding of the decode step run as kernels fused by
`torch.compile` (inductor), captured into the same graph: at 7B's shapes the graph is otherwise ~45 kernels a
layer, two thirds of them small elementwise ones that cost more than the weights' read (results/benchmarks/).
Only the decode step is compiled (fixed shapes per bucket); prefill stays eager.
Padding never reaches a real row: padded queries write their keys to a spare position past the last one
(`trash`), which no mask ever includes."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Hashable

ATTENTION = "userlm_slots"
LENGTH_BUCKET = 256  # attention reads positions [0, Lb): a multiple of this above the longest live row


def _bucket(n: int, limit: int) -> int:
    b = 1
    while b < n:
        b *= 2
    return min(b, limit)


def slot_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """SDPA over the slot buffers with the engine's boolean mask. A one-token query is folded to [rows, kv heads,
    heads per kv head, dim] so grouped-query attention reads each key once instead of copying it per head
    (transformers' sdpa path repeats keys whenever a mask is given, in some versions)."""
    import torch

    rows, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    if q_len == 1:
        out = torch.nn.functional.scaled_dot_product_attention(
            query.reshape(rows, kv_heads, heads // kv_heads, dim), key, value, attn_mask=attention_mask, scale=scaling)
        out = out.reshape(rows, heads, 1, dim)
    else:
        if heads != kv_heads:
            rep = heads // kv_heads
            key = key[:, :, None].expand(-1, -1, rep, -1, -1).reshape(rows, heads, -1, dim)
            value = value[:, :, None].expand(-1, -1, rep, -1, -1).reshape(rows, heads, -1, dim)
        out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                               scale=scaling)
    return out.transpose(1, 2).contiguous(), None


@functools.cache
def _register_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, slot_attention)


@functools.cache
def _slot_cache_class():
    from transformers.cache_utils import Cache

    class SlotCache(Cache):
        """Duck-types transformers' Cache for one forward pass: `update` writes the new keys/values at
        per-row positions of the slot buffers and returns the positions attention reads."""

        def __init__(self, engine):  # Cache.__init__ differs between transformers versions and is not needed
            self.engine, self.layers, self.layer_class_to_replicate, self.offloading = engine, [], None, False

        def update(self, key_states, value_states, layer_idx, *args, **kwargs):
            return self.engine.write_and_read(layer_idx, key_states, value_states)

        def get_seq_length(self, layer_idx: int = 0) -> int:
            return 0  # positions are always passed explicitly

    return SlotCache


def _plain_linears(module) -> bool:
    """Its projections are plain `nn.Linear`: no peft wrapper (`base_layer`), no bitsandbytes subclass inside."""
    import torch

    return all(type(c) is torch.nn.Linear for c in module.children() if isinstance(c, torch.nn.Linear)) \
        and not any(hasattr(c, "base_layer") for c in module.modules())


class SlotKV(list):
    """A finished row's keys/values as `hf.py` keeps them (per layer, [1, kv heads, n, dim]), views of two
    all-layer tensors so that the next turn copies them back in one operation instead of two per layer."""

    def __init__(self, keys, values):
        super().__init__((keys[layer][None], values[layer][None]) for layer in range(keys.shape[0]))
        self.keys, self.values = keys, values


class SlotEngine:
    def __init__(self, backend, slots: int, graphs: bool, prefill_tokens: int = 16384, compile_decode: bool = False):
        import torch

        _register_attention()
        self.backend, self.model, self.slots = backend, backend.model, slots
        self.use_graphs, self.prefill_tokens = graphs, prefill_tokens  # a prefill chunk's rows x padded length
        configs = {id(m.config): m.config for m in self.model.modules() if hasattr(m, "config")}
        self.configs = [c for c in configs.values() if hasattr(c, "num_key_value_heads")]
        config = self.configs[0]
        self.n_layers, self.kv_heads = config.num_hidden_layers, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.max_positions = getattr(config, "max_position_embeddings", 32768)
        self.device = backend.device
        self.dtype = next(p.dtype for p in self.model.parameters() if p.is_floating_point())
        if self.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            self.dtype = torch.bfloat16
        self.length = 0  # positions per slot; buffers are allocated on first use and doubled when a row needs more
        self.keys = self.values = self.mask = None
        self.rows: list = [None] * slots
        self.drawn: dict[int, float] = {}  # slot -> its row's next uniform, drawn while the GPU ran the last step
        self.graphs: dict = {}
        self.pool = None
        self.cache = _slot_cache_class()(self)
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
        self.sorted_steps = 0  # decode steps whose nucleus was wider than the head (the full sort ran)
        self.verify = False  # benchmarks: also run `sample_next` on each step's logits and count the differences
        self.verified = self.mismatches = 0
        self.compile_decode, self.fused = compile_decode, None

    def _fused_parts(self) -> list:
        """(owner, attribute, compiled) for each piece `compile_decode` swaps in during the decode step: every
        RMSNorm module's forward, the modeling module's `apply_rotary_pos_emb`, and an MLP's forward where its
        projections are plain `nn.Linear` (the activation fuses with the product; peft's and bitsandbytes'
        layers stay eager), so only architecture-independent elementwise code is traced."""
        import sys

        import torch
        import torch._dynamo

        config = torch._dynamo.config  # one graph per batch bucket (1..slots) and piece, not 8
        config.recompile_limit = max(getattr(config, "recompile_limit", 8), 64)
        parts, seen = [], set()
        for m in self.model.modules():
            cls = type(m)
            if cls.__name__.endswith("RMSNorm") or (cls.__name__.endswith("MLP") and _plain_linears(m)):
                parts.append((m, "forward", torch.compile(m.forward)))
            module = sys.modules.get(cls.__module__)
            if module is not None and id(module) not in seen and hasattr(module, "apply_rotary_pos_emb"):
                seen.add(id(module))
                parts.append((module, "apply_rotary_pos_emb", torch.compile(module.apply_rotary_pos_emb)))
        return parts

    @contextlib.contextmanager
    def _compiled(self):
        if not self.compile_decode:
            yield
            return
        if self.fused is None:
            self.fused = self._fused_parts()
        saved = [(owner, name, owner.__dict__.get(name)) for owner, name, _ in self.fused]
        for owner, name, fn in self.fused:
            setattr(owner, name, fn)
        try:
            yield
        finally:
            for owner, name, old in saved:
                if old is None:
                    delattr(owner, name)  # the instance attribute goes; the class's forward shows again
                else:
                    setattr(owner, name, old)

    # ---- buffers ----------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Free the slot buffers and graphs (benchmarks measure each configuration's peak memory afresh)."""
        assert self.live() == 0, "reset with rows in flight"
        self.keys = self.values = self.mask = None
        self.graphs.clear()
        self.pool, self.length = None, 0

    def _ensure_length(self, needed: int) -> None:
        """Room for `needed` positions in every slot (+1 spare column, `trash`, for padding's writes); growing
        copies what is cached and drops the captured graphs, whose buffers were the old ones."""
        import torch

        if needed <= self.length:
            return
        length = max(1024, self.length)
        while length < needed:
            length *= 2
        length = min(length, self.max_positions) if needed <= self.max_positions else needed
        # +64 keeps each row of the mask 16-element aligned, which the memory-efficient SDPA kernel wants
        width = length + 64
        shape = (self.n_layers, self.slots, self.kv_heads, width, self.head_dim)
        keys = torch.zeros(shape, dtype=self.dtype, device=self.device)
        values = torch.zeros(shape, dtype=self.dtype, device=self.device)
        mask = torch.zeros(self.slots, width, dtype=torch.bool, device=self.device)
        mask[:, 0] = True  # an empty slot attends to position 0 (zeros): never a fully masked row, never NaN
        if self.keys is not None:
            keys[..., : self.length, :] = self.keys[..., : self.length, :]
            values[..., : self.length, :] = self.values[..., : self.length, :]
            mask[:, : self.length] = self.mask[:, : self.length]
        self.keys, self.values, self.mask, self.length = keys, values, mask, length
        self.graphs.clear()

    @property
    def trash(self) -> int:
        return self.length

    def write_and_read(self, layer: int, key_states, value_states):
        keys, values = self.keys[layer], self.values[layer]
        if self.mode[0] == "decode":
            _, b, lb = self.mode
            rows, writes = self.slot_index[:b], self.writes[:b]
            keys[rows, :, writes] = key_states[:, :, 0]
            values[rows, :, writes] = value_states[:, :, 0]
            return keys[:b, :, :lb], values[:b, :, :lb]
        _, slots, writes, lb = self.mode  # prefill: slots [J], writes [J, T]
        keys[slots[:, None], :, writes] = key_states.transpose(1, 2)
        values[slots[:, None], :, writes] = value_states.transpose(1, 2)
        return keys[slots, :, :lb], values[slots, :, :lb]

    @contextlib.contextmanager
    def _attention(self):
        """The model's attention modules read `config._attn_implementation` at each call; point it at
        `slot_attention` for the engine's passes only (scoring keeps the model's own)."""
        saved = [c._attn_implementation for c in self.configs]
        for c in self.configs:
            c._attn_implementation = ATTENTION
        try:
            yield
        finally:
            for c, s in zip(self.configs, saved):
                c._attn_implementation = s

    def _forward(self, **inputs):
        cache_arg = self.backend.cache_arg
        with self._attention():
            return self.model(use_cache=True, logits_to_keep=1, **inputs, **{cache_arg: self.cache}).logits[:, -1]

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

    def _prefill(self, joining: list) -> list:
        """All joining requests at once, in chunks of at most `prefill_tokens` padded tokens (shortest first,
        so a chunk pads little), each written straight into its slot."""
        import torch

        from userlm.backends.hf import _Row

        backend = self.backend
        prepared = []
        for key, request in joining:
            ids, reused, old_kv = backend._prompt(key, request)
            prepared.append((key, request, ids, reused, old_kv))
        self._ensure_length(max(len(p[2]) + p[1].sampling.max_new_tokens + 1 for p in prepared))
        free = iter(i for i, r in enumerate(self.rows) if r is None)
        placed = []
        for key, request, ids, reused, old_kv in prepared:
            slot = next(free)
            if reused and isinstance(old_kv, SlotKV):  # kept by this engine: all layers in one copy
                self.keys[:, slot, :, :reused] = old_kv.keys[:, :, :reused]
                self.values[:, slot, :, :reused] = old_kv.values[:, :, :reused]
            elif reused:
                for layer, (k, v) in enumerate(old_kv):
                    self.keys[layer, slot, :, :reused] = k[0, :, :reused]
                    self.values[layer, slot, :, :reused] = v[0, :, :reused]
            generator = torch.Generator().manual_seed(request.seed)
            row = _Row(key, ids, request.sampling, generator)
            self.rows[slot] = row  # taken now so the next request gets another slot
            placed.append((slot, row, reused))
        placed.sort(key=lambda p: len(p[1].ids) - p[2])
        finished, chunk = [], []
        for item in placed + [None]:
            if item is not None:
                width = max([len(p[1].ids) - p[2] for p in chunk + [item]])
                if not chunk or width * (len(chunk) + 1) <= self.prefill_tokens:
                    chunk.append(item)
                    continue
            finished += self._prefill_chunk(chunk)
            chunk = [item]
        return finished

    def _prefill_chunk(self, chunk: list) -> list:
        import torch

        width = max(len(row.ids) - reused for _, row, reused in chunk)
        lb = min(self.length, -(-max(len(row.ids) for _, row, _ in chunk) // LENGTH_BUCKET) * LENGTH_BUCKET)
        feed, positions, writes = [], [], []
        for slot, row, reused in chunk:
            new = row.ids[reused:]
            pad = width - len(new)
            feed.append([0] * pad + new)
            positions.append([0] * pad + list(range(reused, len(row.ids))))
            writes.append([self.trash] * pad + list(range(reused, len(row.ids))))
        slots = torch.tensor([slot for slot, _, _ in chunk], device=self.device)
        positions = torch.tensor(positions, device=self.device)
        writes_t = torch.tensor(writes, device=self.device)
        # query t of a row sees its positions 0..its own; a padded query sees position 0 only (see the mask's
        # first column), so that no row of the softmax is empty
        mask = (torch.arange(lb, device=self.device)[None, None, :] <= positions[:, :, None]).unsqueeze(1)
        self.mode = ("prefill", slots, writes_t, lb)
        logits = self._forward(input_ids=torch.tensor(feed, device=self.device), position_ids=positions,
                               attention_mask=mask)
        self.mode = None
        self.backend.counts["prefill"] += 1
        for slot, row, _ in chunk:
            self.mask[slot, :] = False
            self.mask[slot, : len(row.ids)] = True
            self.mask[slot, 0] = True
        rows = [row for _, row, _ in chunk]
        self.backend._sample(rows, logits)
        finished = []
        for slot, row, _ in chunk:
            if self.backend._done(row):
                finished.append(self._finish(slot))
        return finished

    def _decode(self) -> list:
        import torch

        top = max(i for i, r in enumerate(self.rows) if r is not None) + 1
        b = _bucket(top, self.slots)
        longest = max(len(r.ids) for r in self.rows if r is not None) + 1
        self._ensure_length(longest)
        lb = min(self.length, -(-longest // LENGTH_BUCKET) * LENGTH_BUCKET)
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
        if self.gpu_sampling:  # each row's next uniform, drawn now from its generator (as `_sample` would after)
            temps, top_ps, uniforms = [0.0] * self.slots, [0.0] * self.slots, [0.0] * self.slots
            for i, r in zip(index, rows):
                temps[i], top_ps[i] = r.sampling.temperature, r.sampling.top_p
                drawn = self.drawn.pop(i, None)
                uniforms[i] = torch.rand(1, generator=r.generator).item() if drawn is None else drawn
            self.staging_f.copy_(torch.tensor([temps, top_ps, uniforms], dtype=torch.float32))
            moved_f = self.staging_f.to(self.device, non_blocking=True)
            self.temperatures.copy_(moved_f[0])
            self.top_ps.copy_(moved_f[1])
            self.uniforms.copy_(moved_f[2])
        started = time.perf_counter()
        out = self._run_decode(b, lb)
        if self.gpu_sampling:  # the replay runs asynchronously: draw each row's next uniform meanwhile. Its
            # generator is its own and is dropped with it, so a draw for a row that ends now changes nothing.
            for i, r in zip(index, rows):
                self.drawn[i] = torch.rand(1, generator=r.generator).item()
        if self.device.type == "cuda":  # split the step's time between the model and the host (sampling)
            torch.cuda.synchronize()
        self.backend.seconds["decode forward"] += time.perf_counter() - started
        self.backend.counts["decode"] += 1
        for r in rows:
            r.ids.append(r.generated[-1])
        if self.gpu_sampling:
            logits, picked, greedy, probs = out
            picked = picked.tolist()  # b tokens, then whether the nucleus was wider than the head
            if picked[-1]:
                from userlm.backends.hf import sample_sorted

                self.sorted_steps += 1
                at = slice(None) if len(index) == len(greedy) else torch.tensor(index, device=self.device)
                picked = sample_sorted(probs[at], greedy[at], self.top_ps[: len(greedy)][at],
                                       self.uniforms[: len(greedy)][at]).tolist()
            else:
                picked = [picked[i] for i in index]
            if self.verify:
                from userlm.backends.hf import sample_next

                at = torch.tensor(index, device=self.device)
                want = sample_next(logits[at].float(), self.temperatures[at], self.top_ps[at], self.uniforms[at])
                self.verified += len(index)
                self.mismatches += sum(a != b for a, b in zip(picked, want.tolist()))
            for r, token in zip(rows, picked):
                r.generated.append(token)
        else:
            self.backend._sample(rows, out[index])
        finished = []
        for i, r in zip(index, rows):
            if self.backend._done(r):
                finished.append(self._finish(i))
        return finished

    def _decode_pass(self, b: int, lb: int):
        """The step that is captured: mark each row's new position, then one token for slots [0, b): the logits,
        or with `gpu_sampling` (logits, [b tokens from the head, wide], greedy, probs) (see `sample_head`)."""
        import torch

        from userlm.backends.hf import sample_head

        # the value is a device tensor: a Python `True` would be copied from the host, which a capture forbids
        self.mask.index_put_((self.slot_index[:b], self.writes[:b]), self.true)
        self.mode = ("decode", b, lb)
        try:
            mask = self.mask[:b, None, None, :lb]
            if self.compile_decode:  # the additive mask once a step, not converted from booleans in every layer
                mask = torch.zeros(mask.shape, dtype=self.dtype, device=self.device).masked_fill_(~mask, float("-inf"))
            with self._compiled():
                logits = self._forward(input_ids=self.tokens[:b], position_ids=self.positions[:b], attention_mask=mask)
        finally:
            self.mode = None
        if not self.gpu_sampling:
            return logits
        tokens, wide, greedy, probs = sample_head(logits.float(), self.temperatures[:b], self.top_ps[:b],
                                                  self.uniforms[:b])
        return logits, torch.cat([tokens, wide.long().view(1)]), greedy, probs

    def _run_decode(self, b: int, lb: int):
        import torch

        if not (self.use_graphs and self.device.type == "cuda"):
            return self._decode_pass(b, lb)
        key = (b, lb, self.gpu_sampling, self.compile_decode)
        graph = self.graphs.get(key)
        if graph is None:
            try:
                graph = self._capture(b, lb)
            except Exception as e:  # noqa: BLE001 - any kernel that cannot be captured (a quantized matmul, say): stay eager
                reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                torch.cuda.synchronize()
                if self.compile_decode:  # torch.compile is the likelier culprit (no triton, say): drop it first
                    self.compile_decode, self.graph_error = False, f"compile off: {type(e).__name__}"
                    print(f"hf backend: torch.compile of the decode step failed ({reason}); capturing it uncompiled",
                          flush=True)
                    return self._run_decode(b, lb)
                self.use_graphs, self.graph_error = False, reason
                import traceback

                print(f"hf backend: CUDA graph capture failed, decoding eagerly ({self.graph_error})\n"
                      + "".join(traceback.format_exc(limit=-6)), flush=True)
                return self._decode_pass(b, lb)
            self.graphs[key] = graph
        graph[0].replay()
        return graph[1]

    def _capture(self, b: int, lb: int):
        """Warm up on a side stream (lazy initializations must not happen under capture), then capture. The
        warm-up writes the same keys and mask bits as the replay that follows, so running it is harmless."""
        import torch

        started = time.perf_counter()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self._decode_pass(b, lb)
        torch.cuda.current_stream().wait_stream(stream)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()  # one pool: graphs run one at a time and share memory
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self._decode_pass(b, lb)
        self.backend.seconds["capture"] += time.perf_counter() - started
        self.backend.counts["graphs"] += 1
        return graph, out

    def _finish(self, slot: int):
        """Free the slot; the row's keys/values (its `ids`) are copied out for its conversation's next turn."""
        row = self.rows[slot]
        n = len(row.ids)
        kv = []
        if self.backend.prefix_cache:
            kv = SlotKV(self.keys[:, slot, :, :n].clone(), self.values[:, slot, :, :n].clone())
        self.rows[slot] = None
        self.drawn.pop(slot, None)
        self.mask[slot, :] = False
        self.mask[slot, 0] = True
        return self.backend._finish(row, kv)
