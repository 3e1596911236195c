"""The static engine's draw inside its decode step (`SlotEngine`, through `DecodeGraphs`): which sampler each row
takes (the head of the 128 most likely tokens, the wide rows' kernels, or every row by rejection) and how it is
compiled; the samplers themselves are `sampling.py`'s and `triton_top_p.py`'s."""

from __future__ import annotations

# `_softmax_in_kernel`'s fewest rows: a program a row reads its row once more than the softmax's own kernels do (32 flat
# rows x 152k, H200: 0.110 ms from logits against 0.101 softmax then kernel; 128 rows: 0.111 against 0.220; they cross
# near 40 rows; bench_top_p.py --softmax, 2026-12-01 session 19). Batch buckets are powers of two up to the slots: with
# 128 slots, the buckets of 64 and 128 rows
SOFTMAX_ROWS = 48


class StepSampling:
    """Sampling for `SlotEngine` (which sets the attributes: wide_kernel, wide_sort, rejection_every_row, ...)."""

    # first_by_rejection: a prefill pass's first tokens drawn as the decode steps draw where those are by rejection
    # (`_sample_first`); off: `sample_next`'s, as before 2026-12-01 (bench flag -first)
    first_by_rejection = True

    def _sample_wide(self):
        """The draw for rows wider than the head (every row where `_by_rejection`): on CUDA with `wide_kernel`
        "triton-rejection" (the default there), `sample_rejection` by one Triton kernel; "triton", `sample_wide`'s
        token by the top-p kernels (`triton_top_p.py`: each row split over programs up to 96 rows, one program a row
        above; "triton-split" / "triton-row" force one; the same floor and token); "rejection", `sample_rejection`
        in torch (a host sync a round: not capturable); else `sample_wide`, on CUDA with `compile_decode` its nucleus
        search compiled (9 rounds of 15 candidates, each round one fused pass over the probabilities; inductor
        cannot generate the cumsum over 152k that follows, which stays eager), else eager bisection (the same
        nucleus: see `nucleus_floor`)."""
        import functools

        from userlm.backends.sampling import nucleus_floor, sample_rejection, sample_wide

        if self.wide_kernel.startswith("triton") and self.device.type == "cuda":
            return self._triton_wide
        if self.wide_kernel.endswith("rejection"):  # torch's `sample_rejection` (host syncs: not capturable)
            return sample_rejection
        if not (self.compile_decode and self.device.type == "cuda") or self.wide_fn is False:
            return sample_wide
        if self.wide_fn is None:
            import torch

            self.wide_fn = functools.partial(
                sample_wide, floor=torch.compile(functools.partial(nucleus_floor, ways=15), dynamic=False))
        return self.wide_fn

    def _sampling(self, fn):
        """`fn` (`sample_head`, or `rejection_inputs` where every row is drawn by rejection) compiled where
        `compile_head` (with `compile_decode` on CUDA): the logits' cast, the temperature and the softmax one kernel
        instead of separate passes over rows x vocabulary (a compile that fails at capture is handled by
        `_run_decode` as any compiled piece's: live attention off first, then compile_decode)."""
        if not (self.compile_head and self.compile_decode and self.device.type == "cuda"):
            return fn
        if fn not in self.head_fns:
            import torch

            self.head_fns[fn] = torch.compile(fn, dynamic=False)
        return self.head_fns[fn]

    def _sample_head(self):
        """`sample_head` with the engine's `head_by_logits` (`_sampling`)."""
        import functools

        from userlm.backends.sampling import sample_head

        return functools.partial(self._sampling(sample_head), by_logits=self.head_by_logits)

    def _by_rejection(self) -> bool:
        """Every row drawn by rejection, no head (`rejection_every_row`, with a rejection `wide_kernel` and
        `wide_sort` off)."""
        return self.rejection_every_row and not self.wide_sort and self.wide_kernel.endswith("rejection")

    def _sample_step(self, logits, b: int):
        """The step's draw for slots [0, b) (inside its graph): ([b tokens, then b wide flags], greedy, probs). Every
        row by rejection where `_by_rejection` (no head, no wide rows); else `sample_head`'s tokens, and where
        `wide_inside` the rows wider than the head drawn as the step-by-step engine draws them after the replay."""
        import torch

        temperatures, top_ps, uniforms = self.temperatures[:b], self.top_ps[:b], self.uniforms[:b]
        if self._by_rejection():
            from userlm.backends.sampling import rejection_inputs

            tokens, greedy, probs = self._rejection_draw(logits, temperatures, top_ps, uniforms,
                                                         self._softmax_in_kernel(b), self._sampling(rejection_inputs))
            return torch.cat([tokens, torch.zeros_like(tokens)]), greedy, probs
        tokens, wide, greedy, probs = self._sample_head()(logits, temperatures, top_ps, uniforms)
        if self.wide_inside:
            if self.wide_sort:
                from userlm.backends.sampling import sample_sorted

                drawn = sample_sorted(probs, greedy, top_ps, uniforms)
            else:
                drawn = self._sample_wide()(probs, top_ps, uniforms)
            tokens = torch.where(wide, drawn, tokens)
        return torch.cat([tokens, wide.long()]), greedy, probs

    def _rejection_draw(self, logits, temperatures, top_ps, uniforms, in_kernel: bool, prepare):
        """(tokens, greedy, probs) of every row by rejection: with `in_kernel` the Triton kernel computes the
        probabilities from the logits (probs None), else `prepare` (`rejection_inputs`, compiled or not) makes them."""
        if in_kernel:
            return self._triton_wide(logits, top_ps, uniforms, temperatures), temperatures <= 0, None
        greedy, probs, nucleus = prepare(logits, temperatures, top_ps)
        return self._sample_wide()(probs, nucleus, uniforms), greedy, probs

    def _sample_first(self, rows: list, logits) -> None:
        """A prefill pass's first tokens, appended to `rows`: where every decode step draws by rejection on the GPU
        (`_by_rejection`, `gpu_sampling`), by the same draw (on CUDA the Triton kernel, from the logits where
        `softmax_in_kernel`, at any row count), not `sample_next`'s inverse CDF, which sorts the whole vocabulary where
        a row's nucleus is wider than 128 tokens (2.8 ms a 7B pass of flat rows on an H200, 2026-11-30); so a row's
        every token comes from one draw. Else the backend's `sample_next`. `verify` counts these rows too."""
        if not (self.first_by_rejection and self.gpu_sampling and self._by_rejection()):
            return self.backend._sample(rows, logits)
        from userlm.backends.sampling import rejection_inputs

        temperatures, top_ps, uniforms = self.backend._draw_inputs(rows, logits.device)
        picked = self._rejection_draw(logits, temperatures, top_ps, uniforms, self._softmax_in_kernel(len(rows), 0),
                                      rejection_inputs)[0].tolist()
        if self.verify:
            self._verify_draws(picked, logits, temperatures, top_ps, uniforms)
        for r, token in zip(rows, picked):
            r.generated.append(token)

    def _verify_draws(self, picked: list, logits, temperatures, top_ps, uniforms) -> None:
        """`verify`: the rows drawn again eagerly in torch (every row by rejection: `sample_rejection`; else
        `sample_next`), the tokens that differ from `picked` counted."""
        from userlm.backends.sampling import rejection_inputs, sample_next, sample_rejection

        if self._by_rejection():
            _, probs, nucleus = rejection_inputs(logits, temperatures, top_ps)
            want = sample_rejection(probs, nucleus, uniforms)
        else:
            want = sample_next(logits, temperatures, top_ps, uniforms, search=not self.wide_sort)
        self.verified += len(picked)
        self.mismatches += sum(a != b for a, b in zip(picked, want.tolist()))

    def _softmax_in_kernel(self, b: int, floor: int = SOFTMAX_ROWS) -> bool:
        """`softmax_in_kernel` where it applies: every row by the Triton rejection kernel, on CUDA, b >= floor."""
        return self.softmax_in_kernel and self.wide_kernel == "triton-rejection" and self.device.type == "cuda" \
            and b >= floor

    def _triton_wide(self, probs, top_ps, uniforms, temperatures=None):
        """`sample_wide` as one Triton kernel (`triton_top_p.py`; with `temperatures`, `probs` are logits and the
        rejection kernel computes the probabilities); where Triton is missing or fails to compile, one line, and the
        torch path from then on (the first call runs eagerly, before any capture)."""
        from userlm.backends.triton_top_p import rejection_tokens, sample_wide_triton

        try:
            if temperatures is not None:
                return rejection_tokens(probs, top_ps, uniforms, temperatures=temperatures)
            return sample_wide_triton(probs, top_ps, uniforms, self.wide_kernel.removeprefix("triton-") if "-" in self.wide_kernel else "auto")
        except Exception as e:  # noqa: BLE001 - no Triton, or a compile error: torch's capturable `sample_wide`
            # (torch's `sample_rejection` syncs with the host each round, which a CUDA graph cannot hold; this also
            # brings the top-128 head back where every row was drawn by rejection)
            print(f"hf backend: Triton top-p kernel failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                  "torch's wide sampling instead", flush=True)
            self.wide_kernel = "torch"
            from userlm.backends.sampling import rejection_inputs, sample_wide

            if temperatures is not None:
                _, probs, top_ps = rejection_inputs(probs, temperatures, top_ps)
            return sample_wide(probs, top_ps, uniforms)
