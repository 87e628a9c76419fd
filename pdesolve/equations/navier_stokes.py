"""Incompressible Navier-Stokes in 2D, vorticity form on a periodic box.

``w_t + u . grad w = nu Lap w - drag w + f``, velocity from the stream function: ``Lap psi = -w``,
``u = psi_y``, ``v = -psi_x``. The optional Kolmogorov forcing is the body force
``forcing sin(k_f y)`` along x, i.e. ``f = -forcing k_f cos(k_f y)`` with ``k_f = 2 pi forcing_k / L_y``.
The class has a grid face only: the vorticity form is non-local (the velocity comes from a Poisson
solve), so pointwise solvers would need a velocity-pressure formulation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .base import Equation, Parameter
from .split import LinearPart, Remainder, Split


class NavierStokes2D(Equation):
    """Vorticity ``w`` of a 2D incompressible flow on a periodic box."""

    name = "navier_stokes"
    fields = ("w",)
    auxiliary_fields = ("psi",)  # the stream function: the velocity is its derivative, a Poisson solve away from w
    dims = (2,)
    linear = False
    parameters = {
        "nu": Parameter(None, 0.0, doc="a viscosity cannot be negative"),
        "drag": Parameter(0.0, 0.0, doc="a linear drag cannot be negative"),
        "forcing": Parameter(0.0, doc="Kolmogorov forcing amplitude"),
        "forcing_k": Parameter(4.0, 0.0, doc="Kolmogorov forcing wave number (periods per box)"),
    }

    def rhs(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        """Pseudo-spectral, as the ``ns2d`` simulator discretises it: the advection of the 2/3-rule de-aliased
        vorticity by its own velocity, de-aliased again (exact products of the resolved modes), the viscosity and
        drag on every mode, the forcing."""
        import torch

        ax, ay = grid.space
        kx = 2 * math.pi * torch.fft.fftfreq(ax.n, d=ax.spacing, dtype=u.dtype, device=u.device)[:, None]
        ky = 2 * math.pi * torch.fft.rfftfreq(ay.n, d=ay.spacing, dtype=u.dtype, device=u.device)[None, :]
        ix = torch.fft.fftfreq(ax.n, d=1 / ax.n, device=u.device)[:, None]
        iy = torch.fft.rfftfreq(ay.n, d=1 / ay.n, device=u.device)[None, :]
        mask = (3 * ix.abs() < ax.n) & (3 * iy.abs() < ay.n)  # the 2/3 rule (it also drops the Nyquist modes)
        k2 = kx**2 + ky**2
        w_hat = torch.fft.rfft2(u)
        wm = w_hat * mask
        psi = wm / torch.where(k2 > 0, k2, 1.0)  # Lap psi = -w, zero mean

        def real(f: Any) -> Any:
            return torch.fft.irfft2(f, s=u.shape[-2:])

        adv = real(1j * ky * psi) * real(1j * kx * wm) - real(1j * kx * psi) * real(1j * ky * wm)
        out_hat = -torch.fft.rfft2(adv) * mask - (p["nu"] * k2 + p.get("drag", 0.0)) * w_hat
        out = real(out_hat)
        if p.get("forcing", 0.0):
            kf = 2 * math.pi * p.get("forcing_k", 4.0) / ay.length
            yy = torch.as_tensor(ay.coords, dtype=u.dtype, device=u.device)
            out = out - p["forcing"] * kf * torch.cos(kf * yy)
        return out

    def auxiliary(self, u: Any, grid: Any, p: Mapping[str, float]) -> Any:
        return stream_function(u[..., 0, :, :], grid).unsqueeze(-3)

    def split(self, p: Mapping[str, Any]) -> Split:
        return Split(
            LinearPart(diffusion=p["nu"], growth=-p.get("drag", 0.0)),
            Remainder("the advection u . grad w by the velocity of the stream function, and the Kolmogorov forcing"),
        )


def stream_function(w: Any, grid: Any) -> Any:
    """``psi`` with ``Lap psi = -w`` and zero mean on the periodic grid (torch, ``[..., x, y]``)."""
    import torch

    ax, ay = grid.space
    kx = 2 * math.pi * torch.fft.fftfreq(ax.n, d=ax.spacing, dtype=w.dtype, device=w.device)
    ky = 2 * math.pi * torch.fft.rfftfreq(ay.n, d=ay.spacing, dtype=w.dtype, device=w.device)
    k2 = kx[:, None] ** 2 + ky[None, :] ** 2
    k2[0, 0] = 1.0
    what = torch.fft.rfft2(w) / k2
    what[..., 0, 0] = 0
    return torch.fft.irfft2(what, s=w.shape[-2:])
