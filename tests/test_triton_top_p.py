"""The fused Triton top-p kernel (`userlm/backends/triton_top_p.py`): per row the same nucleus floor (the same
integer search over float32 bit patterns) and the same token as `sample_wide` (float64 sums, as on CUDA), on
flat and peaked rows at several top_p, batch sizes and vocabulary sizes; a row's token depends on its own
inputs only; the static engine's text for a seed is the torch path's. CUDA tests skip on the CPU; the kernel's
logic also runs here under Triton's interpreter where Triton is installed (CPU only)."""


import pytest
from conftest import under_triton_interpreter

try:
    import torch

    CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    CUDA = False


def _rows(rows, vocab, seed, device):
    """Flat (random-weight-like), peaked and bf16-tied rows, and their top_ps/uniforms draws."""
    import torch

    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([0.3, 2.0, 8.0])[torch.arange(rows) % 3].unsqueeze(-1)
    logits = torch.randn(rows, vocab, generator=g) * scale
    logits[1::4] = logits[1::4].bfloat16().float()  # ties, as bf16 logits give on the GPU
    probs = torch.softmax(logits, -1)
    return probs.to(device), torch.rand(rows, generator=g).to(device)


def _check(device, vocab, rows, top_p, seed=0, kernel="split", **shape):
    """`shape`: the split kernels' chunk, block, warps (small ones split small rows under the interpreter) and
    compacting round."""
    import torch

    from userlm.backends.sampling import nucleus_floor, sample_wide
    from userlm.backends.triton_top_p import row_floor_and_tokens, split_floor_and_tokens

    def top_p_floor_and_tokens(probs, top_ps, uniforms):
        if kernel == "row":
            return row_floor_and_tokens(probs, top_ps, uniforms, **shape)
        return split_floor_and_tokens(probs, top_ps, uniforms, **shape)

    probs, uniforms = _rows(rows, vocab, seed, device)
    top_ps = torch.full((rows,), top_p, device=device)
    floor, tokens = top_p_floor_and_tokens(probs, top_ps, uniforms)
    want_floor = nucleus_floor(probs, top_ps, 15, double=True)
    want = sample_wide(probs, top_ps, uniforms, double=True)
    assert int((floor == want_floor).sum()) == rows, (vocab, rows, top_p)
    # the tokens: equal but where a float64 sum falls within ~1e-16 of a cdf step (never seen)
    assert int((tokens == want).sum()) >= rows - rows // 1000, (vocab, rows, top_p)
    # a row alone gets its token in a batch
    one = top_p_floor_and_tokens(probs[-1:], top_ps[-1:], uniforms[-1:])[1]
    assert int(one) == int(tokens[-1])


def test_available_says_why_not_or_none():
    import importlib.util

    from userlm.backends.triton_top_p import available

    assert (available() is None) == (importlib.util.find_spec("triton") is not None)


def _check_rejection(device):
    """The rejection kernel's tokens equal `sample_rejection`'s (float64 sums) on flat, peaked and tied rows, over
    one or several blocks, idle rows (top_p 0) included, and some rows needed more than one round."""
    import torch

    from userlm.backends.sampling import sample_rejection, sample_wide
    from userlm.backends.triton_top_p import rejection_tokens

    rejected = 0
    for vocab, rows, top_p, block in ((1000, 6, 0.9, 1024), (1001, 6, 0.5, 128), (777, 3, 1.0, 64),
                                      (3000, 5, 0.95, 256), (600, 4, 0.0, 128), (5000, 8, 0.3, 512)):
        probs, uniforms = _rows(rows, vocab, vocab, device)
        top_ps = torch.full((rows,), top_p, device=device)
        want = sample_rejection(probs, top_ps, uniforms, double=True)
        cpu = device == "cpu"  # CUDA: the default shape
        got = rejection_tokens(probs, top_ps, uniforms, block=block if cpu else 0, warps=4 if cpu else 0)
        assert torch.equal(got, want), (vocab, top_p, got.tolist(), want.tolist())
        if top_p > 0:  # a first draw outside the nucleus was rejected
            first = sample_wide(probs, top_ps, uniforms, floor=lambda *a, **k: torch.zeros_like(top_ps, dtype=torch.int32),
                                double=True)
            rejected += int((first != want).sum())
    assert rejected > 0
    broken = torch.full((2, 300), float("nan"), device=device)  # NaN probabilities: both stop at the last round
    assert rejection_tokens(broken, torch.full((2,), 0.9, device=device), torch.rand(2, device=device)).shape == (2,)
    assert sample_rejection(broken, torch.full((2,), 0.9, device=device), torch.rand(2, device=device)).shape == (2,)


