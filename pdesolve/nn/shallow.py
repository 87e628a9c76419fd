"""Residual MLPs and their parallel-shallow truncation (Bermeitinger, Hrycej, Handschuh, "Make Deep Networks Shallow
Again", 2023, arXiv:2309.08414).

A stack of residual layers ``x_{k+1} = x_k + f_k(x_k)`` expands, like a Taylor series, into
``x_K = x_0 + sum_k f_k(x_0) + (terms where a branch reads another branch's output)``. Keeping the first two terms
gives a *parallel* network: every branch reads the same input, ``x_out = x_0 + sum_k f_k(x_0)``, one broad shallow
layer instead of a deep stack (the paper finds the two train to similar losses at equal parameter counts).

Both share :class:`~pdesolve.nn.mlp.MLP`'s layers, so at the same ``width`` and ``depth`` all three networks have
exactly the same parameters (and, from the same seed, the same initial values)::

    h_0 = act(W_0 x + b_0)                                  (lift: in -> width)
    residual: h_k = h_{k-1} + act(W_k h_{k-1} + b_k)        k = 1 .. depth - 1
    parallel: h   = h_0 + sum_k act(W_k h_0 + b_k)          (the branches as one wide matmul in the jet pass)
    out = W_depth h + b_depth                               (head: width -> out)

A branch is one dense layer with its activation (the paper's residual layer: a conventional layer beside the
identity). With ``depth = 1`` there are no branches and both equal the MLP.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .blocks import Block, Carry, Lambda
from .jet import Jet
from .jet_blocks import JetBlock, JetCarry, JetLayer
from .mlp import MLP, Pointwise


class ResidualMLP(MLP):
    """The MLP's layers with an identity beside every hidden-to-hidden layer: ``h <- h + act(W h + b)``."""

    def forward(self, x: Tensor) -> Tensor:
        first, *hidden, last = self.layers
        h = self._act(first(x))
        for layer in hidden:
            h = h + self._act(layer(h))
        return last(h)

    def forward_jet(self, x: Jet) -> Jet:
        first, *hidden, last = self.layers
        h = getattr(x.linear(first.weight, first.bias), self._jet_act)()
        for layer in hidden:
            h = h + getattr(h.linear(layer.weight, layer.bias), self._jet_act)()
        return h.linear(last.weight, last.bias)

    def blocks(self) -> Sequence[Block]:
        first, *hidden, last = self.layers
        act = Pointwise(self._act)
        return [Lambda(first, act), *(_Residual(layer, act) for layer in hidden), Lambda(last)]

    def jet_blocks(self) -> list[JetBlock]:
        first, *hidden, last = self.layers
        return [JetLayer(first, self._jet_act), *(_JetResidual(layer, self._jet_act) for layer in hidden), JetLayer(last, None)]


class ParallelMLP(MLP):
    """The first-order truncation of :class:`ResidualMLP`: every branch reads the lifted input ``h_0``."""

    def forward(self, x: Tensor) -> Tensor:
        first, *hidden, last = self.layers
        h0 = self._act(first(x))
        h = h0
        for layer in hidden:  # each layer called as a module (so any layer parametrization's own forward runs)
            h = h + self._act(layer(h0))
        return last(h)

    def forward_jet(self, x: Jet) -> Jet:
        first, *hidden, last = self.layers
        h0 = getattr(x.linear(first.weight, first.bias), self._jet_act)()
        if hidden:  # all branches in one matmul: [width] -> [branches * width], then summed per branch
            weight = torch.cat([layer.weight for layer in hidden])
            bias = torch.cat([layer.bias for layer in hidden])
            wide = getattr(h0.linear(weight, bias), self._jet_act)()
            h0 = h0 + wide.map(lambda r: r.unflatten(-1, (len(hidden), -1)).sum(-2))
        return h0.linear(last.weight, last.bias)

    def blocks(self) -> Sequence[Block]:
        first, *hidden, last = self.layers
        act = Pointwise(self._act)
        return [_Lift(first, act), *(_Branch(layer, act) for layer in hidden), _Head(last)]

    def jet_blocks(self) -> list[JetBlock]:
        first, *hidden, last = self.layers
        return [_JetLift(first, self._jet_act), *(_JetBranch(layer, self._jet_act) for layer in hidden), _JetHead(last)]


