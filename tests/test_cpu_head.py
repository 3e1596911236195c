"""Fast tier: the CPU decode head in vocabulary blocks (userlm/backends/cpu_head.py) gives the whole product's
logits (to float rounding here, with odd 7-row blocks; bit-identical on SmolLM2 at 2,048-row blocks, which
benchmarks/bench_lm_head.py checks), only for a few rows and never under autograd."""

import torch

from userlm.backends.cpu_head import chunk_output_head


def test_blocks_give_the_same_logits_and_text(tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    head = model.get_output_embeddings()
    whole = head.forward
    assert chunk_output_head(model, block_rows=7)  # blocks that do not divide the vocabulary
    assert head.forward is not whole
    with torch.inference_mode():
        for rows in (1, 2, 5, 64, 65):
            hidden = torch.randn(rows, 1, head.in_features)
            assert torch.allclose(head(hidden), whole(hidden), rtol=1e-5, atol=1e-5)
            assert head(hidden).shape == whole(hidden).shape
    with torch.enable_grad():  # training takes the whole product
        hidden = torch.randn(3, 1, head.in_features, requires_grad=True)
        assert head(hidden).grad_fn is not None


def test_not_applied_off_the_cpu_or_with_a_bias():
    linear = torch.nn.Linear(4, 10, bias=True)

    class Model(torch.nn.Module):
        def get_output_embeddings(self):
            return linear

    assert chunk_output_head(Model()) is False
