"""The residual convolution block the U-Net and SineNet waves are built from.

Pre-activation layout: (GroupNorm -> GELU -> conv) twice, plus a shortcut (identity, or a 1x1 conv when
the channel count changes). GroupNorm statistics are taken over the whole field, so the block commutes
with circular shifts when its convolutions pad circularly. Shapes: [batch, in, *space] -> [batch, out, *space].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pdesolve.nn.padding import BoundaryConv


def check_groups(channels: int, groups: int) -> None:
    """GroupNorm needs ``groups`` to divide ``channels``; say so before torch does, with the numbers."""
    if groups < 1 or channels % groups:
        raise ValueError(f"norm_groups={groups} must divide the channel count, got {channels} channels")


class ConvBlock(nn.Module):
    """Two normalized, activated boundary-aware convolutions with a residual shortcut."""

    def __init__(self, in_channels: int, out_channels: int, periodic: Sequence[bool], norm_groups: int = 1) -> None:
        super().__init__()
        check_groups(in_channels, norm_groups)
        check_groups(out_channels, norm_groups)
        self.norm1 = nn.GroupNorm(norm_groups, in_channels)
        self.conv1 = BoundaryConv(in_channels, out_channels, periodic)
        self.norm2 = nn.GroupNorm(norm_groups, out_channels)
        self.conv2 = BoundaryConv(out_channels, out_channels, periodic)
        self.act = nn.GELU()
        ndim = len(self.conv1.periodic)
        conv1x1 = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[ndim - 1]
        self.shortcut = nn.Identity() if in_channels == out_channels else conv1x1(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))  # [batch, out, *space]
        h = self.conv2(self.act(self.norm2(h)))
        return self.shortcut(x) + h
