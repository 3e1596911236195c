"""A pre-norm decoder layer's residual adds folded into its neighbours (the static engine's `fuse_residual`):
h = x + attn(norm1(x)), out = h + mlp(norm2(h)). Eagerly each add is a kernel of its own (56 a 7B decode step,
~0.1 ms with their launch gaps on an H200); here the first add and norm2 are one compiled kernel, and the second add
is cuBLAS's beta = 1 accumulation into h: the down projection runs after the compiled block, in place into h
(`addmm_`; `addmm` copies a 2-D input into a new output first, a copy a layer, and inside the compiled block inductor
keeps that copy: 28 a 7B step, `memcpy32_post` in the profile). The first fusion measured 1.03x all-in at 7B/128.

Only layers whose forward is known to be that form (`LAYERS`, returning one tensor as transformers 5 does) with a
plain MLP (`fused_projections._plain`, no bias) get it; any other layer keeps its forward. Hand-written: inductor
cannot fuse an add into cuBLAS's product, and compiling the whole layer would trace the engine's attention."""

from __future__ import annotations

import inspect

from userlm.backends import silu_mul

# the down projection accumulated in place into h (False: `addmm` into a new tensor, its input copied first, as the
# compiled block did before 2026-12-01 session 19; benchmarks/bench_simulation.py's `-inplace` measures it)
IN_PLACE_DOWN = True
LAYERS = ("LlamaDecoderLayer", "Qwen2DecoderLayer", "Qwen3DecoderLayer", "MistralDecoderLayer")


def fusable(layer) -> bool:
    if type(layer).__name__ not in LAYERS:
        return False
    returns = inspect.signature(type(layer).forward).return_annotation
    one_tensor = returns == "torch.Tensor" or getattr(returns, "__name__", None) == "Tensor"
    return one_tensor and all(hasattr(layer, n) for n in ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp"))


def post_attention(layer, gate_up, sizes):
    """(h, act): h = residual + attended and act = act(gate(norm2(h))) * up(norm2(h)), gate and up one product
    (`gate_up`, the concatenated weights); `layer_forward` adds down(act) into h. With `activate` False, (h, the
    gate/up product): `layer_forward` activates it by `silu_mul.py`'s kernel (prefill passes)."""
    norm, mlp = layer.post_attention_layernorm, layer.mlp

    def block(residual, attended, activate: bool = True):
        import torch.nn.functional as F

        hidden = residual + attended
        gate_up_out = F.linear(type(norm).forward(norm, hidden), gate_up)
        if not activate:
            return hidden, gate_up_out
        gate, up = gate_up_out.split(sizes, dim=-1)
        return hidden, mlp.act_fn(gate) * up
    return block


def layer_forward(layer, block, sizes):
    """The layer's forward with `block` (compiled by the engine) after its attention, then the down projection
    accumulated in place into the block's h (its own new tensor); a call it does not expect (positional arguments
    past the hidden states) goes to the layer's own forward."""
    own = type(layer).forward.__get__(layer)
    down = layer.mlp.down_proj

    def forward(hidden_states, *args, **kwargs):
        if args:
            return own(hidden_states, *args, **kwargs)
        attended, _ = layer.self_attn(hidden_states=layer.input_layernorm(hidden_states), **kwargs)
        if silu_mul.applies(layer.mlp.act_fn, attended, sizes):  # a prefill pass: the activation by the kernel
            hidden, gate_up = block(hidden_states, attended, False)
            act = silu_mul.silu_mul(gate_up)
        else:
            hidden, act = block(hidden_states, attended)
        flat = hidden.view(-1, hidden.shape[-1])
        if not IN_PLACE_DOWN:
            import torch

            return torch.addmm(flat, act.reshape(-1, act.shape[-1]), down.weight.t()).view(hidden.shape)
        flat.addmm_(act.reshape(-1, act.shape[-1]), down.weight.t())
        return hidden
    return forward
