"""Random initial conditions and parameter designs, all driven by a numpy Generator the caller seeds.

- :func:`gaussian_random_field`: Gaussian random fields with a squared-exponential spectrum (a length
  scale) or a Matern-like one ``(tau^2 + |k|^2)^(-alpha)`` (the covariance operator ``(-Lap + tau^2)^-alpha``);
  periodic on periodic axes, and on bounded axes the restriction of a field periodic over twice the length.
- :func:`sine_sum`: sums of random sines ``sum_i A_i sin(k_i . x + phi_i)`` with integer wave numbers,
  the initial conditions of PDEBench's 1D families.
- :func:`sample_parameters`: a design of parameter values in boxes (independent uniform draws, Latin
  hypercube or scrambled Sobol, from :mod:`pdesolve.sampling`), optionally log-uniform.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..grid import Grid
from ..sampling import unit_samples
from .settings import GaussianRandomField, InitialSampler, SineSum


def _extended(grid: Grid) -> tuple[list[int], list[float]]:
    """Point counts and lengths of the periodic grid the field is drawn on (bounded axes doubled)."""
    sizes, lengths = [], []
    for a in grid.space:
        sizes.append(a.n if a.periodic else 2 * (a.n - 1))
        lengths.append(a.length if a.periodic else 2 * a.length)
    return sizes, lengths


def gaussian_random_field(
    grid: Grid,
    n: int,
    rng: np.random.Generator,
    *,
    length_scale: float | None = None,
    alpha: float | None = None,
    tau: float = 3.0,
    sigma: float = 1.0,
    mean: float = 0.0,
) -> np.ndarray:
    """``n`` samples ``[n, *space]`` with zero spatial mean plus ``mean`` and pointwise std ``sigma``.

    Give exactly one of ``length_scale`` (spectrum ``exp(-|k|^2 l^2 / 2)``, the squared-exponential
    covariance) or ``alpha`` (spectrum ``(tau^2 + |k|^2)^-alpha``).
    """
    if (length_scale is None) == (alpha is None):
        raise ValueError(f"give exactly one of length_scale and alpha, got length_scale={length_scale}, alpha={alpha}")
    sizes, lengths = _extended(grid)
    ks = np.meshgrid(
        *(2 * math.pi * np.fft.fftfreq(m, d=length / m) for m, length in zip(sizes, lengths, strict=True)), indexing="ij"
    )
    k2 = sum(k**2 for k in ks)
    spectrum = np.exp(-0.5 * k2 * length_scale**2) if length_scale is not None else (tau**2 + k2) ** (-alpha)  # type: ignore[operator]
    spectrum.reshape(-1)[0] = 0.0  # zero mean
    total = spectrum.sum()
    if total <= 0:
        raise ValueError(
            f"the spectrum has no resolved modes on this grid (length_scale={length_scale} too long for {sizes} points?)"
        )
    amp = np.sqrt(spectrum * spectrum.size / total)  # pointwise variance exactly 1 for white noise input
    axes = tuple(range(1, len(sizes) + 1))
    noise = rng.standard_normal((n, *sizes))
    field = np.fft.ifftn(np.fft.fftn(noise, axes=axes) * amp, axes=axes).real
    return mean + sigma * field[(slice(None),) + tuple(slice(0, a.n) for a in grid.space)]


def sine_sum(
    grid: Grid, n: int, rng: np.random.Generator, *, modes: int = 2, k_max: int = 4, amplitude: float = 1.0
) -> np.ndarray:
    """``n`` samples ``[n, *space]`` of ``sum_{i<modes} A_i sin(k_i . x + phi_i)``.

    ``k_i = 2 pi m_i / L`` with integer ``m_i`` drawn from ``{-k_max..k_max}`` per axis (not all zero; in
    1D from ``{1..k_max}``), ``A_i ~ U(0, amplitude)``, ``phi_i ~ U(0, 2 pi)``.
    """
    if modes < 1 or k_max < 1:
        raise ValueError(f"expected modes >= 1 and k_max >= 1, got modes={modes}, k_max={k_max}")
    d = grid.ndim
    if d == 1:
        m = rng.integers(1, k_max + 1, size=(n, modes, 1))
    else:
        m = rng.integers(-k_max, k_max + 1, size=(n, modes, d))
        zero = np.all(m == 0, axis=-1)
        m[zero, 0] = rng.integers(1, k_max + 1, size=int(zero.sum()))
    amp = rng.uniform(0, amplitude, size=(n, modes))
    phase = rng.uniform(0, 2 * math.pi, size=(n, modes))
    mesh = np.meshgrid(*(a.coords - a.lo for a in grid.space), indexing="ij")
    arg = sum(2 * math.pi * m[..., i, None] / a.length * mesh[i].reshape(1, 1, -1) for i, a in enumerate(grid.space))
    out = (amp[..., None] * np.sin(arg + phase[..., None])).sum(axis=1)
    return out.reshape((n,) + grid.space_shape)


def sample_parameters(
    ranges: Mapping[str, tuple[float, float, bool]], n: int, sampler: str, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """``n`` values per parameter from ``{name: (low, high, log)}``, jointly designed (names sorted).

    ``sampler``: ``random`` (independent uniform draws), ``lhs``, ``sobol`` or ``uniform`` (a tensor grid),
    as in :func:`pdesolve.sampling.unit_samples`; ``log`` samples ``log(value)`` uniformly.
    """
    names = sorted(ranges)
    unit = unit_samples(n, len(names), sampler, rng)
    out = {}
    for j, name in enumerate(names):
        lo, hi, log = ranges[name]
        if log and not (lo > 0 and hi > 0):
            raise ValueError(f"parameter {name!r}: a log range needs positive bounds, got [{lo}, {hi}]")
        u = unit[:, j]
        out[name] = np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))) if log else lo + u * (hi - lo)
    return out


def draw_fields(spec: InitialSampler, grid: Grid, n: int, rng: np.random.Generator) -> np.ndarray | None:
    """``n`` random initial fields ``[n, *space]`` as a ``simulate: initial:`` sampler asks (a Gaussian random field
    or a sine sum); None when it asks for the problem's own initial condition."""
    if isinstance(spec, GaussianRandomField):
        return gaussian_random_field(grid, n, rng, length_scale=spec.length_scale, alpha=spec.alpha, tau=spec.tau,
                                     sigma=spec.sigma, mean=spec.mean)
    if isinstance(spec, SineSum):
        return sine_sum(grid, n, rng, modes=spec.modes, k_max=spec.k_max, amplitude=spec.amplitude)
    return None
