"""2D advection-diffusion of a scalar by a fixed periodic velocity: pseudo-spectral, ETDRK4.

The equation's split gives the diagonal linear part, the uniform drift and the diffusion
``L = -kappa |k|^2 - i (cx kx + cy ky)`` (advanced exactly); the cellular flow's advection ``-U . grad c`` is
the explicit part, evaluated in physical space from the equation's velocity and de-aliased by the 2/3 rule.
Without the cellular flow (no rest in the split) the scheme is exact.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..equations.advection_diffusion import AdvectionDiffusion2D, velocity
from ..grid import Grid
from ..problem import Problem
from .base import Numerics, Params, SimulationError, Simulator, family_reason, per_batch, substeps
from .etdrk4 import ETDRK4
from .fourier import dealias_mask, odd, wavenumbers


class AdvectionDiffusionSpectral(Simulator):
    """``c_t + U . grad c = kappa Lap c`` on a doubly periodic box."""

    name = "advection_diffusion2d"
    description = "2D Fourier pseudo-spectral, ETDRK4 (drift and diffusion exact, cellular advection explicit)"

    def check(self, problem: Problem) -> str | None:
        return family_reason(problem, (AdvectionDiffusion2D,), 2, True)

    def run(
        self, problem: Problem, grid: Grid, times: np.ndarray, u0: torch.Tensor, params: Params, numerics: Numerics
    ) -> torch.Tensor:
        dev = u0.device
        (ax, ay), shape = grid.space, grid.space_shape
        for a in grid.space:
            m = params["k"] * a.length / (2 * math.pi)
            if not torch.allclose(m, m.round(), atol=1e-9):
                raise SimulationError(
                    f"the cellular wave number must fit the box: expected integers k L_{a.name} / 2 pi, got {m.tolist()}"
                )
        kx, ky = wavenumbers(grid, dev)
        k_odd = [odd(kx, ax.n), odd(ky, ay.n)]
        ikx, iky = (1j * k for k in k_odd)
        p = {k: per_batch(v.to(dev), 2) for k, v in params.items()}
        split = problem.equation.split(p)
        L = split.linear.symbol([kx, ky], k_odd)  # type: ignore[union-attr]
        xx = torch.as_tensor(ax.coords, device=dev)[:, None]
        yy = torch.as_tensor(ay.coords, device=dev)[None, :]
        cell = {**p, "cx": 0.0, "cy": 0.0}
        ux, uy = velocity(xx, yy, cell, torch)  # [batch or 1, nx, ny]
        mask = dealias_mask(grid, dev) if numerics.dealias else torch.ones(kx.shape[0], ky.shape[1], dtype=torch.bool, device=dev)
        grads = torch.stack(torch.broadcast_tensors(ikx + 0 * ky, iky + 0 * kx))
        linear = split.rest is None  # type: ignore[union-attr]

        def N(c: torch.Tensor) -> torch.Tensor:
            cx, cy = torch.fft.irfft2(c.unsqueeze(1) * grads, s=shape).unbind(1)
            return torch.fft.rfft2(-(ux * cx + uy * cy)) * mask

        dt = numerics.dt
        if linear:
            dt = None
        elif dt is None:
            rate = float((ux.abs() / ax.spacing + uy.abs() / ay.spacing).max())
            dt = numerics.cfl / rate if rate > 0 else None
        c = torch.fft.rfft2(u0[:, 0].to(torch.float64))
        out = torch.empty((u0.shape[0], len(times), 1) + shape, dtype=torch.float64, device=dev)
        cache: dict[float, ETDRK4] = {}
        for i, (m, h) in enumerate(substeps(times, problem.domain.time[0], dt)):  # type: ignore[index]
            if m:
                if h not in cache:
                    cache[h] = ETDRK4.build(L, h)
                for _ in range(m):
                    c = cache[h].E * c if linear else cache[h].step(c, N)
            out[:, i, 0] = torch.fft.irfft2(c, s=shape)
        return out.to(u0.dtype)