NETWORKS: dict[str, type[MLP]] = {"mlp": MLP, "residual": ResidualMLP, "parallel": ParallelMLP}
"""``solvers.pinn.network`` -> the class; all take ``(in_dim, out_dim, width, depth, act)`` and have the same parameters."""


# ---------------------------------------------------------------------------------------------- blocks on tensors
class _Residual(Block):
    def __init__(self, layer: nn.Linear, act: nn.Module):
        super().__init__()
        self.layer, self.act = layer, act

    def forward(self, carry: Carry) -> Carry:
        return carry.with_h(carry.h + self.act(self.layer(carry.h)))


class _Lift(Block):
    """``h_0 = act(W_0 x + b_0)``: the running sum starts at ``h_0``, and ``h_0`` is kept for the branches."""

    def __init__(self, layer: nn.Linear, act: nn.Module):
        super().__init__()
        self.layer, self.act = layer, act

    def forward(self, carry: Carry) -> Carry:
        h0 = self.act(self.layer(carry.h))
        return carry.push(h0, h0)


class _Branch(Block):
    """Adds one branch ``act(W_k h_0 + b_k)`` to the running sum (``h_0`` popped and kept again)."""

    def __init__(self, layer: nn.Linear, act: nn.Module):
        super().__init__()
        self.layer, self.act = layer, act

    def forward(self, carry: Carry) -> Carry:
        (h0,), rest = carry.pop()
        return rest.push(carry.h + self.act(self.layer(h0)), h0)


class _Head(Block):
    def __init__(self, layer: nn.Linear):
        super().__init__()
        self.layer = layer

    def forward(self, carry: Carry) -> Carry:
        _, rest = carry.pop()
        return rest.with_h(self.layer(carry.h))


# ---------------------------------------------------------------------------------------------- blocks on jets
def _cat(a: Jet, b: Jet) -> Jet:
    return a.from_rows([torch.cat([x, y], dim=-1) for x, y in zip(a.rows(), b.rows(), strict=True)])


class _JetResidual(JetBlock):
    def __init__(self, layer: nn.Linear, activation: str):
        super().__init__()
        self.layer, self.activation = layer, activation

    def forward(self, carry: JetCarry) -> JetCarry:
        h = carry.h
        return carry.with_h(h + getattr(h.linear(self.layer.weight, self.layer.bias), self.activation)())


class _JetLift(JetBlock):
    """``h_0`` as ``[sum | h_0]`` (features ``2 width``): a jet carry has no stack, so ``h_0`` rides along the sum."""

    def __init__(self, layer: nn.Linear, activation: str):
        super().__init__()
        self.layer, self.activation = layer, activation

    def forward(self, carry: JetCarry) -> JetCarry:
        h0 = getattr(carry.h.linear(self.layer.weight, self.layer.bias), self.activation)()
        return carry.with_h(_cat(h0, h0))


class _JetBranch(JetBlock):
    def __init__(self, layer: nn.Linear, activation: str):
        super().__init__()
        self.layer, self.activation = layer, activation

    def forward(self, carry: JetCarry) -> JetCarry:
        w = self.layer.in_features
        s, h0 = carry.h[..., :w], carry.h[..., w:]
        return carry.with_h(_cat(s + getattr(h0.linear(self.layer.weight, self.layer.bias), self.activation)(), h0))


class _JetHead(JetBlock):
    def __init__(self, layer: nn.Linear):
        super().__init__()
        self.layer = layer

    def forward(self, carry: JetCarry) -> JetCarry:
        return carry.with_h(carry.h[..., : self.layer.in_features].linear(self.layer.weight, self.layer.bias))
