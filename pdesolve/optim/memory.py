"""Activation memory, measured: the bytes autograd saves for the backward pass of a computation.

Local rules claim to need less activation memory than backprop; :func:`saved_tensor_bytes` measures it
honestly with :func:`torch.autograd.graph.saved_tensors_hooks`: every tensor saved for backward while the
function runs is counted once per storage (a tensor saved by two operations, or a view of one already
counted, adds nothing). The peak is the largest total held at once: a rule that frees each stage's graph
before building the next one has a peak of about one stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class SavedBytes:
    """Bytes saved for backward: ``total`` over the whole call, ``peak`` held at once (live storages)."""

    total: int = 0
    peak: int = 0
    _live: dict[int, list[int]] = field(default_factory=dict, repr=False)  # storage address -> [bytes, holders]

    def _pack(self, t: torch.Tensor) -> Any:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key in self._live:
            self._live[key][1] += 1
        elif key:
            self._live[key] = [storage.nbytes(), 1]
            self.total += storage.nbytes()
            self.peak = max(self.peak, sum(size for size, _ in self._live.values()))
        return _Held(t, key, self)

    @staticmethod
    def _unpack(held: _Held) -> torch.Tensor:
        return held.tensor

    def release(self, key: int) -> None:
        entry = self._live.get(key)
        if entry is not None:
            entry[1] -= 1
            if not entry[1]:
                del self._live[key]  # the address may now be reused by a new storage, counted afresh


class _Held:
    """A saved tensor; when the graph that saved it is freed, its storage stops counting towards the peak."""

    def __init__(self, tensor: torch.Tensor, key: int, owner: SavedBytes):
        self.tensor, self.key, self.owner = tensor, key, owner

    def __del__(self) -> None:
        self.owner.release(self.key)


def saved_tensor_bytes(fn: Callable[[], Any]) -> tuple[Any, SavedBytes]:
    """Run ``fn()`` (typically one training step) and measure the tensors it saves for backward."""
    counter = SavedBytes()
    with torch.autograd.graph.saved_tensors_hooks(counter._pack, SavedBytes._unpack):
        out = fn()
    return out, counter
