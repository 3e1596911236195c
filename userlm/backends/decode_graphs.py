"""How the static engine's decode step runs on CUDA (`static_cache.py`): captured once per (batch bucket,
length bucket) as a CUDA graph, then replayed (one launch instead of ~15 a layer), eagerly where a capture
fails. With `compile_decode`, the RMSNorms and the rotary embedding of the decode step run as kernels fused by
`torch.compile` (inductor), captured into the same graph: at 7B's shapes the graph is otherwise ~45 kernels a
layer, two thirds of them small elementwise ones that cost more than the weights' read (results/benchmarks/).
The decode step's pieces are compiled for its fixed shapes (one graph per batch bucket); with `compile_prefill`
(`slot_prefill.py`) prefill runs the same pieces compiled for dynamic shapes, without CUDA graphs."""

from __future__ import annotations

import contextlib
import time

from userlm.backends import fused_residual, rotary_write, silu_mul
from userlm.backends.step_sampling import StepSampling


def _plain_linears(module) -> bool:
    """Its projections are plain `nn.Linear`: no peft wrapper (`base_layer`), no bitsandbytes subclass inside."""
    import torch

    return all(type(c) is torch.nn.Linear for c in module.children() if isinstance(c, torch.nn.Linear)) \
        and not any(hasattr(c, "base_layer") for c in module.modules())


