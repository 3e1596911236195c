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
  wait for the chunk's end."""

from __future__ import annotations

import time

AHEAD = 64  # uniforms drawn at once per row


class ChunkDecode:
    """Mixin for `SlotEngine`: `ahead` (slot -> (row, queue of its next uniforms)), `ahead_size`, `decode_chunk`."""

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
        import torch

        cuda = self.device.type == "cuda"
        temps, top_ps = [0.0] * self.slots, [0.0] * self.slots
        block = [[0.0] * k for _ in range(self.slots)]
        for i, r in zip(index, rows):
            temps[i], top_ps[i] = r.sampling.temperature, r.sampling.top_p
            block[i] = self._uniforms(i, r, k)
        if self.uniform_block is None or self.uniform_block.shape[1] != k:
            self.uniform_block = torch.zeros(self.slots, k, dtype=torch.float32, device=self.device)
        self.uniform_block.copy_(torch.tensor(block, dtype=torch.float32, pin_memory=cuda), non_blocking=True)
        both = torch.tensor([temps, top_ps], dtype=torch.float32, pin_memory=cuda).to(self.device, non_blocking=True)
        self.temperatures.copy_(both[0])
        self.top_ps.copy_(both[1])
        self.wide_inside = self.last_wide  # this chunk's graph draws wide rows itself
        g = self.graph_steps if self.graph_steps and k % self.graph_steps == 0 else k  # steps a graph holds
        if self.uniform_window is None or self.uniform_window.shape[1] != g:
            self.uniform_window = torch.zeros(self.slots, g, dtype=torch.float32, device=self.device)
        started = time.perf_counter()
        self.chunking = g
        try:  # k / g replays queued back to back (the device feeds each the last one's tokens), then one sync
            outs = []
            for j in range(0, k, g):
                self.uniform_window.copy_(self.uniform_block[:, j: j + g])
                out = self._run_decode(b, lb)
                outs.append(out.clone() if g < k else out)  # a graph's output is overwritten by its next replay
            got = torch.cat([o[:g] for o in outs] + [o[g:] for o in outs]).tolist()  # the chunk's one sync
        finally:
            self.chunking = 0
        self.backend.seconds["decode forward"] += time.perf_counter() - started
        self.backend.counts["decode"] += k
        self.backend.counts["kv positions"] += sum(k * (len(r.ids) + 1) + k * (k - 1) // 2 for r in rows)
        wide_rows = [any(got[k + j][i] for i in index) for j in range(k)] if any(map(any, got[k:])) else [False] * k
        self.wide_steps += sum(wide_rows)
        retry = False  # some row was wide at a step its graph did not draw wide rows: it runs that step again
        finished = []
        done, stops = self.backend._done, self.backend.stop_set
        columns = list(zip(*got))  # slot i's k tokens, then its k wide flags
        for i, r in zip(index, rows):
            column = columns[i]
            wide_at = column.index(1, k) - k if not self.wide_inside and 1 in column[k:] else k
            accepted = r.take(column[:wide_at], stops)
            if wide_at < k and not done(r):
                retry = True
                self.mask[i, len(r.ids) + 1:] = False  # steps it runs again (read by masked SDPA only)
            self._consume(i, accepted)
            self.backend.counts["chunk tokens"] += accepted
            if done(r):
                finished.append(self._finish(i))
        self.backend.counts["chunk retries"] += retry
        self.last_wide = retry or (self.wide_inside and any(wide_rows))
        return finished
