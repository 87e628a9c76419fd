"""Space domains beyond boxes: the interface a solver samples from (the seam; implementations land beside it).

A :class:`Geometry` is a closed region of R^d with named boundary parts (a CSG difference of a rectangle and
a disk has the parts of the rectangle and the part ``hole``). Solvers ask it for interior and boundary
points, outward normals and which part a boundary point lies on; figures and metrics ask ``inside`` on a
grid over its bounding box. A problem without a geometry is a box (``Domain.space``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Geometry(Protocol):
    """A region of space with named boundary parts; coordinates are columns in the order of ``Domain.space``."""

    dim: int
    parts: tuple[str, ...]  # names of the boundary parts, in declaration order

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        """The bounding box ``(lo [d], hi [d])``."""
        ...

    def inside(self, points: np.ndarray) -> np.ndarray:
        """``bool [N]``: the points ``[N, d]`` in the closed region."""
        ...

    def sample_interior(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` points ``[n, d]`` drawn uniformly inside the region."""
        ...

    def sample_boundary(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` points ``[n, d]`` on the boundary and the index into ``parts`` of the part each lies on ``[n]``."""
        ...

    def normals(self, points: np.ndarray) -> np.ndarray:
        """Outward unit normals ``[N, d]`` at boundary points."""
        ...
