"""The output projection of a few decode rows on the CPU, in blocks of the vocabulary.

A decode step multiplies a handful of hidden states by the vocabulary matrix (SmolLM2-135M: 49,152 x 576, 113 MB
in float32). MKL runs that skinny product at ~5 GB/s on the 2-core CPU, against ~11 GB/s for the layers' own
matrices, and it was ~40% of a step's matrix time at 10 live rows. Cut into blocks of 2,048 vocabulary rows, each
product runs near the layers' speed, and each logit is the same dot product over the same hidden size: the logits
came out bit-identical at every batch size measured (benchmarks/bench_lm_head.py prints both, side by side; MKL
does not promise it, so other blocks or CPUs may differ in the last bit)."""

from __future__ import annotations

BLOCK_ROWS = 2048
ROWS = (2, 64)  # outside this, one product is as fast: one row (a prefill's last position), or a prompt's scored positions


def chunk_output_head(model, block_rows: int = BLOCK_ROWS) -> bool:
    """Make `model`'s output projection compute a few rows' logits block by block; True where it applies
    (a plain Linear without bias on the CPU; a model moved to a GPU later keeps the whole product there)."""
    import torch

    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear) or head.bias is not None or head.weight.device.type != "cpu":
        return False
    whole = head.forward

    def forward(hidden):
        rows = hidden.numel() // hidden.shape[-1]
        if not ROWS[0] <= rows <= ROWS[1] or torch.is_grad_enabled() or hidden.device.type != "cpu":
            return whole(hidden)
        weight = head.weight
        return torch.cat([torch.nn.functional.linear(hidden, weight[i: i + block_rows])
                          for i in range(0, weight.shape[0], block_rows)], dim=-1)

    head.forward = forward
    return True
