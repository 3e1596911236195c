"""Scoring for the hf backend: the log-likelihood of labelled tokens (the perplexity evaluator's
`masked_loglikelihood`), in padded batches of one forward pass each, outside the generation schedulers."""

from __future__ import annotations


class HFScoring:
    """`masked_loglikelihood` for a backend with a transformers `model`, its `tokenizer` and `device`."""

    def masked_loglikelihood(self, encoded: list[tuple[list[int], list[int]]],
                             batch_tokens: int | None = None, per_token: bool = False) -> list:
        """Batches cut from the sequences sorted by length, up to `batch_tokens` padded tokens each: 16k on a
        GPU; on the CPU, where one sequence of a few hundred tokens already keeps the cores busy, padding only
        costs (benchmarks/bench_evaluation.py), so 512 there. Results in the given order; `per_token`: each
        sequence's list of log p of its labelled tokens, in order, instead of (sum, count)."""
        batch_tokens = batch_tokens or (16384 if self.device.type == "cuda" else 512)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        results: list = [None] * len(encoded)
        while order:
            n = 1
            while n < len(order) and (n + 1) * len(encoded[order[n]][0]) <= batch_tokens:
                n += 1
            chunk, order = order[:n], order[n:]
            for i, result in zip(chunk, self.loglikelihood_batch([encoded[i] for i in chunk], per_token)):
                results[i] = result
        return results

    def loglikelihood_batch(self, encoded: list[tuple[list[int], list[int]]], per_token: bool = False) -> list:
        """One forward pass over the sequences, padded together; per sequence (sum log p of the tokens whose
        label is not -100, count). Logits are computed only at the positions that predict a scored token (the prompt's are never needed): the vocabulary-wide logits were
        most of the time and memory of scoring."""
        import torch

        length = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([ids + [pad] * (length - len(ids)) for ids, _ in encoded], device=self.device)
        labels = torch.tensor([lab + [-100] * (length - len(lab)) for _, lab in encoded], device=self.device)
        attention = torch.tensor([[1] * len(ids) + [0] * (length - len(ids)) for ids, _ in encoded], device=self.device)
        targets = labels[:, 1:]
        mask = targets != -100
        keep = mask.any(0).nonzero().squeeze(-1)  # positions whose next token is scored in some row
        if keep.numel() == 0:
            return [[] if per_token else (0.0, 0) for _ in encoded]
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids, attention_mask=attention, logits_to_keep=keep).logits.float()
        targets, mask = targets[:, keep], mask[:, keep]
        logp = logits.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
        if per_token:
            return [row[m].tolist() for row, m in zip(logp, mask)]
        sums = (logp * mask).sum(-1).tolist()
        counts = mask.sum(-1).tolist()
        return list(zip(sums, counts))
