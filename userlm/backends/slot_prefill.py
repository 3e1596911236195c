"""The static engine's prefill (`static_cache.py`): joining requests are prefilled together, in chunks of at most
`prefill_tokens` tokens, straight into their slots; only tokens that are not cached already are fed. A chunk's
new tokens are packed into one sequence (`pack_prefill`), so its matrix products compute no padding; attention
gathers them into rows left-padded to a common length (or, packing off, the whole pass is left-padded).

Cached tokens come from the request's own conversation (its previous turn, `backend.kept`) and, with
`share_prefixes` on, from any slot: each slot remembers the tokens whose keys/values it holds (`resident`: a live
row's, or a finished row's until another row takes the slot), and a joining prompt starts from the longest
prefix (`SHARE_MIN` tokens at least) it shares with one of them or with another joining prompt, whose keys/values
are copied (or, a finished row's slot, reused in place). Replay turns it on: a conversation's points share their
real history, so only its longest point's prompt is computed and each other point feeds a token or a few.
Hand-written rather than transformers' prefix caching because the slots are this engine's own buffers.
Keys/values computed inside a longer prompt differ from a prompt's own in the last bits (a near-tie between two
tokens can flip), so it stays off for self-play, where the kept previous turn already covers the history."""

from __future__ import annotations

import contextlib
import time

from userlm.backends.prompt_ids import common_prefix
from userlm.backends.uploads import upload_lists

LENGTH_BUCKET = 256  # attention reads positions [0, Lb): a multiple of this above the longest live row
SHARE_MIN = 64  # a prompt shares a prefix with another's only from this many tokens on (and is bucketed by them)
PREFILL_MIN = 2048  # tokens a prefill pass computes before `prefill_padding` limits it (7B: compute-bound there)
# a packed pass's attention block (rows x longest new length x positions read, its mask's size) is at most
# prefill_tokens x this: what an unpacked pass of prefill_tokens held at 4,096 positions
PACKED_POSITIONS = 4096


