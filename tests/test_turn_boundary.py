"""A turn's end in the static engine (`static_cache.py`): rows that end together are copied out in shared gathers
(`SlotBuffers._copy_out`), copied back into their next slots in one copy a gather (`SlotPrefill._copy_kept`), and
their masks reset at once; a prefill pass over consecutive slots reads a view of the buffers. The same keys/values
and texts as one row at a time."""

from conftest import every_turn


def engine_with_random_buffers(tiny_model, length: int = 64):
    import torch

    from userlm.backends.hf import HFBackend

    backend = HFBackend(tiny_model, max_batch=8, static_cache=True, compile_decode="off")
    engine = backend.slots
    engine._ensure_length(length)
    torch.manual_seed(0)
    engine.keys.normal_()
    engine.values.normal_()
    return engine


def test_rows_copied_out_together_and_back_equal_their_own_slices(tiny_model):
    import torch

    engine = engine_with_random_buffers(tiny_model)
    slots, lengths = [5, 1, 6, 0, 3, 2], [10, 30, 11, 12, 31, 4]
    want = [(engine.keys[:, s, :, :n].clone(), engine.values[:, s, :, :n].clone()) for s, n in zip(slots, lengths)]
    kept = engine._copy_out(slots, lengths)
    for kv, (keys, values), n in zip(kept, want, lengths):
        assert kv.keys.shape[2] == n
        torch.testing.assert_close(kv.keys, keys, rtol=0, atol=0)
        torch.testing.assert_close(kv.values, values, rtol=0, atol=0)
    # grouped by length, each within a fifth of its group's longest: {30, 31}, {10, 11, 12}, {4} alone
    batches = [kv.batch for kv in kept]
    assert batches[5] is None
    assert batches[1][0] is batches[4][0] and batches[0][0] is batches[2][0] is batches[3][0]
    assert batches[0][0] is not batches[1][0] and batches[0][0].shape[3] == 12
    engine.keys.zero_()
    engine.values.zero_()
    # back into other slots, each reusing a prefix of its own; the grouped ones in one copy a group
    targets, reused = [7, 4, 0, 2, 1, 3], [10, 29, 5, 12, 31, 4]
    engine._copy_kept(list(zip(targets, reused, kept)))
    for slot, n, (keys, values) in zip(targets, reused, want):
        torch.testing.assert_close(engine.keys[:, slot, :, :n], keys[:, :, :n], rtol=0, atol=0)
        torch.testing.assert_close(engine.values[:, slot, :, :n], values[:, :, :n], rtol=0, atol=0)
    # a kept list of per-layer tensors (the dynamic engine's), one by one
    layers = [(k[None], v[None]) for k, v in zip(want[0][0], want[0][1])]
    engine._copy_kept([(6, 7, layers)])
    torch.testing.assert_close(engine.keys[:, 6, :, :7], want[0][0][:, :, :7], rtol=0, atol=0)


def test_masks_reset_together_leave_position_zero_and_other_slots():
    import types

    import torch

    from userlm.backends.slot_kv import SlotBuffers

    buffers = types.SimpleNamespace(mask=torch.ones(5, 8, dtype=torch.bool), device=torch.device("cpu"))
    buffers.mask[4, 3:] = False
    SlotBuffers._reset_masks(buffers, [1, 3])
    SlotBuffers._reset_masks(buffers, [2])
    assert buffers.mask[[1, 2, 3], 1:].sum() == 0 and buffers.mask[:, 0].all()
    assert buffers.mask[0].all() and buffers.mask[4, :3].all() and not buffers.mask[4, 3:].any()


def test_texts_equal_finishing_rows_together_or_one_by_one(tiny_model, monkeypatch):
    """Two turns of six conversations (their first turns end together at the budget) give the same texts whether
    rows are copied out together and passes read slot views, or one by one with gathered reads; and the second
    turn's passes read views (its slots are consecutive)."""
    from userlm.backends import Sampling
    from userlm.backends.hf import HFBackend

    chats = [[{"role": "user", "content": "Hi." + " Tell me more about that one." * n}] for n in (1, 1, 2, 2, 3, 3)]
    seen = {}
    for together in (False, True):
        backend = HFBackend(tiny_model, max_batch=6, static_cache=True, compile_decode="off")
        engine = backend.slots
        engine.finish_together = engine.slice_reads = together
        reads, write_and_read = [], engine.write_and_read

        def spy(layer, keys, values, reads=reads, write_and_read=write_and_read, engine=engine):
            if engine.mode[0] == "prefill":
                reads.append(engine.mode[5])
            return write_and_read(layer, keys, values)

        monkeypatch.setattr(engine, "write_and_read", spy)

        first = every_turn(backend, chats, Sampling(1.0, 0.9, 6))
        second = every_turn(backend, [c + [{"role": "assistant", "content": t}, {"role": "user", "content": "Why?"}]
                       for c, t in zip(chats, first)], Sampling(1.0, 0.9, 6))
        seen[together] = first, second, reads
    assert seen[True][:2] == seen[False][:2]
    assert all(r is None for r in seen[False][2])
    assert any(isinstance(r, slice) for r in seen[True][2])


def test_uploads_equal_torch_tensor_of_the_lists(monkeypatch):
    """`uploads` builds host tensors through numpy: the same values and dtypes as `torch.tensor` over the lists
    (floats rounded to float32 alike), and `upload_lists` splits one copy back into the lists."""
    import torch

    from userlm.backends import uploads

    ints, floats = [3, -1, 2**40, 0], [[0.1, 1 / 3, 2.5e-8], [1.0, 0.0, 0.999999999]]
    assert torch.equal(uploads.pinned(ints, cuda=False), torch.tensor(ints))
    assert torch.equal(uploads.pinned(floats, torch.float32, cuda=False), torch.tensor(floats, dtype=torch.float32))
    parts = uploads.upload_lists([[1, 2], [], [3, 4, 5]], torch.device("cpu"))
    assert [p.tolist() for p in parts] == [[1, 2], [], [3, 4, 5]] and parts[0].dtype == torch.int64
    monkeypatch.setattr(uploads, "BY_NUMPY", False)
    assert torch.equal(uploads.upload(floats, torch.device("cpu"), torch.float32), torch.tensor(floats))