def _check_rejection_logits(device, dtypes=("float32",)):
    """The rejection kernel from logits (the softmax computed pass by pass inside it) draws `sample_rejection`'s
    tokens on `rejection_inputs`' probabilities (torch's softmax): flat, peaked and tied rows at several
    temperatures, greedy rows (temperature 0: the most likely token) and masked tokens (-inf logits). The
    probabilities may differ from torch's in the last bits, which changes a token only where a sum falls that
    close to a cdf step or to top_p (odds of about 1e-5 a row): one row in a hundred may differ, so none of a case's
    8 (none did: 1,440 of 1,440 bf16 rows agreed in bench_top_p.py --softmax on the H200, 2026-12-01)."""
    import torch

    from userlm.backends.sampling import rejection_inputs, sample_rejection
    from userlm.backends.triton_top_p import rejection_tokens

    cpu = device == "cpu"
    for dtype in dtypes:
        for vocab, rows, top_p, block in ((1000, 8, 0.9, 256), (3001, 8, 0.5, 512), (600, 6, 1.0, 128),
                                          (5000, 8, 0.95, 1024)):
            g = torch.Generator().manual_seed(vocab)
            logits = torch.randn(rows, vocab, generator=g) * torch.tensor([0.3, 2.0, 8.0])[torch.arange(rows) % 3, None]
            logits[:, :vocab // 10] = float("-inf")  # masked tokens
            logits = logits.to(getattr(torch, dtype)).to(device)
            temps = torch.tensor([0.0, 0.7, 1.0, 1.3] * rows, device=device)[:rows]
            top_ps, uniforms = torch.full((rows,), top_p, device=device), torch.rand(rows, generator=g).to(device)
            _, probs, tps = rejection_inputs(logits, temps, top_ps)
            want = sample_rejection(probs, tps, uniforms, double=True)
            got = rejection_tokens(logits, top_ps, uniforms, block=block if cpu else 0, warps=4 if cpu else 0,
                                   temperatures=temps)
            assert int((got == want).sum()) >= rows - rows // 100, (dtype, vocab, top_p, got.tolist(), want.tolist())
            assert torch.equal(got[0::4], logits[0::4].float().argmax(-1))  # greedy rows


def interpreter_checks():
    """Both kernels under Triton's interpreter (the row kernel also over several blocks); the split one with rows of 1 to 16 chunks (the last one partial),
    an idle row (top_p 0: the most likely token) and a row whose mass is below top_p (top_p 1.0), compacting the
    survivors at round 2 (the default), 3 or 5, or not at all."""
    for vocab, rows, top_p in ((1000, 6, 0.9), (1001, 6, 0.5), (777, 3, 1.0), (600, 4, 0.95)):
        _check("cpu", vocab, rows, top_p, kernel="row")
    # the row kernel over several blocks: each lane keeps its own survivors (the last block partial)
    for (vocab, rows, top_p), block in zip(((1000, 6, 0.9), (1001, 6, 0.5), (777, 3, 1.0), (3000, 4, 0.95)),
                                           (64, 128, 32, 256), strict=True):
        _check("cpu", vocab, rows, top_p, seed=vocab + 1, kernel="row", block=block, warps=4)
    for (vocab, rows, top_p), chunk in zip(((1000, 6, 0.9), (1001, 6, 0.5), (777, 3, 1.0), (600, 4, 0.95),
                                            (3000, 5, 0.0), (2048, 3, 0.7)), (256, 128, 512, 64, 1024, 2048), strict=True):
        _check("cpu", vocab, rows, top_p, seed=vocab, chunk=chunk, block=min(chunk, 128), warps=4)
    _check_rejection("cpu")
    _check_rejection_logits("cpu")
    for (vocab, rows, top_p), chunk, compact in (((1000, 6, 0.9), 256, 0), ((1001, 6, 0.5), 128, 3),
                                                 ((2048, 3, 0.7), 512, 5)):
        _check("cpu", vocab, rows, top_p, seed=vocab, chunk=chunk, block=min(chunk, 128), warps=4, compact=compact)


@pytest.mark.skipif(CUDA, reason="the interpreter test runs on CPU-only machines (CUDA machines run the kernel)")
def test_kernel_logic_under_the_interpreter():
    """`interpreter_checks` under Triton's interpreter, in a fresh process (`conftest.under_triton_interpreter`)."""
    under_triton_interpreter("test_triton_top_p")


@pytest.mark.skipif(not CUDA, reason="the Triton kernel needs a CUDA GPU")
def test_rejection_kernel_equals_sample_rejection():
    _check_rejection("cuda")
    _check_rejection_logits("cuda", ("float32", "bfloat16"))


@pytest.mark.skipif(not CUDA, reason="the Triton kernel needs a CUDA GPU")
@pytest.mark.parametrize("vocab", [151936, 50257])
@pytest.mark.parametrize("rows", [1, 32, 128])
@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.95, 1.0])
@pytest.mark.parametrize("kernel", ["split", "split-full", "split-c3", "row"])
def test_kernel_equals_sample_wide(vocab, rows, top_p, kernel):
    """The split kernels compacting at round 2 (the default) or 3, or not at all ("split-full"), and the row one."""
    shape = {"compact": 0} if kernel == "split-full" else {"compact": 3} if kernel == "split-c3" else {}
    _check("cuda", vocab, rows, top_p, seed=rows + int(100 * top_p), kernel=kernel[:5].rstrip("-"), **shape)


