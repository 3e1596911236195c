"""Python lists onto the device without waiting: numpy builds the host tensor (`torch.tensor` over a Python list of
80,000 ints took 8.3 ms on a 2-core CPU, numpy 0.9 ms; a prefill pass uploads about that many), pinned where the
device is CUDA so that the copy is queued, not waited for."""

from __future__ import annotations

BY_NUMPY = True  # off: `torch.tensor` over the lists, as before (`-npup` measures it)


def pinned(values, dtype=None, cuda: bool = True):
    """`values` (a list, or a list of equal-length lists) as a host tensor of `dtype` (torch.int64 by default),
    in pinned memory where `cuda`."""
    import numpy as np
    import torch

    dtype = dtype or torch.int64
    if not BY_NUMPY:
        return torch.tensor(values, dtype=dtype, pin_memory=cuda)
    host = torch.from_numpy(np.asarray(values, dtype=np.float32 if dtype == torch.float32 else np.int64))
    return host.pin_memory() if cuda else host


def upload(values, device, dtype=None):
    """`values` on `device`, the copy queued (`pinned`)."""
    return pinned(values, dtype, device.type == "cuda").to(device, non_blocking=True)


def upload_lists(lists, device) -> tuple:
    """Lists of ints onto `device` in one copy: views of it, one a list."""
    import numpy as np

    flat = np.concatenate([np.asarray(v, dtype=np.int64) for v in lists]) if BY_NUMPY else [x for v in lists for x in v]
    return upload(flat, device).split([len(v) for v in lists])
