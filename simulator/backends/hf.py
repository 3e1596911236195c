"""transformers backend: CPU or GPU, peft adapters, optional 4-bit, batched generation with per-request seeds."""

from __future__ import annotations

from collections import defaultdict

from simulator.backends.base import Backend, Generation, GenerationRequest
from userlm.chat import render


def _sampler(generators, temperature: float, top_p: float):
    """A logits processor that samples each row with its own generator and leaves only that token open, so
    greedy decoding emits it. This makes a conversation's text depend on its seed, not on which other
    conversations share its batch (HF's own sampling draws all rows from one global generator)."""
    import torch
    from transformers import LogitsProcessor

    class PerRowSampler(LogitsProcessor):
        def __call__(self, input_ids, scores):
            probs = torch.softmax(scores.float() / temperature, dim=-1)
            if top_p < 1.0:
                sorted_probs, order = probs.sort(dim=-1, descending=True)
                drop = sorted_probs.cumsum(-1) - sorted_probs > top_p
                sorted_probs[drop] = 0
                probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
            out = torch.full_like(scores, float("-inf"))
            for row, gen in enumerate(generators):
                token = torch.multinomial(probs[row], 1, generator=gen)
                out[row, token] = 0
            return out

    return PerRowSampler()


class HFBackend(Backend):
    name = "hf"

    def __init__(self, model: str, quantization: str = "none", dtype: str = "auto", max_batch: int = 32):
        from userlm.models import load_causal_lm

        self.model_ref = model
        self.model, self.tokenizer = load_causal_lm(model, quantization=quantization, dtype=dtype)
        self.max_batch = max_batch
        self.stop_ids = sorted({i for i in (self.tokenizer.eos_token_id,
                                            self.tokenizer.convert_tokens_to_ids("<|im_end|>")) if isinstance(i, int)})

    @property
    def device(self):
        return next(self.model.parameters()).device

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        groups = defaultdict(list)  # one generate call per sampling setting
        for i, r in enumerate(requests):
            groups[r.sampling].append(i)
        for sampling, indices in groups.items():
            for start in range(0, len(indices), self.max_batch):
                chunk = indices[start: start + self.max_batch]
                for i, g in zip(chunk, self._generate([requests[i] for i in chunk], sampling)):
                    results[i] = g
        return results

    def _generate(self, requests, sampling) -> list[Generation]:
        import torch

        prompts = [render(self.tokenizer, r.messages, add_generation_prompt=True) for r in requests]
        self.tokenizer.padding_side = "left"
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        kwargs = dict(max_new_tokens=sampling.max_new_tokens, do_sample=False, eos_token_id=self.stop_ids,
                      pad_token_id=self.tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)
        if sampling.temperature > 0:
            generators = [torch.Generator().manual_seed(r.seed) for r in requests]
            kwargs["logits_processor"] = [_sampler(generators, sampling.temperature, sampling.top_p)]
        with torch.inference_mode():
            out = self.model.generate(**batch, **kwargs)
        new = out[:, batch["input_ids"].shape[1]:].cpu()
        results = []
        for row in new.tolist():
            n = next((k + 1 for k, t in enumerate(row) if t in self.stop_ids), len(row))
            text = self.tokenizer.decode(row[:n], skip_special_tokens=True)
            results.append(Generation(text=text, tokens=n, finish_reason="stop" if n < len(row) or
                                      (row and row[n - 1] in self.stop_ids) else "length"))
        return results

    def loglikelihood(self, requests):
        out = []
        for start in range(0, len(requests), self.max_batch):
            out.extend(self.score_batch(requests[start: start + self.max_batch]))
        return out

    def score_batch(self, requests) -> list[tuple[float, int]]:
        encoded = []
        for messages, continuation in requests:
            prompt = render(self.tokenizer, messages, add_generation_prompt=True)
            ids = self.tokenizer(prompt + continuation, add_special_tokens=False)["input_ids"]
            n_prompt = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            encoded.append((ids, [-100] * n_prompt + ids[n_prompt:]))
        return self.masked_loglikelihood(encoded)

    def masked_loglikelihood(self, encoded: list[tuple[list[int], list[int]]]) -> list[tuple[float, int]]:
        """Per sequence: (sum log p of tokens whose label is not -100, count)."""
        import torch

        length = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([ids + [pad] * (length - len(ids)) for ids, _ in encoded], device=self.device)
        labels = torch.tensor([lab + [-100] * (length - len(lab)) for _, lab in encoded], device=self.device)
        attention = torch.tensor([[1] * len(ids) + [0] * (length - len(ids)) for ids, _ in encoded], device=self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
        targets = labels[:, 1:]
        logp = torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        mask = targets != -100
        sums = (logp * mask).sum(-1).tolist()
        counts = mask.sum(-1).tolist()
        return list(zip(sums, counts))
