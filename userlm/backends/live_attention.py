"""Decode attention that reads only each row's live keys/values (issue 25 item 1), for the static engine
(`static_cache.py`, opt-in: `SlotEngine.live_attention`).

The engine's default decode attention (`slot_kv.slot_attention`) runs SDPA over every row of the batch up to
the longest row's 256-position bucket, with a boolean mask: a batch whose longest row holds 2,000 positions reads
2,000 positions of every row (replay's long histories beside short ones). Here the step attends through torch's
`flex_attention` with a block mask built on the GPU from each row's length (its position + 1): a row reads its
own 128-position blocks and no more, the last one masked, the mask built inside the captured step (no host
work), over the whole slot buffer, so one CUDA graph serves a batch bucket at every length. On CUDA it runs
compiled (inductor's flex-decoding Triton kernel); elsewhere eagerly (slow, the same values: CPU tests).

Grouped-query attention is folded as in `slot_attention`: the query heads that share a key/value head become
that head's "queries" ([rows, kv heads, heads per kv head, dim]), so the decoding kernel reads each key once and
packs the heads into one tile (its GQA path wants a power-of-two group; Qwen2.5's is 7). Hand-written glue, not
transformers' flex path: that one builds its block mask on the host each call, which a CUDA graph cannot hold."""

from __future__ import annotations

import functools
import inspect

BLOCK = 128  # positions a block of the mask; flex_attention's default
_ACTIVE: list = [None]  # the LiveAttention of the decode pass under way (read by `slot_attention`)


def active():
    return _ACTIVE[0]


class LiveAttention:
    def __init__(self, slots: int, device, compiled: bool):
        import torch

        self.lengths = torch.ones(slots, dtype=torch.int32, device=device)  # static: a graph reads it each replay
        self.blocks = torch.arange(1 << 16 >> 7, dtype=torch.int32, device=device)  # block ids, up to 65,536 positions
        lengths = self.lengths

        def live(b, h, q, kv):  # one closure for the engine's life: a new one each pass would recompile
            return kv < lengths[b]

        self.mask_mod, self.compiled, self.fn, self.block_mask = live, compiled, None, None
        self.options: dict = {}  # the compiled kernel's `kernel_options` (the engine's `attention_options`)

    def _flex(self):
        if self.fn is None:
            import torch
            from torch.nn.attention.flex_attention import flex_attention

            if self.compiled:
                config = torch._dynamo.config  # one compile per batch bucket and slot width
                config.recompile_limit = max(getattr(config, "recompile_limit", 8), 64)
                self.fn = torch.compile(flex_attention, dynamic=False)
            else:
                import warnings

                warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
                self.fn = flex_attention
        return self.fn

    def prepare(self, b: int, positions, group: int, width: int) -> None:
        """Each of rows [0, b)'s live length (position + 1; an idle slot's position is 0: it reads position 0)
        and the block mask that reads only those positions: whole blocks without a mask, the last partial one
        with it. Device ops only, so a CUDA graph captures them."""
        import torch
        from torch.nn.attention.flex_attention import BlockMask

        n = positions[:b, 0].to(torch.int32) + 1
        self.lengths[:b].copy_(n)
        _ACTIVE[0] = self
        if self.options.get("kernel") == "triton" and positions.is_cuda:  # `attend` reads the lengths only
            return
        blocks = width // BLOCK
        full = n // BLOCK
        partial = (n % BLOCK > 0).to(torch.int32)
        ids = self.blocks[:blocks].view(1, 1, 1, blocks).expand(b, 1, 1, blocks).contiguous()
        last = torch.minimum(full, torch.full_like(full, blocks - 1)).view(b, 1, 1, 1).expand(b, 1, 1, blocks)
        extra = {"compute_q_blocks": False} if "compute_q_blocks" in _from_kv_params() else {}
        self.block_mask = BlockMask.from_kv_blocks(
            partial.view(b, 1, 1), last.contiguous(), full.view(b, 1, 1), ids, BLOCK_SIZE=BLOCK,
            mask_mod=self.mask_mod, seq_lengths=(group, width), **extra)

    def attend(self, query, key, value, scale):
        """query [rows, heads, 1, dim] against key/value [rows, kv heads, width, dim]: [rows, heads, 1, dim]. With
        `options["kernel"] == "triton"` on CUDA, `decode_attention.py`'s kernels instead of flex decoding (opt-in;
        the other options are theirs: chunk, block_n, warps, stages)."""
        rows, heads, _, dim = query.shape
        kv_heads = key.shape[1]
        folded, options = query.reshape(rows, kv_heads, heads // kv_heads, dim), dict(self.options)
        if options.pop("kernel", None) == "triton" and query.is_cuda:
            from userlm.backends.decode_attention import decode_attention

            out = decode_attention(folded.contiguous(), key, value, self.lengths[:rows],
                                   scale if scale is not None else dim ** -0.5,
                                   **{k: v for k, v in options.items() if k in ("chunk", "block_n", "warps", "stages")})
        else:
            out = self._flex()(folded, key, value, block_mask=self.block_mask, scale=scale,
                               **({"kernel_options": options} if options and self.compiled else {}))
        return out.reshape(rows, heads, 1, dim)


def done() -> None:
    _ACTIVE[0] = None


@functools.cache
def _from_kv_params():
    from torch.nn.attention.flex_attention import BlockMask

    return inspect.signature(BlockMask.from_kv_blocks).parameters