class SlotPrefill:
    """`SlotEngine`'s prefill (it sets rows, keys, values, mask, backend and the rest)."""

    share_prefixes = False  # replay turns it on for its runs (simulator/replay.py)
    prefill_padding = 1.0  # unpacked: the largest share of a pass's padded tokens left padding may take (1: no limit)
    # pack_prefill: a pass's new tokens one sequence (no padding in its products; attention gathers them into padded
    # rows and back). On by default: fewer, unpadded passes (measured in results/benchmarks/, `-pack`)
    pack_prefill = True
    # slice_reads: a pass whose rows hold consecutive slots (a whole batch turning over at once) reads the buffers'
    # keys/values as a view, not as a copy gathered by slot (`-slice` measures it)
    slice_reads = True
    # compile_prefill (with compile_decode): a prefill pass runs the decode step's fused pieces (`_compiled`: norms,
    # rotary, the MLP's activation; q/k/v and gate/up one matmul each), compiled for dynamic shapes. None: with
    # compile_decode on CUDA, where measured (H200, 7B/128, 2026-12-01: prefill 1.4 -> 1.2 s, 1.05x all-in side by
    # side; a first run compiles for ~4 s more; results/benchmarks/2026-12-01-h200-prefill-overlap.md)
    compile_prefill: bool | None = None

    def _sources(self, prepared: list) -> tuple[list, list]:
        """For each prepared [key, request, ids, reused, old_kv]: (slot, n) to copy n cached tokens from (a slot
        already holding them), or ("join", i, n): another joining prompt, i, prefilled first, holds them."""
        buckets: dict[tuple, list] = {}
        for slot, ids in enumerate(self.resident):
            if ids is not None and len(ids) > SHARE_MIN:
                buckets.setdefault(tuple(ids[:SHARE_MIN]), []).append(("slot", slot, ids))
        order = sorted(range(len(prepared)), key=lambda i: -len(prepared[i][2]))  # the longest first
        sources, first = [None] * len(prepared), []
        for i in order:
            ids, reused = prepared[i][2], prepared[i][3]
            best = None
            if len(ids) > SHARE_MIN:
                bucket = buckets.setdefault(tuple(ids[:SHARE_MIN]), [])
                for kind, at, other in bucket:
                    n = common_prefix(other, ids)
                    if n >= SHARE_MIN and n > (best[2] if best else reused):
                        best = (kind, at, n)
                if best is None or best[0] != "join":  # a prompt that draws on another joining one is not drawn on
                    bucket.append(("join", i, ids))
            sources[i] = best
            if best is None or best[0] != "join":
                first.append(i)
        return sources, first

    def _prefill(self, joining: list) -> list:
        """All joining requests at once; with `share_prefixes`, those whose prefix another joining prompt holds
        in a second pass, after it."""
        backend = self.backend
        started = time.perf_counter()
        prepared = [(key, request, *p) for (key, request), p in zip(joining, backend._prompts(joining), strict=True)]
        backend.seconds["prefill prompts"] += time.perf_counter() - started  # rendered and tokenized: host only
        needed = max(len(p[2]) + p[1].sampling.max_new_tokens + 1 for p in prepared)
        # buffers that grow are copied: an overlapped chunk still in flight (chunk_decode.py) is read first
        early = self._drain() if needed > self.length else []
        self._ensure_length(needed)
        if self.share_prefixes:
            sources, first = self._sources(prepared)
        else:
            sources, first = [None] * len(prepared), list(range(len(prepared)))
        second = sorted(set(range(len(prepared))) - set(first))
        # slots: a finished row's slot that a request draws on is reused in place by it (its first such taker);
        # the others take slots no request draws on where there are such
        drawn = {s[1] for s in sources if s and s[0] == "slot"}
        free = [i for i, r in enumerate(self.rows) if r is None]
        taken: dict[int, int] = {}
        for i in first + second:
            s = sources[i]
            if s and s[0] == "slot" and self.rows[s[1]] is None and s[1] not in taken.values():
                taken[i] = s[1]
        spare = iter(sorted((slot for slot in free if slot not in taken.values()), key=lambda slot: slot in drawn))
        for i in first + second:
            if i not in taken:
                taken[i] = next(spare)
        # copies out of a slot that another request is about to take: read before anything is written
        targets = {taken[i] for i in range(len(prepared)) if not (sources[i] and sources[i][:2] == ("slot", taken[i]))}
        need: dict[int, int] = {}
        for s in sources:
            if s and s[0] == "slot" and s[1] in targets:
                need[s[1]] = max(need.get(s[1], 0), s[2])
        saved = {slot: (self.keys[:, slot, :, :n].clone(), self.values[:, slot, :, :n].clone())
                 for slot, n in need.items()}
        placed, kept = {}, []
        for i in first + second:
            key, request, ids, reused, old_kv = prepared[i]
            slot, s = taken[i], sources[i]
            if s and s[0] == "slot":
                reused = s[2]
                if s[1] != slot:
                    keys, values = saved.get(s[1]) or (self.keys[:, s[1]], self.values[:, s[1]])
                    self.keys[:, slot, :, :reused] = keys[:, :, :reused]
                    self.values[:, slot, :, :reused] = values[:, :, :reused]
            elif s:
                reused = s[2]  # copied after the first pass
            elif reused:
                kept.append((slot, reused, old_kv))
            placed[i] = self._place(slot, key, request, ids), reused
        self._copy_kept(kept)
        finished = early + self._prefill_placed([(taken[i], placed[i][0], placed[i][1]) for i in first])
        for i in second:  # the joining prompt drawn on is in its slot now
            _, j, n = sources[i]
            self.keys[:, taken[i], :, :n] = self.keys[:, taken[j], :, :n]
            self.values[:, taken[i], :, :n] = self.values[:, taken[j], :, :n]
        return finished + self._prefill_placed([(taken[i], placed[i][0], placed[i][1]) for i in second])

    def _copy_kept(self, kept: list) -> None:
        """Each (slot, reused, keys/values kept from its conversation's last turn) copied into its slot: rows whose
        keys/values were copied out together (`SlotKV.batch`) in one copy up to the longest of them (the positions a
        shorter row gets past its own are its slot's, written by its prefill or never read), others one by one."""
        from userlm.backends.slot_kv import SlotKV

        together: dict[int, list] = {}
        for slot, reused, old_kv in kept:
            if isinstance(old_kv, SlotKV) and old_kv.batch is not None:
                together.setdefault(id(old_kv.batch[0]), []).append((slot, reused, old_kv))
            elif isinstance(old_kv, SlotKV):  # kept by this engine: all layers in one copy
                self.keys[:, slot, :, :reused] = old_kv.keys[:, :, :reused]
                self.values[:, slot, :, :reused] = old_kv.values[:, :, :reused]
            else:
                for layer, (k, v) in enumerate(old_kv):
                    self.keys[layer, slot, :, :reused] = k[0, :, :reused]
                    self.values[layer, slot, :, :reused] = v[0, :, :reused]
        for group in together.values():
            keys, values, _ = group[0][2].batch
            n = max(reused for _, reused, _ in group)
            slots, rows = upload_lists([[slot for slot, _, _ in group], [kv.batch[2] for _, _, kv in group]], self.device)
            self.keys[:, slots, :, :n] = keys[:, rows, :, :n]
            self.values[:, slots, :, :n] = values[:, rows, :, :n]

    def _place(self, slot: int, key, request, ids: list[int]):
        import torch

        from userlm.backends.rows import Row

        row = Row(key, ids, request.sampling, torch.Generator().manual_seed(request.seed))
        self.rows[slot] = row  # taken now so the next request gets another slot
        self.resident[slot] = row.ids  # the same list: it grows as the row decodes
        return row

    def _positions_read(self, longest: int) -> int:
        """Lb, the positions attention reads for rows of up to `longest` tokens: a multiple of LENGTH_BUCKET, at
        most the buffers' length."""
        return min(self.length, -(-longest // LENGTH_BUCKET) * LENGTH_BUCKET)

    def _prefill_placed(self, placed: list) -> list:
        """(slot, row, tokens cached) in chunks of at most `prefill_tokens` tokens, shortest first: packed, with
        attention's padded block bounded (PACKED_POSITIONS); unpacked, counting padding, and with
        `prefill_padding` < 1 a request that would make its chunk compute more than PREFILL_MIN tokens with more
        than that share of them left padding starts the next chunk instead (a pass of fewer tokens costs about its
        weights' read whatever its padding). Every pass is queued before any is sampled: nothing in a pass waits for
        the device, so the host builds the next pass while the GPU computes this one (each pass's draw, after them
        all, waits once)."""
        placed = sorted(placed, key=lambda p: len(p[1].ids) - p[2])
        passes, chunk, fed, longest = [], [], 0, 0
        for item in placed + [None]:
            new = 0 if item is None else len(item[1].ids) - item[2]
            if item is not None:
                padded = new * (len(chunk) + 1)  # sorted: the newest request is the chunk's widest
                if self.pack_prefill:  # the products compute no padding; attention's padded block stays bounded
                    fits = fed + new <= self.prefill_tokens and padded * self._positions_read(
                        max(longest, len(item[1].ids))) <= self.prefill_tokens * PACKED_POSITIONS
                else:
                    lean = padded <= PREFILL_MIN or padded - fed - new <= self.prefill_padding * padded
                    fits = padded <= self.prefill_tokens and lean
                if not chunk or fits:
                    chunk.append(item)
                    fed, longest = fed + new, max(longest, len(item[1].ids))
                    continue
            if chunk:
                chunk.sort(key=lambda p: p[0])  # by slot: consecutive slots are read as one slice (`slice_reads`)
                passes.append((chunk, self._prefill_chunk(chunk)))
            chunk, fed, longest = [item], new, 0 if item is None else len(item[1].ids)
        return [done for chunk, logits in passes for done in self._prefill_sampled(chunk, logits)]

    def _prefill_chunk(self, chunk: list):
        """One prefill pass queued (no host sync: inputs go through pinned memory); its last positions' logits.
        Packed (`pack_prefill`, more than one row): the rows' new tokens are one sequence, so the products compute no
        padding; only attention sees the rows left-padded (`slot_kv.prefill_pass`)."""
        import torch

        from userlm.backends.slot_kv import prefill_pass

        cuda = self.device.type == "cuda"
        width = max(len(row.ids) - reused for _, row, reused in chunk)
        lb = self._positions_read(max(len(row.ids) for _, row, _ in chunk))
        pack = self.pack_prefill and len(chunk) > 1
        feed, positions, writes, gather, scatter, token_slots, last = [], [], [], [], [], [], []
        for j, (slot, row, reused) in enumerate(chunk):
            assert len(row.ids) > reused, "a prefilled row computes its last token at least (its logits are drawn from)"
            new, pad = row.ids[reused:], width - (len(row.ids) - reused)
            at = list(range(reused, len(row.ids)))
            positions += [0] * pad + at
            if pack:  # a padded place gathers the row's first token: its output is never scattered back
                first = len(feed)
                feed += new
                writes += at
                token_slots += [slot] * len(new)
                gather += [first] * pad + list(range(first, len(feed)))
                scatter += range(j * width + pad, (j + 1) * width)
                last.append(len(feed) - 1)
            else:
                feed += [0] * pad + new
                writes += [self.trash] * pad + at
        n = sum(len(row.ids) - reused for _, row, reused in chunk)
        self.backend.counts["prefill tokens"] += n
        self.backend.counts["prefill padded"] += n if pack else width * len(chunk)  # what the products compute
        order = [slot for slot, _, _ in chunk]
        read = slice(order[0], order[0] + len(order)) if self.slice_reads and order == list(
            range(order[0], order[0] + len(order))) else None
        slots, feed, positions, writes, gather, scatter, token_slots, last = upload_lists(
            [order, feed, positions, writes, gather, scatter, token_slots, last], self.device)
        positions = positions.view(len(chunk), width)
        # query t of a row sees its positions 0..its own; a padded query sees position 0 only (see the mask's
        # first column), so that no row of the softmax is empty
        mask = (torch.arange(lb, device=self.device)[None, None, :] <= positions[:, :, None]).unsqueeze(1)
        if pack:
            self.mode = ("prefill", slots, writes, lb, token_slots, read)
            inputs = dict(input_ids=feed[None], position_ids=writes[None], keep=last)
            packing = (gather.view(len(chunk), width), scatter)
        else:
            self.mode = ("prefill", slots, writes.view(len(chunk), width), lb, None, read)
            inputs, packing = dict(input_ids=feed.view(len(chunk), width), position_ids=positions), None
        compiled = self.compile_prefill if self.compile_prefill is not None else bool(self.compile_decode) and cuda
        with self._compiled("prefill") if compiled else contextlib.nullcontext(), \
                prefill_pass(packing, compiled and self._rotary_write(prefill=True)):
            logits = self._forward(attention_mask=mask, **inputs)
        self.mode = None
        self.backend.counts["prefill"] += 1
        for slot, row, _ in chunk:  # slices: a single element's assignment would copy from the host and wait
            self.mask[slot, :] = False
            self.mask[slot, : len(row.ids)] = True  # position 0 with them (an empty slot's attends to it alone)
        return logits

    def _prefill_sampled(self, chunk: list, logits) -> list:
        """A pass's first tokens drawn (`_sample_first`, which waits for the device) and its finished rows."""
        self._sample_first([row for _, row, _ in chunk], logits)
        return self._finish_slots([slot for slot, row, _ in chunk if self.backend._done(row)])
