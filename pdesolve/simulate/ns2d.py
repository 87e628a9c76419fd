"""2D incompressible Navier-Stokes in vorticity form on a periodic box, pseudo-spectral.

Space: Fourier in both directions; the stream function solves ``Lap psi = -w`` exactly in Fourier space;
the advection ``u . grad w`` is computed in physical space from four inverse FFTs and de-aliased by the
2/3 rule. Time: the low-storage three-stage Runge-Kutta / Crank-Nicolson scheme of Spalart, Moser and
Rogers: advection (and the Kolmogorov forcing) explicit, viscosity and drag by the trapezoidal rule in
each stage (second order overall; the three explicit stages keep the imaginary axis inside the
stability region, which two-stage Heun does not). The step follows the CFL number of the current flow,
re-chosen at every output interval.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..equations.navier_stokes import NavierStokes2D
from ..grid import Grid
from ..problem import Problem
from .base import Numerics, Params, Simulator, family_reason, is_uniform, per_batch, substeps
from .fourier import dealias_mask, odd, wavenumbers

# Spalart-Moser-Rogers (1991) low-storage RK3 / Crank-Nicolson coefficients
GAMMA = (8 / 15, 5 / 12, 3 / 4)
ZETA = (0.0, -17 / 60, -5 / 12)
ALPHA = (4 / 15, 1 / 15, 1 / 6)  # explicit share of the linear term (= BETA: trapezoidal)


class Vorticity2D(Simulator):
    """``w_t + u . grad w = nu Lap w - drag w + f`` on a doubly periodic box."""

    name = "ns2d"
    description = "2D vorticity pseudo-spectral (2/3 de-aliasing), RK3 advection + Crank-Nicolson viscosity, CFL step"

    def check(self, problem: Problem) -> str | None:
        return family_reason(problem, (NavierStokes2D,), 2, True)  # forcing: the 'forcing' parameter

    def run(self, problem: Problem, grid: Grid, times: np.ndarray, u0: torch.Tensor, params: Params, numerics: Numerics) -> torch.Tensor:
        stepper = VorticityStepper(grid, params, u0.device, numerics.dealias)
        w = torch.fft.rfft2(u0[:, 0].to(torch.float64))
        out = torch.empty((u0.shape[0], len(times), 1) + grid.space_shape, dtype=torch.float64, device=u0.device)
        t = problem.domain.time[0]  # type: ignore[index]
        for i, time in enumerate(times):
            span = float(time - t)
            if span > 0:
                dt = numerics.dt or stepper.cfl_step(w, numerics.cfl, span)
                ((m, h),) = substeps(np.array([time]), t, min(dt, span))
                for _ in range(m):
                    w = stepper.step(w, h)
                t = float(time)
            out[:, i, 0] = torch.fft.irfft2(w, s=grid.space_shape)
        return out.to(u0.dtype)


class VorticityStepper:
    """The spectral operators for one grid and batch of coefficients, and the time step on ``w_hat``.

    The state is the half spectrum ``w_hat [batch, nx, ny//2 + 1]`` of ``rfft2``. The advection uses
    Basdevant's form for 2D divergence-free flow, ``u . grad w = d_xy (v^2 - u^2) + (d_xx - d_yy)(u v)``,
    and packs two real fields into one complex one: ``u + i v`` comes from one complex inverse FFT (its
    spectrum assembled from the half spectra by Hermitian symmetry), and ``(u + i v)^2`` carries both
    products, ``u^2 - v^2`` and ``2 u v``, into one complex forward FFT. Two complex transforms per
    evaluation instead of four real ones (or five in the advective form); complex transforms are also
    what MKL and cuFFT do fastest. On the CPU the batch is stepped in chunks of trajectories small enough
    to stay in cache (``chunk``; the trajectories are independent), on a GPU all at once.
    """

    def __init__(self, grid: Grid, params: Params, device: torch.device, dealias: bool = True, chunk: int | None = None):
        (ax, ay), self.shape = grid.space, grid.space_shape
        nx, ny = self.shape
        half = ny // 2 + 1
        kx, ky = wavenumbers(grid, device)
        self.h = (ax.spacing, ay.spacing)
        k2 = kx**2 + ky**2
        inv = torch.where(k2 > 0, 1 / torch.where(k2 > 0, k2, 1.0), 0.0)
        mask = dealias_mask(grid, device).to(torch.float64) if dealias else torch.ones_like(k2)
        kxo, kyo = odd(kx, ax.n), odd(ky, ay.n)
        # u + i v = (psi_y) + i (-psi_x): on the half plane (kx + i ky) psi_hat, on the other half the
        # conjugate of (i ky - kx) psi_hat at -k (u and v are real)
        self.P = ((kxo + 1j * kyo) * inv * mask).to(torch.complex128)  # [nx, half]
        rows = (-torch.arange(nx, device=device)) % nx
        cols = ny - torch.arange(half, ny, device=device)  # ky = col - ny < 0 mirrors ky' = ny - col
        self.inv_index = (rows[:, None] * half + cols[None, :]).reshape(-1)
        self.Pm = torch.conj((1j * kyo - kxo) * inv * mask).to(torch.complex128).reshape(-1)[self.inv_index].reshape(nx, ny - half)
        # (u + i v)^2 = (u^2 - v^2) + i (2 u v) =: a + i b, F = fft2; then F(a)(k) = (F(k) + conj F(-k)) / 2,
        # F(b)(k) = (F(k) - conj F(-k)) / 2i and -(u . grad w)^ = -kx ky F(a) + (kx^2 - ky^2) F(b) / 2
        mix0, mix1 = kx * ky * mask, (kx**2 - ky**2) * mask
        self.c1 = (-0.5 * mix0 - 0.25j * mix1).to(torch.complex128)  # multiplies F(k)
        self.c2 = (-0.5 * mix0 + 0.25j * mix1).to(torch.complex128)  # multiplies conj F(-k)
        neg = (-torch.arange(half, device=device)) % ny
        self.fwd_index = (rows[:, None] * ny + neg[None, :]).reshape(-1)
        p = {k: per_batch(v[:1] if is_uniform(v) else v, 2).to(device) for k, v in params.items()}
        self.L = NavierStokes2D().split(p).linear.symbol([kx, ky])  # -nu |k|^2 - drag, [batch or 1, nx, half]
        kf = 2 * math.pi * p["forcing_k"] / ay.length
        y = torch.as_tensor(ay.coords, device=device)
        f = -p["forcing"] * kf * torch.cos(kf * y) * torch.ones(ax.n, 1, dtype=torch.float64, device=device)
        self.f_hat = torch.fft.rfft2(f) if bool((p["forcing"] != 0).any()) else None
        self.max_forcing = float(p["forcing"].abs().max())  # the largest body-force acceleration
        self.chunk = chunk or (1 << 30 if device.type != "cpu" else max(1, (1 << 15) // (nx * ny)))
        self._coef: dict[float, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}

    def _uv(self, w_hat: torch.Tensor) -> torch.Tensor:
        """``u + i v`` in physical space, ``[batch, nx, ny]`` complex."""
        nx, ny = self.shape
        half = self.P.shape[-1]
        z = torch.empty(w_hat.shape[:-2] + (nx, ny), dtype=torch.complex128, device=w_hat.device)
        torch.mul(w_hat, self.P, out=z[..., :half])
        mirrored = w_hat.flatten(-2)[..., self.inv_index].reshape(w_hat.shape[:-1] + (ny - half,))
        torch.mul(mirrored.conj(), self.Pm, out=z[..., half:])
        return torch.fft.ifft2(z)

    def nonlinear(self, w_hat: torch.Tensor) -> torch.Tensor:
        """``-(u . grad w)`` in Fourier space, de-aliased; ``w_hat [batch, nx, ny_r]``."""
        z = self._uv(w_hat)
        f = torch.fft.fft2(z.mul_(z))
        half = self.P.shape[-1]
        out = f[..., :half] * self.c1
        mirrored = f.flatten(-2)[..., self.fwd_index].reshape(out.shape)
        return out.addcmul_(mirrored.conj(), self.c2)

    def velocity(self, w_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(u, v)`` of the de-aliased vorticity, each ``[batch, nx, ny]``."""
        z = self._uv(w_hat)
        return z.real, z.imag

    def cfl_step(self, w_hat: torch.Tensor, cfl: float, span: float = 0.0) -> float:
        """The largest step with ``dt (|u|/hx + |v|/hy) <= cfl`` (inf if at rest and unforced).

        The speed is the current one plus what the forcing can add over the next ``span`` of time
        (``|forcing| span``): a flow spun up from rest needs steps before it has any speed.
        """
        u, v = self.velocity(w_hat)
        rate = float((u.abs() / self.h[0] + v.abs() / self.h[1]).max())
        rate += self.max_forcing * span * (1 / self.h[0] + 1 / self.h[1])
        return cfl / rate if rate > 0 else math.inf

    def coefficients(self, dt: float) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per stage: ``(A, G, Z)`` with ``w <- A w + G N(w) + Z N_prev`` (forcing folded into ``G``'s term)."""
        if dt not in self._coef:
            stages = []
            for g, z, a in zip(GAMMA, ZETA, ALPHA, strict=True):
                implicit = 1 / (1 - a * dt * self.L)
                stages.append(
                    tuple(c.to(torch.complex128) for c in ((1 + a * dt * self.L) * implicit, g * dt * implicit, z * dt * implicit))
                )
            self._coef = {dt: stages}  # one step size at a time: the CFL step changes between intervals
        return self._coef[dt]

    def step(self, w_hat: torch.Tensor, dt: float) -> torch.Tensor:
        """One RK3-CN step of size ``dt`` for every trajectory, ``[batch, nx, ny_r]``."""
        stages = self.coefficients(dt)
        out = torch.empty_like(w_hat)
        for s in range(0, w_hat.shape[0], self.chunk):
            part = slice(s, s + self.chunk)
            w, prev = w_hat[part], None
            for stage, (A, G, Z) in enumerate(stages):
                A, G, Z = (c[part] if c.shape[0] > 1 else c for c in (A, G, Z))
                n = self.nonlinear(w)
                if self.f_hat is not None:
                    n += self.f_hat[part] if self.f_hat.shape[0] > 1 else self.f_hat
                new = torch.mul(w, A, out=out[part] if stage == len(stages) - 1 else None)
                new.addcmul_(n, G)
                if prev is not None:
                    new.addcmul_(prev, Z)
                w, prev = new, n
        return out
