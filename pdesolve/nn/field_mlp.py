"""A fully connected surrogate of whole fields: (parameters, t) -> the field at every grid point (Melissa's setting).

``[n, inputs] -> [n, channels, points]`` in physical units: the MLP predicts the field normalized per
channel, and the buffers ``mean`` and ``std`` (fitted to the training data, saved with the weights) map it
back, the way :class:`~pdesolve.solvers.sinenet.SineNetStepper` carries its normalization. Its blocks are
the MLP's, then the mapping to physical units.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .blocks import Block, BlockModel, Carry
from .mlp import MLP


class FieldMLP(nn.Module, BlockModel):
    """``inputs`` numbers in (scaled parameters and time), ``channels x points`` field values out."""

    def __init__(self, inputs: int, channels: int, points: int, width: int = 256, depth: int = 3, act: str = "silu"):
        super().__init__()
        self.channels, self.points = channels, points
        self.mlp = MLP(inputs, channels * points, width=width, depth=depth, act=act)
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    def set_scale(self, mean: Tensor, std: Tensor) -> None:
        """The per-channel mean and standard deviation of the fields it learns."""
        self.mean.copy_(mean)
        self.std.copy_(std)

    def physical(self, normalized: Tensor) -> Tensor:
        """``[n, channels * points]`` normalized -> ``[n, channels, points]`` physical."""
        return normalized.reshape(-1, self.channels, self.points) * self.std[:, None] + self.mean[:, None]

    def forward(self, x: Tensor) -> Tensor:
        return self.physical(self.mlp(x))

    def blocks(self) -> Sequence[Block]:
        return [*self.mlp.blocks(), _Physical(self)]


class _Physical(Block):
    """The MLP's normalized output in physical units (no parameters: the buffers of the model)."""

    def __init__(self, model: FieldMLP):
        super().__init__()
        self.physical = model.physical

    def forward(self, carry: Carry) -> Carry:
        return carry.with_h(self.physical(carry.h))
