"""The static engine's key/value store (`static_cache.py`): each layer's keys/values in one buffer [slots, kv
heads, positions, head dim], and the attention that reads them. A pass writes its new keys/values at per-row
positions in place (`write_and_read`, reached through `SlotCache`, a stand-in for transformers' Cache) and
attends with the engine's boolean mask (`slot_attention`, registered as a transformers attention function).
Padding never reaches a real row: in a left-padded pass, padded queries write their keys to a spare position past
the last one (`trash`), which no mask ever includes; a packed pass (`prefill_pass`) has no padded keys at all, and
its padded queries (attention's only padding) are never read back."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

from userlm.backends import rotary_write
from userlm.backends.live_attention import active
from userlm.backends.uploads import upload

ATTENTION = "userlm_slots"
# a prefill pass's grouped-query attention folded like a decode step's (each key/value head's query heads stacked
# along the query length, the mask repeated once a pass) instead of every key and value copied once per query head
# (7 copies a layer at Qwen2.5-7B); benchmarks/bench_simulation.py's `-fold` measures it against the copies
FOLD_PREFILL = True
# a prefill pass's boolean mask made additive (0 / -inf in the queries' dtype) once a pass, with its repeat, instead of
# by SDPA in every layer (its own conversion, the same values; 28 a pass at 7B); `-addmask` measures it
ADDITIVE_MASK = True
_repeated: list = [None, 0, None]  # (the pass's mask, repeats, the mask repeated): made once a pass, not a layer
_packed: list = [None]  # a packed prefill pass's (gather, scatter) between its tokens and its rows (`prefill_pass`)


@contextlib.contextmanager
def prefill_pass(packing=None, defer_rotary: bool = False):
    """One prefill forward. `packing` (gather [rows, length], scatter [tokens]): the pass's tokens are packed into
    one sequence (`SlotPrefill.pack_prefill`): the model's products compute no padding, and attention gathers each
    row's queries into a left-padded [rows, length] block and scatters its output back. After the forward is queued
    the repeated mask (`_repeated`: rows x heads per key/value head x length x positions booleans, 235 MB for 16
    rows of 1,024 new tokens over 2,048 positions at 7B) is dropped. `defer_rotary` (packed only): the rotary
    embedding and key/value write one kernel a layer (`rotary_write.py`)."""
    _packed[0] = packing
    defer_rotary = defer_rotary and packing is not None
    if defer_rotary:
        rotary_write.ENABLED[0] = "packed"
    try:
        yield
    finally:
        _packed[0] = None
        _repeated[:] = [None, 0, None]
        if defer_rotary:
            rotary_write.ENABLED[0], rotary_write.PENDING[0] = False, None


def slot_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """SDPA over the slot buffers with the engine's boolean mask. Grouped-query attention is folded: a key/value
    head's query heads become one longer query ([rows, kv heads, heads per kv head x length, dim]), so each key is
    read once instead of copied per head (transformers' sdpa path repeats keys whenever a mask is given, in some
    versions); a prefill mask [rows, 1, length, positions] is repeated to match, once a pass."""
    import torch

    rotary_write.check_consumed()
    packing = _packed[0]
    if packing is not None:  # [1, heads, tokens, dim] -> each row's queries, left-padded: [rows, heads, length, dim]
        query = query[0].transpose(0, 1)[packing[0]].transpose(1, 2)
    rows, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    rep = heads // kv_heads
    live = active()
    if q_len == 1 and live is not None:  # each row's live positions only (`live_attention.py`)
        out = live.attend(query, key, value, scaling)
    elif q_len == 1 or (FOLD_PREFILL and attention_mask is not None):
        mask = attention_mask
        if q_len > 1 and (rep > 1 or ADDITIVE_MASK):
            if _repeated[0] is not attention_mask or _repeated[1] != rep:
                mask = attention_mask.repeat(1, 1, rep, 1) if rep > 1 else attention_mask
                if ADDITIVE_MASK and mask.dtype == torch.bool:
                    mask = torch.zeros(mask.shape, dtype=query.dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
                _repeated[:] = attention_mask, rep, mask
            mask = _repeated[2]
        out = torch.nn.functional.scaled_dot_product_attention(
            query.reshape(rows, kv_heads, rep * q_len, dim), key, value, attn_mask=mask, scale=scaling)
        out = out.reshape(rows, heads, q_len, dim)  # a view where SDPA returns it contiguous (not every kernel)
    else:
        if heads != kv_heads:
            key = key[:, :, None].expand(-1, -1, rep, -1, -1).reshape(rows, heads, -1, dim)
            value = value[:, :, None].expand(-1, -1, rep, -1, -1).reshape(rows, heads, -1, dim)
        out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                               scale=scaling)
    if packing is not None:  # back to the pass's tokens: [1, tokens, heads, dim]
        return out.transpose(1, 2).reshape(rows * q_len, heads, dim)[packing[1]][None], None
    return out.transpose(1, 2).contiguous(), None


@functools.cache
def register_slot_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, slot_attention)


@functools.cache
def slot_cache_class():
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


def write_rows(keys, values, rows, writes, new_keys, new_values):
    """A decode step's keys/values [b, kv heads, dim] at each row's own position of the layer's buffers."""
    keys[rows, :, writes] = new_keys
    values[rows, :, writes] = new_values


