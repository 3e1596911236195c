"""The dynamic scheduler's KV cache layer (`hf.py`): transformers' DynamicLayer with spare positions, so that a
decode step writes one position in place instead of concatenating a copy of the whole cache."""

from __future__ import annotations

import functools


@functools.cache
def _growing_layer_class():
    """A cache layer with spare room: a decode step writes one position instead of copying the whole cache
    (transformers' DynamicLayer concatenates, which on the CPU cost more than the forward pass itself)."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def update(self, key_states, value_states, *args, **kwargs):
            n = self.length + key_states.shape[-2]
            if n > self.k_room.shape[-2]:
                def grow(t):
                    bigger = t.new_zeros(*t.shape[:2], 2 * n, t.shape[-1])
                    bigger[:, :, : self.length] = t[:, :, : self.length]
                    return bigger
                self.k_room, self.v_room = grow(self.k_room), grow(self.v_room)
            self.k_room[:, :, self.length: n] = key_states
            self.v_room[:, :, self.length: n] = value_states
            self.length = n
            self.keys, self.values = self.k_room[:, :, :n], self.v_room[:, :, :n]
            return self.keys, self.values

    return GrowingLayer


def growing_layer(k_room, v_room, length: int):
    layer = _growing_layer_class()()
    layer.lazy_initialization(k_room, v_room)
    layer.k_room, layer.v_room, layer.length = k_room, v_room, length
    layer.keys, layer.values = k_room[:, :, :length], v_room[:, :, :length]
    return layer
