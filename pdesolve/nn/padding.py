"""Boundary-aware padding, convolution and upsampling for fields on a uniform grid.

Each space axis is either periodic (pad by wrapping around, so that a convolution sees the true neighbours
across the seam) or bounded (pad with zeros). Getting this right is what makes a convolutional network
exactly translation-equivariant on a periodic domain. Tensors are ``[batch, channel, *space]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pdesolve.grid import Grid

# interpolation kind -> {space dimensions: torch mode}; cubic exists in torch for 2D only
INTERPOLATION: dict[str, dict[int, str]] = {
    "linear": {1: "linear", 2: "bilinear", 3: "trilinear"},
    "cubic": {2: "bicubic"},
}
# coarse cells the kernel reaches beyond its own cell: how much to wrap before interpolating
_REACH = {"linear": 1, "cubic": 2}


def periodic_axes(grid: Grid) -> tuple[bool, ...]:
    """Per space axis of ``grid``: True where it is periodic (the boundary kind the networks follow)."""
    return tuple(a.periodic for a in grid.space)


def _check_periodic(periodic: Sequence[bool]) -> tuple[bool, ...]:
    periodic = tuple(bool(p) for p in periodic)
    if not 1 <= len(periodic) <= 3:
        raise ValueError(f"expected 1 to 3 space axes, got periodic={periodic}")
    return periodic


def _pad_tuple(widths: Sequence[int]) -> tuple[int, ...]:
    """F.pad order (last axis first, low then high side) from one symmetric width per space axis."""
    return tuple(w for width in reversed(widths) for w in (width, width))


def boundary_pad(x: torch.Tensor, periodic: Sequence[bool], width: int) -> torch.Tensor:
    """Pad every space axis of ``x`` [batch, channel, *space] by ``width`` cells on both sides:
    wrapped on periodic axes, zeros on bounded ones."""
    if width == 0:
        return x
    circ = [width if p else 0 for p in periodic]
    zero = [0 if p else width for p in periodic]
    if any(circ):
        x = F.pad(x, _pad_tuple(circ), mode="circular")
    if any(zero):
        x = F.pad(x, _pad_tuple(zero), mode="constant", value=0.0)
    return x


class BoundaryConv(nn.Module):
    """A 'same'-size convolution whose padding follows the boundary kind of each axis.

    Shape: [batch, in_channels, *space] -> [batch, out_channels, *space]; odd kernel sizes only.
    """

    def __init__(self, in_channels: int, out_channels: int, periodic: Sequence[bool], kernel_size: int = 3) -> None:
        super().__init__()
        self.periodic = _check_periodic(periodic)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"expected an odd kernel size, got {kernel_size}")
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[len(self.periodic) - 1]
        self.conv = conv(in_channels, out_channels, kernel_size, padding=0)
        self.width = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(boundary_pad(x, self.periodic, self.width))


class BoundaryUpsample(nn.Module):
    """Interpolate [batch, channel, *coarse] to [batch, channel, *size] (cell-centred, align_corners=False).

    On periodic axes the coarse field is first wrapped by the kernel's reach and the excess cropped after,
    so the interpolation across the seam uses the neighbours on the other side instead of clamping to the
    edge value; bounded axes keep torch's clamped edges. Exact for refinement by a whole factor.
    """

    def __init__(self, periodic: Sequence[bool], kind: str = "linear") -> None:
        super().__init__()
        self.periodic = _check_periodic(periodic)
        modes = INTERPOLATION.get(kind)
        if modes is None:
            raise ValueError(f"unknown interpolation {kind!r}, expected one of {sorted(INTERPOLATION)}")
        if len(self.periodic) not in modes:
            raise ValueError(f"{kind} interpolation exists for {sorted(modes)} space dimensions, got {len(self.periodic)}")
        self.mode = modes[len(self.periodic)]
        self.reach = _REACH[kind]

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        coarse = x.shape[2:]
        factors = [s // n for s, n in zip(size, coarse, strict=True)]
        if any(f * n != s for f, n, s in zip(factors, coarse, size, strict=True)):
            raise ValueError(f"upsampling needs whole refinement factors, got {tuple(coarse)} -> {tuple(size)}")
        pad = [self.reach if p else 0 for p in self.periodic]
        if any(pad):
            x = F.pad(x, _pad_tuple(pad), mode="circular")
        padded_size = [s + 2 * f * p for s, f, p in zip(size, factors, pad, strict=True)]
        y = F.interpolate(x, size=padded_size, mode=self.mode, align_corners=False)
        crop = tuple(slice(f * p, f * p + s) for f, p, s in zip(factors, pad, size, strict=True))
        return y[(..., *crop)]