class SlotKV(Sequence):
    """A finished row's keys/values as `hf.py` keeps them (per layer, [1, kv heads, n, dim]), views of two
    all-layer tensors so that the next turn copies them back in one operation instead of two per layer. The views
    are made when read (the static engine never reads them; made for every finished row, 56 views a row at 7B,
    they took ~55 ms of host time a 7B/128 run under cProfile on the H200 host, 2026-12-01)."""

    def __init__(self, keys, values, batch=None):
        self.keys, self.values = keys, values
        self.batch = batch  # (keys, values, index): the gather of rows copied out together that these are views of

    def __len__(self) -> int:
        return self.keys.shape[0]

    def __getitem__(self, layer: int):
        if not -len(self) <= layer < len(self):
            raise IndexError(layer)
        return self.keys[layer][None], self.values[layer][None]


class SlotBuffers:
    """The slot engine's buffers: `keys`, `values` [layers, slots, kv heads, positions, head dim] and `mask`
    [slots, positions], grown on demand, and the forward pass that reads and writes them (`SlotEngine` sets
    the attributes)."""

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

    def _copy_out(self, slots: list[int], lengths: list[int]) -> list:
        """Each slot's first `lengths` positions of keys/values, copied (`SlotKV`). Slots of similar lengths share
        one gather up to their longest (at most a fifth of a group's copy is another row's padding): a turn's rows
        end together, and two copies a row were launches the GPU waited for while the host made them."""
        order, out = sorted(range(len(slots)), key=lambda j: lengths[j]), [None] * len(slots)
        while order:
            group = [order.pop()]  # the longest left, then every shorter one within a fifth of it
            while order and lengths[order[-1]] * 5 >= lengths[group[0]] * 4:
                group.append(order.pop())
            n = lengths[group[0]]
            if len(group) == 1:
                slot = slots[group[0]]
                keys, values = self.keys[:, slot: slot + 1, :, :n].clone(), self.values[:, slot: slot + 1, :, :n].clone()
            else:
                index = upload([slots[j] for j in group], self.device)
                keys, values = self.keys[:, index, :, :n], self.values[:, index, :, :n]  # [layers, rows, kv heads, n, dim]
            for g, j in enumerate(group):
                out[j] = SlotKV(keys[:, g, :, :lengths[j]], values[:, g, :, :lengths[j]],
                                (keys, values, g) if len(group) > 1 else None)
        return out

    def _reset_masks(self, slots: list[int]) -> None:
        """Free slots (at least one) attend to position 0 alone (column 0 is every slot's, live or not, so it is set for all)."""
        if len(slots) == 1:  # slices: one element's assignment copies from the host and waits for the device
            self.mask[slots[0], :] = False
        else:
            self.mask.index_fill_(0, upload(slots, self.device), False)
        self.mask[:, :1] = True

    @property
    def trash(self) -> int:
        return self.length

    def write_and_read(self, layer: int, key_states, value_states):
        keys, values = self.keys[layer], self.values[layer]
        if self.mode[0] == "decode":
            _, b, lb = self.mode
            key_states = rotary_write.consume(keys, values, self.slot_index[:b], self.writes[:b], key_states, value_states)
            if key_states is None:  # rotated and written with the queries (deferred)
                return keys[:b, :, :lb], values[:b, :, :lb]
            write = write_rows
            if self.fuse_kv_write and self.compile_decode:  # both scatters one kernel (inductor fuses them)
                import torch

                self.kv_writer = self.kv_writer or torch.compile(write_rows, dynamic=False)
                write = self.kv_writer
            write(keys, values, self.slot_index[:b], self.writes[:b], key_states[:, :, 0], value_states[:, :, 0])
            return keys[:b, :, :lb], values[:b, :, :lb]
        # prefill: slots [J], writes [J, T] (packed: [N]); `read`: slice(a, a + J) where the slots are a..a+J-1 in
        # order, so attention reads a view of the buffers instead of a gathered copy of every row's keys and values
        _, slots, writes, lb, token_slots, read = self.mode
        if token_slots is not None:  # packed: key_states [1, kv heads, N, dim], token i into slot token_slots[i]
            key_states = rotary_write.consume(keys, values, token_slots, writes, key_states, value_states)
            if key_states is not None:  # (None: rotated and written with the queries)
                keys[token_slots, :, writes] = key_states[0].transpose(0, 1)
                values[token_slots, :, writes] = value_states[0].transpose(0, 1)
        else:
            keys[slots[:, None], :, writes] = key_states.transpose(1, 2)
            values[slots[:, None], :, writes] = value_states.transpose(1, 2)
        rows = slots if read is None else read
        return keys[rows, :, :lb], values[rows, :, :lb]

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

    def _forward(self, keep=None, **inputs):
        """The last position's logits of each row; `keep` (a packed pass): the positions whose logits are wanted."""
        cache_arg = self.backend.cache_arg
        with self._attention():
            logits = self.model(use_cache=True, logits_to_keep=1 if keep is None else keep, **inputs,
                                **{cache_arg: self.cache}).logits
        return logits[:, -1] if keep is None else logits[0]
