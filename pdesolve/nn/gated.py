"""Gated coordinate networks for PINNs: the modified MLP and PirateNet, on tensors and on jets.

- Modified MLP (Wang, Teng, Perdikaris, "Understanding and mitigating gradient flow pathologies in
  physics-informed neural networks", SIAM J. Sci. Comput. 2021): two encoders ``U = act(X W_u)``,
  ``V = act(X W_v)`` of the input, and every hidden layer's output mixes them by a gate,
  ``H <- (1 - Z) U + Z V`` with ``Z = act(H W + b)``: multiplicative interactions and the input at every depth.
- PirateNet (Wang, Li, Chen, Perdikaris, "PirateNets: Physics-informed deep learning with residual adaptive
  networks", JMLR 2024): residual blocks of three dense layers, each gated by ``U`` and ``V`` as above, with
  a trainable skip weight ``alpha`` initialised to 0, ``x <- alpha F(x) + (1 - alpha) x``: at initialisation
  the network is a linear map of its input embedding, and depth is switched on as training needs it (the
  paper's remedy for deep PINNs that train worse than shallow ones).

Both take the same ``(in_dim, out_dim, width, depth, act)`` as :class:`pdesolve.nn.mlp.MLP`; a jet pass is the
same arithmetic on :class:`pdesolve.nn.jet.Jet` (gates are products of jets).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .jet import Jet
from .jet_blocks import JetBlock, JetCarry
from .mlp import activation


def _dense(a: int, b: int) -> nn.Linear:
    layer = nn.Linear(a, b)
    nn.init.xavier_normal_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _linear(x: Any, layer: nn.Linear) -> Any:
    return x.linear(layer.weight, layer.bias) if isinstance(x, Jet) else layer(x)


class _GatedNet(nn.Module):
    """Shared parts: the activation on tensors and jets, the two encoders, one block for rules that go by blocks."""

    def __init__(self, in_dim: int, width: int, act: str):
        super().__init__()
        self.act_name = act
        self._act, self._jet_act = activation(act)
        self.encode_u, self.encode_v = _dense(in_dim, width), _dense(in_dim, width)

    def _sigma(self, x: Any) -> Any:
        return getattr(x, self._jet_act)() if isinstance(x, Jet) else self._act(x)

    def _dense_act(self, x: Any, layer: nn.Linear) -> Any:
        return self._sigma(_linear(x, layer))

    @staticmethod
    def _mix(z: Any, u: Any, v: Any) -> Any:
        """``(1 - z) u + z v`` = ``u + z (v - u)`` (one product of jets instead of two)."""
        return u + z * (v - u)

    def _run(self, x: Any) -> Any:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x)

    def forward_jet(self, x: Jet) -> Jet:
        return self._run(x)

    def jet_blocks(self) -> list[JetBlock]:
        """The whole network as one block (its gates read the input at every depth)."""
        return [_Whole(self)]


class ModifiedMLP(_GatedNet):
    """``depth`` gated hidden layers of ``width`` units (Wang, Teng, Perdikaris 2021)."""

    def __init__(self, in_dim: int, out_dim: int, width: int = 20, depth: int = 3, act: str = "tanh"):
        super().__init__(in_dim, width, act)
        self.layers = nn.ModuleList([_dense(in_dim, width)] + [_dense(width, width) for _ in range(depth - 1)])
        self.out = _dense(width, out_dim)

    def _run(self, x: Any) -> Any:
        u, v = self._dense_act(x, self.encode_u), self._dense_act(x, self.encode_v)
        h = x
        for layer in self.layers:
            h = self._mix(self._dense_act(h, layer), u, v)
        return _linear(h, self.out)


class PirateNet(_GatedNet):
    """A lift of the input to ``width``, then ``depth`` residual gated blocks with skip weights from 0, then the output layer."""

    def __init__(self, in_dim: int, out_dim: int, width: int = 20, depth: int = 3, act: str = "tanh"):
        super().__init__(in_dim, width, act)
        self.lift = _dense(in_dim, width)
        self.blocks_ = nn.ModuleList(nn.ModuleList(_dense(width, width) for _ in range(3)) for _ in range(depth))
        self.alpha = nn.Parameter(torch.zeros(depth))
        self.out = _dense(width, out_dim)

    def _run(self, x: Any) -> Any:
        u, v = self._dense_act(x, self.encode_u), self._dense_act(x, self.encode_v)
        h = _linear(x, self.lift)
        for k, (f_layer, g_layer, h_layer) in enumerate(self.blocks_):
            z = self._mix(self._dense_act(h, f_layer), u, v)
            z = self._mix(self._dense_act(z, g_layer), u, v)
            z = self._dense_act(z, h_layer)
            a = self.alpha[k]
            h = h + (z - h) * a  # alpha F(x) + (1 - alpha) x
        return _linear(h, self.out)


class _Whole(JetBlock):
    def __init__(self, net: _GatedNet):
        super().__init__()
        self.net = net

    def forward(self, carry: JetCarry) -> JetCarry:
        return carry.with_h(self.net.forward_jet(carry.h))
