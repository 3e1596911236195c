"""transformers backend: CPU or GPU, peft adapters, optional 4-bit.

Generation runs its own small scheduler over the model's forward pass, because `model.generate` batches by
call (every row waits for the longest) and re-reads the whole conversation each turn, and transformers'
paged continuous batching (`generate_batch`) decoded 2.4x slower than padded `generate` on the 2-core CPU
(measured: 70-79 vs 174 tokens/s, SmolLM2-135M, 32 prompts x 64 tokens). The scheduler:
- batches by token: a generation that stops leaves the batch at once and a waiting one joins (`step`);
- keeps each conversation's KV cache between turns and feeds only the tokens its next prompt adds;
- samples each row from its own seeded generator, so a conversation's text depends on its seed and not on
  which other conversations share its batch (also what makes sharded and resumed runs reproducible).
- with `shared_prefix=N`, starts a prompt from the keys/values of the longest prefix it shares with one of
  the last N prompts (a common system prompt and few-shot example), off by default (see `__init__`).
On CUDA the same interface runs on `static_cache.py` instead (fixed slots, batched prefill, decode replayed
as a CUDA graph): this scheduler is launch-bound there (~30-80 ms a pass at any batch). `static_cache=True`
selects it on the CPU too, where it is no faster and stays off by default.
Rows are sampled by `sampling.py`, this scheduler's cache layer is `growing_cache.py`, and scoring
(`masked_loglikelihood`) is `hf_scoring.py`.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Hashable

from userlm.backends import register_backend
from userlm.backends.base import Backend, Generation, GenerationRequest
from userlm.backends.cpu_head import chunk_output_head
from userlm.backends.growing_cache import growing_layer
from userlm.backends.hf_scoring import HFScoring
from userlm.backends.prompt_ids import PromptIds, common_prefix
from userlm.backends.rows import Row
from userlm.backends.sampling import sample_next
from userlm.chat import render, render_ids_batch, stop_token_ids
from userlm.io import UserError

SHARED_PREFIX_MIN = 32  # shorter prefixes shared with another prompt are computed afresh


def _switch(name: str, value, auto) -> bool:
    """An auto | on | off option (or a bool) as a bool; `auto()` decides auto."""
    if value not in ("auto", "on", "off", True, False):
        raise UserError(f"{name} must be auto, on or off, got {value!r}")
    return auto() if value == "auto" else value in (True, "on")


def _has_triton() -> bool:
    import importlib.util

    return importlib.util.find_spec("triton") is not None


@register_backend("hf")
class HFBackend(HFScoring, Backend):
    def __init__(self, model: str, quantization: str = "none", dtype: str = "auto", max_batch: int = 32,
                 prefix_cache: bool = True, continuous: bool = True, static_cache: str | bool = "auto",
                 cuda_graphs: bool = True, compile_decode: str | bool = "auto", shared_prefix: int = 0):
        from userlm.models import load_causal_lm

        self.model_ref = model
        self.model, self.tokenizer = load_causal_lm(model, quantization=quantization, dtype=dtype)
        chunk_output_head(self.model)  # CPU only: the same logits, faster for a few rows (cpu_head.py)
        self.max_batch = max_batch
        self.prefix_cache, self.continuous = prefix_cache, continuous  # off only to measure what they gain
        self.stop_ids = stop_token_ids(self.tokenizer)
        self.waiting: deque = deque()
        self.rows: list[Row] = []
        self.cache = None  # the live rows' KV cache, left-padded to a common length
        self.mask = None  # [rows, positions]: 1 where a row has a real token
        self.kept: dict = {}  # key -> (ids, [(keys, values) per layer]) of finished generations
        # The prompts of the last `shared_prefix` prefills, (ids, [(keys, values) per layer]): a request starts
        # from the longest prefix (SHARED_PREFIX_MIN tokens at least) it shares with one of them (a system
        # prompt, few-shot examples). Off by default: keys/values computed within another prompt differ from a
        # whole prefill's in the last bits (the attention kernel reduces over another length; logits within
        # 5e-5 on SmolLM2-135M), which can flip a near-tie between two tokens. Dynamic scheduler only.
        if shared_prefix < 0:
            raise UserError(f"shared_prefix must be >= 0, got {shared_prefix}")
        self.recent: deque = deque(maxlen=shared_prefix)
        # each conversation's next prompt tokenized from its previous prompt's last special token on (`prompt_ids.py`;
        # where the tokenizer splits there by construction, checked against whole tokenizations first); off: whole
        self.prompt_ids = PromptIds(self.tokenizer)
        self.suffix_tokens = True
        self.seconds: Counter = Counter()  # where step() spends its time (prefill, rebuild, decode), for benchmarks
        self.counts: Counter = Counter()  # forward passes by kind (a replayed CUDA graph calls no forward())
        import inspect

        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        # transformers renamed `past_key_values` to `cache` (5.24 warns on the old name; 5.17 knows only it)
        self.cache_arg = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        # The GPU engine (static_cache.py): fixed slots, batched prefill, decode replayed as a CUDA graph. On by
        # default only on CUDA, where the dynamic scheduler below is launch-bound; on the CPU the dynamic one
        # is as fast and stays the default (the demo's numbers), the static one selectable for tests.
        cuda = self.device.type == "cuda"
        static_cache = _switch("static_cache", static_cache, lambda: cuda)
        # inductor's GPU kernels need triton; on the CPU graphs are off anyway
        compile_decode = _switch("compile_decode", compile_decode, lambda: cuda and _has_triton())
        self.slots = None
        if static_cache:
            from userlm.backends.static_cache import SlotEngine

            self.slots = SlotEngine(self, max_batch, graphs=cuda_graphs, compile_decode=compile_decode)

    @property
    def device(self):
        return next(self.model.parameters()).device

    # ---- generation -------------------------------------------------------------------------------------
    def submit(self, key: Hashable, request: GenerationRequest) -> None:
        self.waiting.append((key, request))

    def release(self, conversation: Hashable) -> None:
        self.prompt_ids.release(conversation)
        for key in [k for k in self.kept if k[0] == conversation]:
            del self.kept[key]

    def step(self) -> list[tuple[Hashable, Generation]]:
        """Admit waiting requests into free rows (prefill), then one decode step for every live row."""
        import torch

        if self.slots is not None:
            return self.slots.step()

        finished = []
        with torch.inference_mode():
            live = [r for r in self.rows if r is not None]
            if self.waiting and (self.continuous or not live):
                joining = []
                while self.waiting and len(live) + len(joining) < self.max_batch:
                    started = time.perf_counter()
                    row, kv, logits = self._prefill(*self.waiting.popleft())
                    self._sample([row], logits)
                    self.seconds["prefill"] += time.perf_counter() - started
                    if self._done(row):
                        finished.append(self._finish(row, kv))
                    else:
                        joining.append((row, kv))
                started = time.perf_counter()
                if joining or len(live) < len(self.rows):
                    self._rebuild(joining)
                self.seconds["rebuild"] += time.perf_counter() - started
            elif self.rows and len(live) <= 0.75 * len(self.rows):
                started = time.perf_counter()
                self._rebuild([])
                self.seconds["rebuild"] += time.perf_counter() - started
            if self.rows:
                started = time.perf_counter()
                finished += self._decode()
                self.seconds["decode"] += time.perf_counter() - started
        return finished

    def _prompts(self, joining: list) -> list:
        """`_prompt` of each (key, request), the prompts to render tokenized in one batch (`_render_ids`)."""
        rendered = iter(self._render_ids([(key, r.messages) for key, r in joining if not r.prompt_ids]))
        return [self._prompt(key, r, r.prompt_ids or next(rendered)) for key, r in joining]

    def _render_ids(self, todo: list) -> list[list[int]]:
        """Each (key, messages)' prompt ids, tokenized in one batch; with `suffix_tokens` from its key's previous
        prompt's last special token on (`prompt_ids.py`)."""
        if not self.suffix_tokens:
            return render_ids_batch(self.tokenizer, [m for _, m in todo], add_generation_prompt=True)
        texts = [render(self.tokenizer, messages, add_generation_prompt=True) for _, messages in todo]
        return self.prompt_ids.encode([key for key, _ in todo], texts)

    def _prompt(self, key, request: GenerationRequest, ids: list[int] | None = None):
        """(token ids of the prompt (`ids` where rendered already), how many of them are cached already, the
        keys/values they come from): the conversation's previous turn, or with `shared_prefix` a recent prompt that
        shares a longer prefix."""
        ids = ids or request.prompt_ids or self._render_ids([(key, request.messages)])[0]
        reused, old_kv = 0, []
        if key in self.kept:
            old_ids, old_kv = self.kept.pop(key)
            reused = common_prefix(old_ids, ids)
        for old_ids, kv in self.recent:
            shared = common_prefix(old_ids, ids)
            if shared > max(reused, SHARED_PREFIX_MIN - 1):
                reused, old_kv = shared, kv
        return ids, reused, old_kv

    def _prefill(self, key, request: GenerationRequest):
        """One request alone (no padding): its prompt, minus whatever prefix its previous turn left cached."""
        import torch
        from transformers.cache_utils import DynamicCache

        ids, reused, old_kv = self._prompt(key, request)
        past = [(k[:, :, :reused], v[:, :, :reused]) for k, v in old_kv] if reused else []
        cache = DynamicCache(ddp_cache_data=past) if past else DynamicCache()
        self.counts["prefill"] += 1
        feed = torch.tensor([ids[reused:]], device=self.device)
        positions = torch.arange(reused, len(ids), device=self.device).unsqueeze(0)
        out = self.model(input_ids=feed, position_ids=positions, use_cache=True, logits_to_keep=1,
                         **{self.cache_arg: cache})
        generator = torch.Generator().manual_seed(request.seed)
        row = Row(key, ids, request.sampling, generator)
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        if self.recent.maxlen:
            self.recent.append((ids, kv))  # read only: the prefill of a request that starts from it concatenates
        return row, kv, out.logits[:, -1]

    def _rebuild(self, joining: list) -> None:
        """New buffers holding the live rows (finished ones are dropped here, not at once, so that one copy
        serves both) and the joining ones, each left-padded with zeros to a common length."""
        import torch

        keep = [i for i, r in enumerate(self.rows) if r is not None]
        if not keep and not joining:
            self.rows, self.cache, self.mask = [], None, None
            return
        first = int(self.mask[keep].any(0).nonzero()[0]) if keep else 0  # leading columns that only pad
        old = self.mask.shape[1] - first if keep else 0
        width = max([old] + [kv[0][0].shape[-2] for _, kv in joining])
        n_rows = len(keep) + len(joining)
        # Spare positions: the most decode steps a row has left (a decode step writes one position per row).
        room = 1 + max(r.sampling.max_new_tokens - len(r.generated)
                       for r in [self.rows[i] for i in keep] + [row for row, _ in joining])

        def stack(parts):  # [rows, ..., length(, dim)] pieces right-aligned at `width`, zeros left of each
            if parts[0].dim() == 2:
                buffer = parts[0].new_zeros(n_rows, width)
            else:  # only the padding is zeroed: the spare room is written before it is read
                buffer = parts[0].new_empty(n_rows, *parts[0].shape[1:-2], width + room, *parts[0].shape[-1:])
            row = 0
            for part in parts:
                if part.dim() == 4:
                    pad = width - part.shape[-2]
                    buffer[row: row + part.shape[0], :, pad: width] = part
                    buffer[row: row + part.shape[0], :, :pad] = 0
                else:
                    buffer[row: row + part.shape[0], width - part.shape[-1]:] = part
                row += part.shape[0]
            return buffer

        runs = []  # the live rows as runs of adjacent rows: slices (views) rather than one gathered copy
        for i in keep:
            if runs and runs[-1][1] == i:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1])

        def layer_parts(li, which):
            old = (self.cache.layers[li].keys, self.cache.layers[li].values)[which] if keep else None
            return [old[a:b, :, first:] for a, b in runs] + [kv[li][which] for _, kv in joining]

        n_layers = len(self.cache.layers) if keep else len(joining[0][1])
        layers = [growing_layer(stack(layer_parts(li, 0)), stack(layer_parts(li, 1)), width) for li in range(n_layers)]
        mask = stack(([self.mask[keep, first:]] if keep else []) +
                     [torch.ones(1, kv[0][0].shape[-2], dtype=torch.long, device=self.device) for _, kv in joining])
        from transformers.cache_utils import DynamicCache

        self.cache, self.mask = DynamicCache(), mask
        self.cache.layers = layers
        self.rows = [self.rows[i] for i in keep] + [row for row, _ in joining]

    def _decode(self) -> list[tuple[Hashable, Generation]]:
        """One token for every row; rows that finish are marked dead (None) until the next rebuild."""
        import torch

        self.counts["decode"] += 1
        live = [r is not None for r in self.rows]
        feed = torch.tensor([[r.generated[-1] if r else 0] for r in self.rows], device=self.device)
        positions = torch.tensor([[len(r.ids) if r else 0] for r in self.rows], device=self.device)
        self.mask = torch.cat([self.mask, torch.tensor(live, device=self.device).long().unsqueeze(1)], dim=1)
        logits = self.model(input_ids=feed, attention_mask=self.mask, position_ids=positions,
                            use_cache=True, **{self.cache_arg: self.cache}).logits[:, -1]
        index = [i for i, alive in enumerate(live) if alive]
        rows = [self.rows[i] for i in index]
        for r in rows:
            r.ids.append(r.generated[-1])
        self._sample(rows, logits[index])
        finished = []
        for i, r in zip(index, rows):
            if self._done(r):
                valid = self.mask[i].bool()
                kv = [(layer.keys[i: i + 1, :, valid], layer.values[i: i + 1, :, valid]) for layer in self.cache.layers]
                finished.append(self._finish(r, kv))
                self.rows[i] = None
        if not any(self.rows):
            self.rows, self.cache, self.mask = [], None, None
        return finished

    def _sample(self, rows: list[Row], logits) -> None:
        for r, token in zip(rows, sample_next(logits, *self._draw_inputs(rows, logits.device)).tolist()):
            r.generated.append(token)

    @staticmethod
    def _draw_inputs(rows: list[Row], device):
        """(temperatures, top_ps, uniforms) of `rows`, one uniform drawn from each row's own generator."""
        import torch

        temperatures = torch.tensor([r.sampling.temperature for r in rows], dtype=torch.float32, device=device)
        top_ps = torch.tensor([r.sampling.top_p for r in rows], dtype=torch.float32, device=device)
        uniforms = torch.cat([torch.rand(1, generator=r.generator) for r in rows]).to(device)
        return temperatures, top_ps, uniforms

    def _done(self, row: Row) -> bool:
        return row.generated[-1] in self.stop_ids or len(row.generated) >= row.sampling.max_new_tokens

    def _finish(self, row: Row, kv) -> tuple[Hashable, Generation]:
        if self.prefix_cache:
            self.kept[row.key] = (row.ids, kv)
        stopped = row.generated[-1] in self.stop_ids
        text = self.tokenizer.decode(row.generated[:-1] if stopped else row.generated, skip_special_tokens=True)
        return row.key, Generation(text=text, tokens=len(row.generated), finish_reason="stop" if stopped else "length")
