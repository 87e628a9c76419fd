"""Wave numbers and the 2/3 de-aliasing mask of the real FFT on periodic grids (torch)."""

from __future__ import annotations

import math

import torch

from ..grid import Grid


def wavenumbers(grid: Grid, device: torch.device, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    """Angular wave numbers of ``rfftn`` over the space axes, each shaped to broadcast ``[*space_rfft]``.

    The last axis is the real-FFT (half) axis. Nyquist entries are kept (the caller zeroes them for odd
    derivatives where it matters).
    """
    out, nd = [], len(grid.space)
    for d, a in enumerate(grid.space):
        freq = torch.fft.rfftfreq if d == nd - 1 else torch.fft.fftfreq
        k = 2 * math.pi * freq(a.n, d=a.spacing, dtype=dtype, device=device)
        shape = [1] * nd
        shape[d] = k.numel()
        out.append(k.reshape(shape))
    return out


def odd(k: torch.Tensor, n: int) -> torch.Tensor:
    """``k`` with the Nyquist entry zeroed (a real field's Nyquist mode has no odd derivative)."""
    if n % 2:
        return k
    k = k.clone()
    k.view(-1)[n // 2] = 0  # index n/2 is the Nyquist entry of both fftfreq and rfftfreq
    return k


def dealias_mask(grid: Grid, device: torch.device) -> torch.Tensor:
    """True on the modes kept by the 2/3 rule: ``|index| < n/3`` on every axis, ``[*space_rfft]``."""
    mask = torch.ones((), dtype=torch.bool, device=device)
    nd = len(grid.space)
    for d, a in enumerate(grid.space):
        idx = (
            torch.fft.rfftfreq(a.n, d=1 / a.n, device=device) if d == nd - 1 else torch.fft.fftfreq(a.n, d=1 / a.n, device=device)
        )
        shape = [1] * nd
        shape[d] = idx.numel()
        mask = mask & (3 * idx.abs() < a.n).reshape(shape)
    return mask