@contextlib.contextmanager
def no_collection():
    """Python's cyclic garbage collector off while a graph is captured (`torch.cuda.graph` collects once before):
    a collection during the capture can free an object that makes a CUDA call a capture forbids (an earlier
    engine's graph, say), and the process aborts; seen once on the H200 (2026-12-01, a test process that had built
    engines with graphs before)."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class DecodeGraphs(StepSampling):
    """The decode step's replay and compilation, for `SlotEngine` (which sets the attributes and defines
    `_decode_pass`, the step that is captured)."""

    # autotune_decode (with compile_decode): the decode step's compiled pieces under inductor's max-autotune (its
    # Triton GEMM templates timed against cuBLAS for the MLP's products at each batch bucket; minutes to tune)
    autotune_decode = False
    # fuse_residual (with fuse_projections): a known pre-norm layer's residual adds folded into its post-attention
    # norm and its down projection (`fused_residual.py`). None: with compile_decode on CUDA, where measured (H200,
    # 7B/128, 2026-12-01: 1.03x all-in side by side; results/benchmarks/2026-12-01-h200-prefill-overlap.md)
    fuse_residual: bool | None = None

    fuse_rotary_write: bool | None = None  # (compile_decode) rotary + key/value write one kernel (`rotary_write.py`); None: CUDA with Triton
    # the same in packed prefill passes under compile_prefill (16 tokens a program; 7B/128 1.010x all-in side by
    # side, H200 2026-12-01 session 20: results/benchmarks/2026-12-01-h200-prefill-silu-suffix.md)
    fuse_rotary_prefill = True
    # prefill_silu_kernel (with fuse_residual): a prefill pass's silu(gate) * up by `silu_mul.py`'s kernel, not
    # inductor's dynamic-shape one; None: CUDA with Triton
    prefill_silu_kernel: bool | None = None

    def _triton_kernel(self, setting: bool | None) -> bool:
        """A hand-written kernel's setting on this engine: as set (on CUDA only), None: on CUDA with Triton."""
        if self.device.type != "cuda" or setting is not None:
            return bool(setting) and self.device.type == "cuda"
        from userlm.backends.triton_top_p import available

        return available() is None

    def _rotary_write(self, prefill: bool = False) -> bool:
        return (self.fuse_rotary_prefill or not prefill) and bool(self.compile_decode) \
            and self._triton_kernel(self.fuse_rotary_write)

    def _silu_kernel(self) -> bool:
        return self._triton_kernel(self.prefill_silu_kernel)

    def _residual(self) -> bool:
        if self.fuse_residual is not None:
            return self.fuse_residual
        return bool(self.compile_decode) and self.device.type == "cuda"

    def _fused_parts(self) -> list:
        """(owner, attribute, build, when) for each piece swapped in during a pass, build(compile_fn) giving the
        replacement (`when`: see `fused_parts`): under `compile_decode`, every RMSNorm module's forward, the modeling module's
        `apply_rotary_pos_emb`, and an MLP's forward where its projections are plain `nn.Linear` (the activation
        fuses with the product; peft's and bitsandbytes' layers stay eager), so only architecture-independent
        elementwise code is traced; under `fuse_projections`, q/k/v and gate/up one matmul each
        (`fused_projections.py`; compiled with the rest), with `fuse_residual` the layers' residual adds folded in
        (`fused_residual.py`). `_compiled` builds them per kind of pass."""
        import sys

        parts, seen = [], set()
        if self.fuse_projections:
            from userlm.backends.fused_projections import fused_parts

            parts = fused_parts(self.model)
        if not self.compile_decode:
            return parts
        fused = {id(owner) for owner, *_ in parts}
        for m in self.model.modules():
            cls = type(m)
            if id(m) in fused:
                continue
            if cls.__name__.endswith("RMSNorm") or (cls.__name__.endswith("MLP") and _plain_linears(m)):
                parts.append((m, "forward", lambda c, f=m.forward: c(f), None))
            module = sys.modules.get(cls.__module__)
            if module is not None and id(module) not in seen and hasattr(module, "apply_rotary_pos_emb"):
                seen.add(id(module))
                # deferred into the key/value write where a decode pass asks (`rotary_write.py`), else compiled
                wrap = rotary_write.deferring if rotary_write.defers(module) else (lambda fn: fn)
                parts.append((module, "apply_rotary_pos_emb",
                              lambda c, f=module.apply_rotary_pos_emb, w=wrap: w(c(f)), None))
        return parts

    @contextlib.contextmanager
    def _compiled(self, kind: str = "decode"):
        """The pieces of `_fused_parts` swapped in for one pass: "decode" compiled for its fixed shapes (one graph
        per batch bucket and piece), "prefill" (`compile_prefill`) compiled with dynamic shapes (rows and length
        vary per pass; a decode step's length 1 never matches those graphs' guards)."""
        if not (self.compile_decode or self.fuse_projections):
            yield
            return
        import torch
        import torch._dynamo

        settings = (self.compile_decode, self.fuse_projections)
        if self.fused is None or self.fused[0] != settings:  # (settings, parts, {kind: replacements})
            self.fused = (settings, self._fused_parts(), {})
            config = torch._dynamo.config  # one graph per batch bucket (1..slots) and piece, not 8
            config.recompile_limit = max(getattr(config, "recompile_limit", 8), 64)
        by_kind = self.fused[2]
        residual = self._residual()
        kind_key = (kind, self.autotune_decode and kind == "decode", residual)
        if kind_key not in by_kind:
            mode = "max-autotune-no-cudagraphs" if self.autotune_decode and kind == "decode" else None
            compile_fn = (lambda fn: torch.compile(fn, dynamic=kind == "prefill" or None, mode=mode)) \
                if self.compile_decode else (lambda fn: fn)
            by_kind[kind_key] = [(owner, name, build(compile_fn)) for owner, name, build, when in self.fused[1]
                                 if when is None or when == residual]
        parts = by_kind[kind_key]
        saved = [(owner, name, owner.__dict__.get(name)) for owner, name, _ in parts]
        for owner, name, fn in parts:
            setattr(owner, name, fn)
        try:
            rotary_write.ENABLED[0] = "decode" if kind == "decode" and self._rotary_write() else False
            silu_mul.ENABLED[0] = kind == "prefill" and self._silu_kernel()
            yield
        finally:
            rotary_write.ENABLED[0], rotary_write.PENDING[0], silu_mul.ENABLED[0] = False, None, False
            for owner, name, old in saved:
                if old is None:
                    delattr(owner, name)  # the instance attribute goes; the class's forward shows again
                else:
                    setattr(owner, name, old)

    def _run_decode(self, b: int, lb: int):
        import torch

        if not (self.use_graphs and self.device.type == "cuda"):
            return self._decode_pass(b, lb)
        key = (b, lb, self.gpu_sampling, self.compile_decode, self.live_attention, self.wide_inside, self.chunking,
               self.wide_sort, self.wide_kernel, self.fuse_projections, self.fuse_kv_write, self.compile_head,
               self.head_by_logits, self._by_rejection(), self._softmax_in_kernel(b), self._rotary_write(), fused_residual.IN_PLACE_DOWN,
               tuple(sorted(self.attention_options.items())),
               self.autotune_decode, self._residual())
        graph = self.graphs.get(key)
        if graph is None:
            try:
                graph = self._capture(b, lb)
            except Exception as e:  # noqa: BLE001 - any kernel that cannot be captured (a quantized matmul, say): stay eager
                reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                torch.cuda.synchronize()
                if self.live_attention:  # flex attention's compile first: the masked SDPA reads all lb positions
                    self.live_attention, self.graph_error = False, f"live attention off: {type(e).__name__}"
                    print(f"hf backend: live-row decode attention failed ({reason}); masked SDPA instead", flush=True)
                    return self._run_decode(b, lb)
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
        # a chunk (`chunk_decode.py`) advances its inputs on the device: the replay must start from where it did
        inputs = (self.tokens, self.positions, self.writes, self.uniforms)
        saved = [t.clone() for t in inputs]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self._decode_pass(b, lb)
        torch.cuda.current_stream().wait_stream(stream)
        for t, s in zip(inputs, saved):
            t.copy_(s)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()  # one pool: graphs run one at a time and share memory
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool), no_collection():
            out = self._decode_pass(b, lb)
        self.backend.seconds["capture"] += time.perf_counter() - started
        self.backend.counts["graphs"] += 1
        return graph, out
