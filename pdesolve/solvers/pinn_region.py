"""Collocation points of a domain with a geometry (:mod:`pdesolve.geometry`): the region's interior, each named
boundary part with its outward normals, and the region's mask on an evaluation grid.

A problem whose domain has a ``geometry`` lives on that region (a disk with a hole, an L-shape), not on its bounding
box: the PINN draws its interior points with ``geometry.sample_interior`` and the points of each boundary part from
``geometry.sample_boundary`` (its conditions ``part: NAME`` hold there, as soft losses; Neumann and Robin read the
normal derivative along ``geometry.normals``). A time axis, if any, is drawn uniformly and put first (columns in the
order of :attr:`Domain.names`).
"""

from __future__ import annotations

import numpy as np

from ..problem import BoundaryCondition, Domain
from ..sampling import unit_samples

SOFT_NOTE = ("the domain has a geometry: the exact (hard) transform of Dirichlet conditions exists on boxes only, so every "
             "boundary condition is a soft loss term on points of its part")


def _with_time(domain: Domain, space: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if domain.time is None:
        return space
    t0, t1 = domain.time
    return np.concatenate([t0 + (t1 - t0) * rng.random((len(space), 1)), space], axis=1)


def interior(domain: Domain, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points ``[n, d(+1)]`` inside the region (time first when the problem has one)."""
    assert domain.geometry is not None
    return _with_time(domain, np.asarray(domain.geometry.sample_interior(n, rng), dtype=np.float64), rng)


def initial(domain: Domain, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points on ``t = t0`` inside the region."""
    assert domain.geometry is not None and domain.time is not None
    space = np.asarray(domain.geometry.sample_interior(n, rng), dtype=np.float64)
    return np.concatenate([np.full((n, 1), domain.time[0]), space], axis=1)


def part_points(domain: Domain, conditions: list[BoundaryCondition], n: int, rng: np.random.Generator,
                attempts: int = 20) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(points [m, d(+1)], outward normals [m, d])`` on the part of each condition, from ``n`` boundary points drawn
    over the whole boundary (a part gets its share by length); a part left without points is drawn again."""
    geometry = domain.geometry
    assert geometry is not None
    wanted = {geometry.parts.index(bc.part) for bc in conditions}  # type: ignore[arg-type]
    pts, part = geometry.sample_boundary(n, rng)
    pts, part = np.asarray(pts, dtype=np.float64), np.asarray(part)
    for _ in range(attempts):
        if wanted <= set(part.tolist()):
            break
        more, more_part = geometry.sample_boundary(n, rng)
        pts, part = np.concatenate([pts, more]), np.concatenate([part, more_part])
    out = []
    for bc in conditions:
        rows = part == geometry.parts.index(bc.part)  # type: ignore[arg-type]
        if not rows.any():
            raise ValueError(f"the geometry's boundary sampling never reached part {bc.part!r} ({attempts + 1} draws of {n} points)")
        mine = pts[rows]
        out.append((_with_time(domain, mine, rng), np.asarray(geometry.normals(mine), dtype=np.float64)))
    return out


def box_interior(domain: Domain, n: int, sampler: str, rng: np.random.Generator) -> np.ndarray:
    """Candidates for residual-based refinement inside the region: box points kept where the region holds them."""
    assert domain.geometry is not None
    names = domain.space_names
    lo = np.array([domain.bounds[k][0] for k in names])
    hi = np.array([domain.bounds[k][1] for k in names])
    space = lo + unit_samples(n, len(names), sampler, rng) * (hi - lo)
    return _with_time(domain, space[domain.geometry.inside(space)], rng)