@pytest.mark.skipif(not CUDA, reason="the Triton kernel needs a CUDA GPU")
@pytest.mark.parametrize("kernel", ["split", "split-full", "row"])
def test_kernel_in_a_cuda_graph_and_idle_rows(kernel):
    """Captured in a CUDA graph and replayed on new inputs; an idle slot (top_p 0) gets its most likely token."""
    import torch

    from userlm.backends.sampling import sample_wide
    from userlm.backends.triton_top_p import sample_wide_triton

    probs, uniforms = _rows(32, 151936, 5, "cuda")
    top_ps = torch.full((32,), 0.95, device="cuda")
    top_ps[3] = 0.0
    sample_wide_triton(probs, top_ps, uniforms, kernel)  # compiled outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = sample_wide_triton(probs, top_ps, uniforms, kernel)
    new_probs, new_uniforms = _rows(32, 151936, 6, "cuda")
    probs.copy_(new_probs)
    uniforms.copy_(new_uniforms)
    graph.replay()
    assert torch.equal(out, sample_wide(probs, top_ps, uniforms))
    assert int(out[3]) == int(probs[3].argmax())


@pytest.mark.skipif(not CUDA, reason="the Triton kernel needs a CUDA GPU")
@pytest.mark.parametrize("chunk", [1, 4])
def test_engine_text_same_as_torch_path(tiny_model, chunk):
    """The static engine on CUDA (float32, graphs, hot temperature: wide rows), with `wide_kernel` "triton" against
    "torch": the same text for every seed, after replay and inside the graph (`wide_in_graph`), step by step and
    in chunks."""
    from userlm.backends import GenerationRequest, Sampling
    from userlm.backends.hf import HFBackend

    chats = [[{"role": "user", "content": f"Plan a trip number {i}."}] for i in range(5)]
    hot = Sampling(temperature=3.0, top_p=0.9, max_new_tokens=12)
    texts = []
    for kernel in ("torch", "triton", "triton-row", "triton-split-full"):
        backend = HFBackend(tiny_model, max_batch=4, static_cache=True, compile_decode="off", dtype="float32")
        engine = backend.slots
        engine.wide_sort, engine.wide_kernel, engine.wide_in_graph, engine.live_attention = False, kernel, True, chunk > 1
        engine.decode_chunk, engine.ahead_size = chunk, 64
        texts.append([o.text for o in backend.generate([GenerationRequest(c, hot, seed=3 + i) for i, c in enumerate(chats)])])
        assert engine.wide_steps > 0 and engine.wide_kernel == kernel  # no fallback to torch
        assert backend.generate([GenerationRequest(chats[1], hot, seed=4)])[0].text == texts[-1][1]
    assert texts[0] == texts[1] == texts[2] == texts[3]


