"""Models as sequences of blocks, for training rules that work block by block (local learning, forward-only).

A :class:`BlockModel` returns its blocks in order; each block maps a :class:`Carry` to a :class:`Carry`, and
running them one after another from ``Carry(x)`` gives exactly ``model(x)`` in ``carry.h`` (tested for every
model). ``h`` is the block's output, the tensor a rule attaches its auxiliary heads or local losses to;
``kept`` holds what later blocks still need and the forward pass carries past them: a U-Net's skips, a
wave's input for its residual, a stepper's last input frame. Blocks never read ``kept`` by position from
the outside: only the block that pushed a tensor pops it.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass(frozen=True)
class Carry:
    """What flows from block to block: the current features ``h`` and the tensors kept for later blocks."""

    h: Tensor
    kept: tuple[Tensor, ...] = ()

    def push(self, h: Tensor, *kept: Tensor) -> Carry:
        """The carry with output ``h`` and ``kept`` appended to the stack."""
        return Carry(h, self.kept + kept)

    def pop(self, count: int = 1) -> tuple[tuple[Tensor, ...], Carry]:
        """The last ``count`` kept tensors (oldest first) and the carry without them."""
        if count > len(self.kept):
            raise ValueError(f"a block pops {count} kept tensors, the carry holds {len(self.kept)}")
        return self.kept[len(self.kept) - count :], Carry(self.h, self.kept[: len(self.kept) - count])

    def with_h(self, h: Tensor) -> Carry:
        return Carry(h, self.kept)


class Block(nn.Module):
    """One block of a :class:`BlockModel`: ``Carry -> Carry``."""

    @abc.abstractmethod
    def forward(self, carry: Carry) -> Carry: ...


class Lambda(Block):
    """A block that applies a module (or a chain of them) to ``h`` and keeps ``kept`` as it is."""

    def __init__(self, *modules: nn.Module):
        super().__init__()
        self.body = nn.Sequential(*modules) if len(modules) != 1 else modules[0]

    def forward(self, carry: Carry) -> Carry:
        return carry.with_h(self.body(carry.h))


class BlockModel(abc.ABC):
    """A model that can be run block by block; mixed into an ``nn.Module`` whose forward the blocks compose to."""

    @abc.abstractmethod
    def blocks(self) -> Sequence[Block]:
        """The blocks in order; :func:`compose` of them on ``x`` equals ``forward(x)`` exactly."""


def compose(blocks: Sequence[Block], x: Tensor) -> Tensor:
    """Run ``blocks`` one after another from ``x`` and return the last output (nothing may be left kept)."""
    carry = Carry(x)
    for block in blocks:
        carry = block(carry)
    if carry.kept:
        raise ValueError(f"the blocks left {len(carry.kept)} kept tensors unused: they do not compose to a forward pass")
    return carry.h


class DenoisingModel(abc.ABC):
    """A model whose forward pass iterates ``T`` denoisers of an embedding of the target (NoProp).

    Mixed into an ``nn.Module``; a task whose model is one provides ``denoising_blocks``
    (:mod:`pdesolve.task`). The ``noprop`` rule reads only these methods; :class:`pdesolve.nn.noprop.NoPropNet` is one.
    """

    @abc.abstractmethod
    def schedule(self) -> Tensor:
        """``alpha_bar_0 .. alpha_bar_T`` ``[T + 1]``, increasing: the signal fraction of ``z_t``."""

    @abc.abstractmethod
    def denoisers(self) -> Sequence[nn.Module]:
        """The ``T`` blocks; block ``t`` (index ``t - 1``) maps ``(x, z_{t-1})`` to a prediction of ``embed(y)``."""

    @abc.abstractmethod
    def embed(self, targets: Tensor) -> Tensor:
        """The target embedding ``u_y`` ``[n, D]`` of targets in physical units (no parameters)."""

    @abc.abstractmethod
    def head(self) -> nn.Module:
        """The read-out: ``z_T [n, D]`` -> the prediction, in the targets' units and shape."""
