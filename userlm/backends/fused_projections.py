"""One matmul where the decode step has several over the same input: an attention's q/k/v projections and an MLP's
gate/up projections (the static engine's `fuse_projections`; on by default in its compiled CUDA decode).

At decode the projections read their weights once a step for a few rows: a small GEMM costs its launch and tail
more than its bytes (0.5B: q 896x896, k and v 896x128 a layer), so 5 GEMMs a layer become 2. The weights are
concatenated once and each projection's weight becomes a view into the concatenation (no second copy; prefill,
scoring and the eager path read the same numbers through the views). Hand-written: inductor's own concat-linear
pass needs `freezing`, which treats every weight as a constant of the compiled graph (a second copy of the model).
Only plain `nn.Linear` projections of the same input size are fused (a peft or bitsandbytes layer stays as it is)."""

from __future__ import annotations

QKV = ("q_proj", "k_proj", "v_proj")
GATE_UP = ("gate_proj", "up_proj")
MLP_PARTS = (*GATE_UP, "down_proj", "act_fn")


def _plain(linears) -> bool:
    import torch

    first = linears[0]
    return all(type(m) is torch.nn.Linear and m.in_features == first.in_features
               and m.weight.dtype == first.weight.dtype and m.weight.device == first.weight.device
               and (m.bias is None) == (first.bias is None) for m in linears)


def _concatenate(linears):
    """The linears' weights (and biases) as one tensor each; every linear's own becomes a view of it."""
    import torch

    weight = torch.cat([m.weight.detach() for m in linears])
    bias = None if linears[0].bias is None else torch.cat([m.bias.detach() for m in linears])
    start = 0
    for m in linears:
        n = m.out_features
        m.weight = torch.nn.Parameter(weight[start:start + n], requires_grad=False)
        if bias is not None:
            m.bias = torch.nn.Parameter(bias[start:start + n], requires_grad=False)
        start += n
    return weight, bias, [m.out_features for m in linears]


class SharedProjection:
    """The q/k/v projections' forwards during a decode step: whichever is called first runs the one matmul; the
    others take their part of it while their input is the same tensor (the attention calls all three on it)."""

    def __init__(self, linears):
        self.weight, self.bias, self.sizes = _concatenate(linears)
        self.input, self.parts, self.taken = None, None, set()

    def forward(self, index: int):
        def project(x):
            import torch.nn.functional as F

            if self.input is not x or index in self.taken:
                self.input, self.taken = x, set()
                self.parts = F.linear(x, self.weight, self.bias).split(self.sizes, dim=-1)
            self.taken.add(index)
            out = self.parts[index]
            if len(self.taken) == len(self.sizes):  # all parts handed out: hold no activations past the layer
                self.input, self.parts, self.taken = None, None, set()
            return out
        return project


def gate_up_forward(mlp, weight, sizes):
    """The MLP's forward with gate and up as one matmul (`down(act(gate(x)) * up(x))`, the Llama/Qwen2 MLP)."""
    def forward(x):
        import torch.nn.functional as F

        gate, up = F.linear(x, weight).split(sizes, dim=-1)
        return mlp.down_proj(mlp.act_fn(gate) * up)
    return forward


def fused_parts(model) -> list:
    """(owner, attribute, build, when) for every fusable attention and MLP of `model` (weights concatenated now,
    once): build(compile_fn) gives the replacement, the MLP's forward compiled by `compile_fn` (the engine's
    torch.compile), q/k/v's not. A layer that `fused_residual` knows also gets its whole forward, the post-attention
    half one compiled block with the residual adds folded in; `when` says which of the two a pass swaps in: True
    with the engine's `fuse_residual`, False without it, None always."""
    from userlm.backends.fused_residual import fusable, layer_forward, post_attention

    parts, layers = [], {}
    for module in model.modules():
        names = [n for n in QKV if hasattr(module, n)]
        if len(names) == 3 and _plain([getattr(module, n) for n in QKV]):
            shared = SharedProjection([getattr(module, n) for n in QKV])
            parts += [(getattr(module, n), "forward", lambda c, f=shared.forward(i): f, None) for i, n in enumerate(QKV)]
        if fusable(module) and _fusable_mlp(module.mlp) and _plain([module.mlp.down_proj]) \
                and module.mlp.down_proj.bias is None:
            layers[id(module.mlp)] = module
        if _fusable_mlp(module):
            weight, _, sizes = _concatenate([getattr(module, n) for n in GATE_UP])
            layer = layers.get(id(module))  # modules() gives a layer before its MLP
            parts.append((module, "forward", lambda c, f=gate_up_forward(module, weight, sizes): c(f),
                          False if layer is not None else None))
            if layer is not None:
                block = post_attention(layer, weight, sizes)
                parts.append((layer, "forward", lambda c, m=layer, b=block, s=sizes: layer_forward(m, c(b), s), True))
    return parts


def _fusable_mlp(module) -> bool:
    """An *MLP with these four parts computes down(act(gate(x)) * up(x)) (Llama, Qwen2, Mistral, Gemma)."""
    return type(module).__name__.endswith("MLP") and all(hasattr(module, n) for n in MLP_PARTS) \
        and _plain([getattr(module, n) for n in GATE_UP]) and module.gate_proj.bias is None
