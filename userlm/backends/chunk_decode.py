"""Less host time a decode step for the static engine (`static_cache.py`, issue 25 item 1).

- Uniforms drawn ahead: each row's sampling uniforms come from its own seeded CPU generator, `AHEAD` at a time
  (`torch.rand(n, generator=g)` yields exactly the sequence of n draws of one; a test checks it), kept in a
  queue per slot and consumed as tokens are accepted. Before, every step drew each row's next uniform with its
  own `torch.rand(1)` call (128 calls a step at 7B/128).
- Chunks (`SlotEngine.decode_chunk` = k > 1, with live attention and GPU sampling): k decode steps back to back,
  each feeding its sampled tokens to the next on the device (positions and KV writes advance on the device too),
  with each row's next k uniforms uploaded once; the host reads the k x rows tokens once. The k steps are one
  CUDA graph (`graph_steps` 0, measured), or a graph of `graph_steps` steps replayed k / graph_steps times, queued
  without a sync (1: the single step's graph, which ran with fewer gaps than one 8-step graph on an H200: 1.08x
  at 0.5B/32, 1.13x at 7B/128 over one step a sync; results/benchmarks/2026-11-30-h200-decode-host.md).
  A row that stops inside the chunk keeps its tokens up to its stop and discards the rest (its extra keys and
  values lie past its length, which live attention never reads, and its slot is reset). A row whose nucleus was
  wider than the head at step j of a graph that does not draw wide rows keeps steps < j and runs step j again
  in the next chunk, whose graph draws wide rows (`sample_wide`, or after a full sort with `wide_sort`, as the
  step-by-step engine): the same uniform, the same token. So a row's tokens are the step-by-step engine's, for
  the same seed, whatever k; what a chunk costs is up to k - 1 wasted steps where rows stop, and joining rows
  wait for the chunk's end.
- Overlapped chunks (`SlotEngine.overlap_chunks`, with every row drawn by rejection: no step ever runs again): the
  next chunk is queued before the one in flight is read, so the host's work on a chunk's tokens (accepting them,
  finishing rows, the next turns' prompts and prefill) runs while the GPU computes the next one. That chunk starts
  where the device left each row of the chunk in flight (its tokens, positions and key/value writes advance on the
  device) with each such row's uniforms k further on; rows that joined since start from the host and slots whose
  row left are parked. A row that stops inside the chunk in flight has had one more chunk computed for it, which
  is discarded unread (its keys/values lie past its length). No chunk is queued once every live row ends by its
  budget inside the chunk in flight. The same tokens for every seed as without overlap."""

from __future__ import annotations

import time

from userlm.backends.uploads import pinned, upload

AHEAD = 64  # uniforms drawn at once per row


def batch_bucket(n: int, limit: int) -> int:
    """The decode batch for slots [0, n): the next power of two, at most `limit` (one CUDA graph each)."""
    b = 1
    while b < n:
        b *= 2
    return min(b, limit)


