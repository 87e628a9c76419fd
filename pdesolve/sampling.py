"""Collocation points in a space-time box: interior, initial slice and boundary faces.

Samplers: ``uniform`` (a tensor-product grid), ``random``, ``lhs`` (Latin hypercube), ``sobol``
(scrambled) and ``hammersley`` (``i / n`` in the first column, the Halton sequence in the others: DeepXDE's
default for collocation points); ``lhs``, ``sobol`` and ``hammersley`` use ``scipy.stats.qmc``. All are
seeded by the caller's generator (``hammersley`` through a random shift modulo 1, so that refinement
rounds and restarts do not repeat the same points; ``uniform`` is deterministic).
Columns are in the order (t, x, y, z) of :attr:`Domain.names`.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
from scipy.stats import qmc

from .problem import Domain

Sampler = Literal["uniform", "random", "lhs", "sobol", "hammersley"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)


def unit_samples(n: int, dim: int, sampler: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` points in the unit cube ``[0, 1]^dim`` as ``[n, dim]`` float64."""
    if sampler not in SAMPLERS:
        raise KeyError(f"unknown sampler {sampler!r}; valid samplers are {list(SAMPLERS)}")
    if n <= 0:
        return np.zeros((0, dim))
    if dim == 0:
        return np.zeros((n, 0))
    if sampler == "random":
        return rng.random((n, dim))
    # the qmc engines get an integer drawn from ``rng``: handing them the generator itself lets scipy
    # spawn from its seed sequence, which a restored generator state does not reproduce (breaks resume)
    if sampler == "lhs":
        return qmc.LatinHypercube(d=dim, seed=int(rng.integers(2**63))).random(n)
    if sampler == "sobol":
        m = max(1, math.ceil(math.log2(n)))
        return qmc.Sobol(d=dim, scramble=True, seed=int(rng.integers(2**63))).random_base2(m)[:n]
    if sampler == "hammersley":
        first = (np.arange(n) + 0.5)[:, None] / n
        rest = qmc.Halton(d=dim - 1, scramble=False).random(n + 1)[1:] if dim > 1 else np.zeros((n, 0))
        return (np.concatenate([first, rest], axis=1) + rng.random(dim)) % 1.0
    per_axis = max(2, math.ceil(n ** (1 / dim)))
    axes = [(np.arange(per_axis) + 0.5) / per_axis] * dim
    pts = np.stack([m.ravel() for m in np.meshgrid(*axes, indexing="ij")], axis=1)
    return pts[np.linspace(0, len(pts) - 1, n).round().astype(int)]


def _scale(u: np.ndarray, names: tuple[str, ...], domain: Domain) -> np.ndarray:
    b = domain.bounds
    lo = np.array([b[n][0] for n in names])
    hi = np.array([b[n][1] for n in names])
    return lo + u * (hi - lo)


def interior(domain: Domain, n: int, sampler: str, rng: np.random.Generator) -> np.ndarray:
    return _scale(unit_samples(n, len(domain.names), sampler, rng), domain.names, domain)


def initial(domain: Domain, n: int, sampler: str, rng: np.random.Generator) -> np.ndarray:
    """Points on ``t = t0`` (columns (t, x, ...))."""
    space = _scale(unit_samples(n, len(domain.space), sampler, rng), domain.space_names, domain)
    return np.concatenate([np.full((n, 1), domain.time[0]), space], axis=1)  # type: ignore[index]


def face(domain: Domain, axis: str, side: str, n: int, sampler: str, rng: np.random.Generator) -> np.ndarray:
    """Points on the face ``axis = lo`` or ``axis = hi`` of the space-time box."""
    pts = interior(domain, n, sampler, rng)
    lo, hi = domain.bounds[axis]
    pts[:, domain.names.index(axis)] = lo if side == "lo" else hi
    return pts
