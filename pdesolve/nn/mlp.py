"""Fully connected networks that run on tensors and on jets (value + derivatives in one pass)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from .blocks import Block, BlockModel, Lambda
from .jet import Jet
from .jet_blocks import JetBlock, JetLayer

# name -> (tensor function, Jet method name)
ACTIVATIONS = {
    "tanh": (torch.tanh, "tanh"),
    "sin": (torch.sin, "sin"),
    "gelu": (nn.functional.gelu, "gelu"),
    "silu": (nn.functional.silu, "silu"),
    "sigmoid": (torch.sigmoid, "sigmoid"),
}
Activation = Literal["tanh", "sin", "gelu", "silu", "sigmoid"]  # the names of ACTIVATIONS, for option models


def activation(name: str):
    if name not in ACTIVATIONS:
        raise KeyError(f"unknown activation {name!r}; valid activations are {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class Pointwise(nn.Module):
    """An activation function as a module (so that a block can hold it)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


class MLP(nn.Module, BlockModel):
    """``depth`` hidden layers of ``width`` units, Glorot-normal weights, zero biases.

    Its blocks are the hidden layers (linear map and activation) and the output layer.
    """

    def __init__(self, in_dim: int, out_dim: int, width: int = 20, depth: int = 3, act: str = "tanh"):
        super().__init__()
        sizes = [in_dim] + [width] * depth + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for layer in self.layers:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.act_name = act
        self._act, self._jet_act = activation(act)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, in_dim] -> [N, out_dim]``."""
        for layer in self.layers[:-1]:
            x = self._act(layer(x))
        return self.layers[-1](x)

    def forward_jet(self, x: Jet) -> Jet:
        for layer in self.layers[:-1]:
            x = getattr(x.linear(layer.weight, layer.bias), self._jet_act)()
        last = self.layers[-1]
        return x.linear(last.weight, last.bias)

    def blocks(self) -> Sequence[Block]:
        act = Pointwise(self._act)
        return [Lambda(layer, act) for layer in self.layers[:-1]] + [Lambda(self.layers[-1])]

    def jet_blocks(self) -> list[JetBlock]:
        """:meth:`forward_jet` layer by layer (each hidden layer with its activation, then the output layer)."""
        return [JetLayer(layer, self._jet_act) for layer in self.layers[:-1]] + [JetLayer(self.layers[-1], None)]