class ChunkDecode:
    """Mixin for `SlotEngine`: `ahead` (slot -> (row, queue of its next uniforms)), `ahead_size`, `decode_chunk`."""

    # overlap_chunks (with chunks and every row drawn by rejection): the next chunk queued before the one in flight
    # is read, the host's work on its tokens hidden behind the GPU's; `inflight`: that chunk. On where that path runs
    # (H200, 7B/128, 2026-12-01: 6.41 -> 5.81 ms a step, 1.02x all-in side by side, a row that stops by a stop token
    # keeps its slot one chunk longer; results/benchmarks/2026-12-01-h200-prefill-overlap.md)
    overlap_chunks, inflight = True, None

    def _decode(self) -> list:
        if self._overlapped():
            return self._decode_overlapped()
        finished = self._drain()  # a chunk still in flight from an overlapped decode (the setting turned off since)
        if not self.live():
            return finished
        return finished + self._decode_now()

    def _uniforms(self, slot: int, row, n: int) -> list[float]:
        """Row's next n uniforms (not consumed: `_consume`), drawn from its generator `ahead_size` or n at a time."""
        import torch

        entry = self.ahead.get(slot)
        if entry is None or entry[0] is not row:  # a new row in this slot: its own generator, from its start
            entry = self.ahead[slot] = (row, [])
        queue = entry[1]
        if len(queue) < n:
            queue.extend(torch.rand(max(self.ahead_size, n - len(queue)), generator=row.generator).tolist())
        return queue[:n]

    def _consume(self, slot: int, n: int) -> None:
        del self.ahead[slot][1][:n]

    def _accept(self, slot: int, row, tokens) -> bool:
        """The row in `slot` takes a chunk's `tokens` up to its stop or budget (`Row.take`), its uniforms for them
        consumed; True where it is done."""
        accepted = row.take(tokens, self.backend.stop_ids)
        self._consume(slot, accepted)
        self.backend.counts["chunk tokens"] += accepted
        return self.backend._done(row)

    def _overlapped(self) -> bool:
        return self.overlap_chunks and self._by_rejection() and self._chunk_size() > 1

    def _decode_overlapped(self) -> list:
        """Queue the next chunk of every live row, then read the chunk in flight (`_drain`) while it runs; nothing
        is queued where every live row ends by its budget inside the chunk in flight (a drain would compute a
        whole chunk for nothing)."""
        rows = [(i, r) for i, r in enumerate(self.rows) if r is not None]
        k, finished = self.decode_chunk, []
        ahead = self.inflight[0] if self.inflight is not None else {}
        if all(ahead.get(i) is r and len(r.generated) + k >= r.sampling.max_new_tokens for i, r in rows):
            return self._drain()
        needed = max(len(r.ids) for _, r in rows) + 2 * k  # the chunk in flight's k steps, then this one's
        if needed > self.length and self.inflight is not None:  # the buffers grow: read the chunk in flight first
            finished = self._drain()
            rows = [(i, r) for i, r in enumerate(self.rows) if r is not None]
            if not rows:
                return finished
        self._ensure_length(needed)
        launched = self._launch(rows, k)
        finished += self._drain()
        self.inflight = launched
        return finished

    def _launch(self, rows: list, k: int):
        """Queue a chunk of k steps for `rows` [(slot, row)] without waiting: (its rows by slot, its tokens on their
        way to pinned host memory, the event after them)."""
        import torch

        cuda = self.device.type == "cuda"
        started = time.perf_counter()
        self.wide_inside = False  # (part of the graph's key; every row is drawn by rejection here)
        ahead = self.inflight[0] if self.inflight is not None else None  # slot -> row of the chunk in flight
        b = batch_bucket(rows[-1][0] + 1, self.slots)
        # live rows the device does not already advance from the chunk in flight start from the host; every empty
        # slot is parked at `trash` again (it moves when the buffers grow)
        fresh = rows if ahead is None else [(i, r) for i, r in rows if ahead.get(i) is not r]
        parked = [i for i in range(self.slots) if self.rows[i] is None]
        if fresh or parked:
            at = upload([i for i, _ in fresh] + parked, self.device)
            values = upload([[r.generated[-1] for _, r in fresh] + [0] * len(parked),
                             [len(r.ids) for _, r in fresh] + [0] * len(parked),
                             [len(r.ids) for _, r in fresh] + [self.trash] * len(parked)], self.device)
            self.tokens[:, 0].index_copy_(0, at, values[0])
            self.positions[:, 0].index_copy_(0, at, values[1])
            self.writes.index_copy_(0, at, values[2])
        for i, r in rows:
            pending = ahead is not None and ahead.get(i) is r
            self.backend.counts["kv positions"] += k * (len(r.ids) + 1 + k * pending) + k * (k - 1) // 2
        got = self._replay_chunk(b, self.length, self._sampling_block(rows, k, ahead), k)
        event = None
        if cuda:
            host = torch.empty(got.shape, dtype=got.dtype, pin_memory=True)
            host.copy_(got, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            got = host
        self.backend.counts["decode"] += k
        self.backend.counts["chunks queued ahead"] += ahead is not None
        self.backend.seconds["decode forward"] += time.perf_counter() - started
        return dict(rows), got, event

    def _drain(self) -> list:
        """Read the chunk in flight, if any: each of its rows still live takes its tokens up to its stop (a row
        that left since, or whose slot another row took, is skipped: its tokens were computed past its end)."""
        if self.inflight is None:
            return []
        ahead, got, event = self.inflight
        self.inflight = None
        started = time.perf_counter()
        if event is not None:
            event.synchronize()
        got = got.tolist()
        self.backend.seconds["decode forward"] += time.perf_counter() - started
        k, done = len(got) // 2, []
        columns = list(zip(*got[:k]))  # slot i's k tokens
        for i, r in ahead.items():
            if self.rows[i] is r and self._accept(i, r, columns[i]):
                done.append(i)
        return self._finish_slots(done)

    def _sampling_block(self, rows: list, k: int, ahead: dict | None = None):
        """Each of `rows`' [(slot, row)] temperature and top_p set on the device (an idle slot's 0: greedy), and its
        next k uniforms as a pinned [slots, k] host tensor; a row of the chunk in flight (`ahead`) takes the k after
        those that chunk is drawing with."""
        import torch

        cuda = self.device.type == "cuda"
        temps, top_ps, block = [0.0] * self.slots, [0.0] * self.slots, [[0.0] * k for _ in range(self.slots)]
        for i, r in rows:
            temps[i], top_ps[i] = r.sampling.temperature, r.sampling.top_p
            pending = ahead is not None and ahead.get(i) is r
            block[i] = self._uniforms(i, r, 2 * k)[k:] if pending else self._uniforms(i, r, k)
        both = upload([temps, top_ps], self.device, torch.float32)
        self.temperatures.copy_(both[0])
        self.top_ps.copy_(both[1])
        return pinned(block, torch.float32, cuda)

    def _replay_chunk(self, b: int, lb: int, block, k: int):
        """The chunk's k steps with uniforms `block` [slots, k] (host): k / g replays of a g-step graph queued
        back to back, the device feeding each the last one's tokens; [2k, b] longs on the device, not waited for."""
        import torch

        if self.uniform_block is None or self.uniform_block.shape[1] != k:
            self.uniform_block = torch.zeros(self.slots, k, dtype=torch.float32, device=self.device)
        self.uniform_block.copy_(block, non_blocking=True)
        g = self.graph_steps if self.graph_steps and k % self.graph_steps == 0 else k  # steps a graph holds
        if self.uniform_window is None or self.uniform_window.shape[1] != g:
            self.uniform_window = torch.zeros(self.slots, g, dtype=torch.float32, device=self.device)
        self.chunking = g
        try:
            outs = []
            for j in range(0, k, g):
                self.uniform_window.copy_(self.uniform_block[:, j: j + g])
                out = self._run_decode(b, lb)
                outs.append(out.clone() if g < k else out)  # a graph's output is overwritten by its next replay
            return torch.cat([o[:g] for o in outs] + [o[g:] for o in outs])
        finally:
            self.chunking = 0

    def _chunk_size(self) -> int:
        return self.decode_chunk if self.decode_chunk > 1 and self.gpu_sampling and self.live_attention else 1

    def _chunk_pass(self, b: int, lb: int):
        """What a graph of the chunk holds: g steps (`_step`), each one's tokens the next one's inputs, its
        uniforms from `uniform_window`; [2g, b] longs out (g rows of tokens, then g rows of flags: the row was
        wider than the head at that step)."""
        import torch

        active = (self.writes[:b] != self.trash).long()  # an idle slot writes to `trash` and stays there
        tokens, wides = [], []
        for j in range(self.chunking):
            self.uniforms[:b].copy_(self.uniform_window[:b, j])
            picked = self._step(b, lb)[1]
            tokens.append(picked[:b])
            wides.append(picked[b:])
            self.tokens[:b, 0].copy_(picked[:b])
            self.positions[:b, 0].add_(active)
            self.writes[:b].add_(active)
        return torch.stack(tokens + wides)

    def _decode_chunk(self, b: int, lb: int, index: list[int], rows: list, k: int) -> list:
        block = self._sampling_block(list(zip(index, rows)), k)
        self.wide_inside = self.last_wide  # this chunk's graph draws wide rows itself
        started = time.perf_counter()
        got = self._replay_chunk(b, lb, block, k).tolist()  # the chunk's one sync
        self.backend.seconds["decode forward"] += time.perf_counter() - started
        self.backend.counts["decode"] += k
        self.backend.counts["kv positions"] += sum(k * (len(r.ids) + 1) + k * (k - 1) // 2 for r in rows)
        wide_rows = [any(got[k + j][i] for i in index) for j in range(k)] if any(map(any, got[k:])) else [False] * k
        self.wide_steps += sum(wide_rows)
        retry = False  # some row was wide at a step its graph did not draw wide rows: it runs that step again
        done = []
        columns = list(zip(*got))  # slot i's k tokens, then its k wide flags
        for i, r in zip(index, rows):
            column = columns[i]
            wide_at = column.index(1, k) - k if not self.wide_inside and 1 in column[k:] else k
            if self._accept(i, r, column[:wide_at]):
                done.append(i)
            elif wide_at < k:
                retry = True
                self.mask[i, len(r.ids) + 1:] = False  # steps it runs again (read by masked SDPA only)
        self.backend.counts["chunk retries"] += retry
        self.last_wide = retry or (self.wide_inside and any(wide_rows))
        return self._finish_slots(done)