@pytest.mark.skipif(not CUDA, reason="the Triton kernel needs a CUDA GPU")
@pytest.mark.parametrize("chunk", [1, 4])
def test_engine_rejection_text_same_as_torch(tiny_model, chunk, monkeypatch):
    """The static engine on CUDA (float32, graphs) with the default `wide_kernel` "triton-rejection", for wide rows
    only and for every row (`rejection_every_row`), step by step and in chunks, queued ahead or not
    (`overlap_chunks`), every row's probabilities computed by the kernel from the logits (`softmax_in_kernel`, the
    default) or read from torch's softmax: the same text for every seed as torch's `sample_rejection` (eager, no
    graphs: its rounds sync with the host), at a hot and a mild temperature; 5 requests over 4 slots (a row joins
    mid-run)."""
    from userlm.backends import GenerationRequest, Sampling, step_sampling, triton_top_p
    from userlm.backends.hf import HFBackend

    monkeypatch.setattr(step_sampling, "SOFTMAX_ROWS", 1)  # the kernel's own softmax at these 4 slots too
    from_logits, rejection = [], triton_top_p.rejection_tokens
    monkeypatch.setattr(triton_top_p, "rejection_tokens", lambda *a, **k: from_logits.append(
        k.get("temperatures") is not None) or rejection(*a, **k))
    chats = [[{"role": "user", "content": f"Plan a trip number {i}."}] for i in range(5)]
    for temperature in (3.0, 0.7):
        hot = Sampling(temperature=temperature, top_p=0.9, max_new_tokens=12)
        for every_row in (False, True):
            texts = []
            for kernel, graphs, overlap, softmax in (("rejection", False, False, True), ("triton-rejection", True, False, True),
                                                     ("triton-rejection", True, True, True),
                                                     ("triton-rejection", True, False, False)):
                backend = HFBackend(tiny_model, max_batch=4, static_cache=True, compile_decode="off", dtype="float32",
                                    cuda_graphs=graphs)
                engine = backend.slots
                assert engine.wide_kernel == "triton-rejection" and engine.rejection_every_row  # the CUDA defaults
                engine.wide_sort, engine.wide_kernel, engine.wide_in_graph = False, kernel, True
                engine.rejection_every_row, engine.live_attention = every_row, graphs and chunk > 1
                engine.decode_chunk, engine.ahead_size, engine.overlap_chunks = chunk if graphs else 1, 64, overlap
                engine.softmax_in_kernel = softmax  # the default: the kernel's own softmax from the logits (every row)
                from_logits.clear()
                texts.append([o.text for o in backend.generate(
                    [GenerationRequest(c, hot, seed=3 + i) for i, c in enumerate(chats)])])
                assert engine.wide_kernel == kernel and not engine.graph_error  # no fallback
                if kernel == "triton-rejection":  # the kernel drew from the logits exactly where asked
                    assert any(from_logits) == (softmax and every_row)
                # chunks queued ahead where asked (every row by rejection, chunks of 4)
                assert (backend.counts["chunks queued ahead"] > 0) == (overlap and every_row and chunk > 1)
            assert texts[0] == texts[1] == texts[2] == texts[3]
