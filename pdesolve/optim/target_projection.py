"""Target projection: hidden stages regress fixed random projections of the targets; only the last sees the true error.

Paper: M. Lomnitz, Z. Daniels, D. Zhang, M. Piacentino, "Learning with Local Gradients at the Edge", AAAI 2023
(tpSGD, target-projection SGD), which generalizes direct random target projection (DRTP; Frenkel, Lefebvre and
Bol, 2021) to arbitrary layer losses: layer ``i`` is trained by local SGD to bring its output ``y_i`` to the local
target ``P_i y*``, the label projected by a fixed random matrix ``P_i``; only forward passes, no error is carried
from one layer to another, and the output layer is trained on the task's loss.

Regression form used here. With the model's stages ``S_1 .. S_n`` (outputs ``h_1 .. h_n``, each stage's input
detached) and the targets standardized by one mean and standard deviation fitted on the first batch (``y``):

    L_i = d(h_i, gain * P_i(y))                  i = 1 .. n-1   (d: mean squared or absolute difference)
    L_n = criterion(tail(h_n), targets)          (the model's output, the task's own loss: the true error)

``P_i`` is fixed and random (normal entries scaled by ``1/sqrt(fan-in)``, drawn from ``seed`` and stored as
buffers in the rule's state). Its form follows the feature shape:

- ``[N, C]`` features: a ``C x D`` matrix applied to the flattened targets (``D`` values per sample);
- ``[B, C, *space]`` features and targets ``[B, Ct, *space']`` of the same rank: a fixed random convolution
  ``Ct -> C`` of width ``kernel`` (``kernel=1`` is the 1x1 projection), then resampling to the features' grid.
  With few target channels (one field) a 1x1 projection gives every feature channel a multiple of the same
  field; the default width 3 gives each channel its own random local filter of it, a local analogue of the
  paper's dense ``P_i`` that keeps the locality a convolution can reproduce;
- other ranks: the flattened targets through a ``C x D`` matrix, broadcast over the features' grid.

Prediction: the model's own output (``task.model(x)``); as in the paper, the last stage is trained on the targets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor, nn

from ..nn.blocks import Carry
from ..task import Batch, SupervisedTask
from .forward_only import StagewiseRule, TargetScale
from .local import Probe, StagewiseOptions, cut


class TargetProjectionOptions(StagewiseOptions):
    kernel: int = Field(3, gt=0, description="width of the fixed random convolution for [B, C, *space] features (odd)")
    gain: float = Field(1.0, gt=0, description="scale of the projected targets")
    local_loss: Literal["mse", "l1"] = Field("mse", description="the hidden stages' distance to their projected targets")

    @field_validator("kernel")
    @classmethod
    def _odd(cls, k: int) -> int:
        if k % 2 == 0:
            raise ValueError(f"kernel must be odd (it keeps the grid), got {k}")
        return k


class Projection(nn.Module):
    """A fixed random map from targets ``[N, *target]`` to features ``[N, C]`` or ``[N, C, *space]`` (no parameters)."""

    def __init__(self, targets: torch.Size, features: torch.Size, kernel: int, generator: torch.Generator):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"the projection kernel must be odd to keep the grid, got {kernel}")
        self.conv = len(targets) == len(features) and len(features) in (3, 4, 5)
        self.features = tuple(features[1:])
        channels = features[1]
        if self.conv:
            dims = len(features) - 2
            shape = (channels, targets[1], *([kernel] * dims))
            fan_in = targets[1] * kernel**dims
            self.padding = kernel // 2
            self.resample = tuple(targets[2:]) != tuple(features[2:])
        else:
            fan_in = math.prod(targets[1:])
            shape = (channels, fan_in)
        self.register_buffer("weight", torch.randn(shape, generator=generator) / math.sqrt(fan_in))

    def forward(self, y: Tensor) -> Tensor:
        if self.conv:
            dims = len(self.features) - 1
            out = (F.conv1d, F.conv2d, F.conv3d)[dims - 1](y, self.weight, padding=self.padding)
            if self.resample:
                mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[dims]
                out = F.interpolate(out, size=self.features[1:], mode=mode, align_corners=False)
            return out
        out = y.flatten(1) @ self.weight.T  # [N, C]
        return out.reshape(out.shape + (1,) * (len(self.features) - 1)).expand(-1, *self.features)


class TargetProjection(StagewiseRule):
    """tpSGD: each hidden stage on a fixed random projection of the targets, the last stage on the task's loss."""

    name = "target_projection"
    options: TargetProjectionOptions

    def make_aux(self, probe: Probe, batch: Batch) -> nn.ModuleDict:
        g = torch.Generator().manual_seed(self.options.seed)
        projections = [Projection(batch.targets.shape, s, self.options.kernel, g) for s in probe.stage_shapes[:-1]]
        return nn.ModuleDict({"scale": TargetScale(), "projections": nn.ModuleList(projections)})

    def projected_targets(self, targets: Tensor) -> list[Tensor]:
        """The hidden stages' local targets ``gain * P_i(y)`` for this batch."""
        assert self.aux is not None
        y = self.aux["scale"](targets)
        return [self.options.gain * p(y) for p in self.aux["projections"]]  # type: ignore[union-attr]

    def local_losses(self, step: int, task: SupervisedTask, batch: Batch) -> Iterator[tuple[int, dict[str, Tensor]]]:
        assert self.tail is not None
        distance = F.mse_loss if self.options.local_loss == "mse" else F.l1_loss
        with torch.no_grad():
            targets = self.projected_targets(batch.targets)
        last = len(self.stage_list) - 1
        carry = Carry(batch.inputs)
        for i, stage in enumerate(self.stage_list):
            carry = stage(cut(carry))
            if i == last:
                yield i, {"loss": task.criterion(self.tail(carry.h, carry), batch.targets)}
            else:
                yield i, {"local": distance(carry.h, targets[i])}
