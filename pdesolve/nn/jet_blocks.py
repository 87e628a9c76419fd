"""Models run block by block on jets: the block view of a PINN for layer-local training rules.

A physics-informed loss scores derivatives of the output in the inputs, so a block-wise rule on a PINN cannot
pass plain features from block to block: it passes the features' *jet* (value, gradient and diagonal Hessian
rows in the input coordinates, :class:`~pdesolve.nn.jet.Jet`). Each block maps a :class:`JetCarry` to a
:class:`JetCarry`; running a model's jet blocks from its input carry gives its output jet.

:func:`cut` detaches a carry at a stage boundary: the rows lose their dependence on the earlier blocks'
parameters, not on the inputs (a forward-mode jet holds the input derivatives as values, so the derivative
rows still carry the dependence on the inputs across the cut).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from .jet import Jet


@dataclass(frozen=True)
class JetCarry:
    """What flows from jet block to jet block.

    ``h``: the current features' jet ``[N, C]``. ``inputs``: the input coordinates' jets (one per column, no
    parameters), for a parameter-free output transform; ``frame``: that transform's cached parameter-free part
    at the points (None where there is none).
    """

    h: Jet
    inputs: tuple[Jet, ...] = ()
    frame: Any = field(default=None, compare=False)

    def with_h(self, h: Jet) -> JetCarry:
        return JetCarry(h, self.inputs, self.frame)


def detach(jet: Jet) -> Jet:
    """The jet with its value and derivative rows cut from the graph (the same numbers)."""
    return jet.map(Tensor.detach)


def cut(carry: JetCarry) -> JetCarry:
    """A gradient-isolating stage boundary: the features' jet detached from earlier parameters."""
    return carry.with_h(detach(carry.h))


class JetBlock(nn.Module):
    """One block of a jet-block model: ``JetCarry -> JetCarry``."""

    @abc.abstractmethod
    def forward(self, carry: JetCarry) -> JetCarry: ...


class JetLayer(JetBlock):
    """A dense layer on the features' jet, then an elementwise activation (a :class:`Jet` method name, or None)."""

    def __init__(self, layer: nn.Linear, activation: str | None):
        super().__init__()
        self.layer, self.activation = layer, activation

    def forward(self, carry: JetCarry) -> JetCarry:
        h = carry.h.linear(self.layer.weight, self.layer.bias)
        return carry.with_h(getattr(h, self.activation)() if self.activation else h)


def compose_jets(blocks: list[nn.Module], carry: JetCarry) -> Jet:
    """Run jet blocks one after another from ``carry``; the output jet."""
    for block in blocks:
        carry = block(carry)
    return carry.h
