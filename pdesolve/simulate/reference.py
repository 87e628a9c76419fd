"""The ``simulator`` reference: one trajectory of a problem on an evaluation grid, optionally computed finer."""

from __future__ import annotations

import numpy as np

from ..grid import Grid, GridAxis
from ..problem import Problem
from .api import simulate
from .base import Numerics


def simulator_reference(
    problem: Problem,
    grid: Grid,
    *,
    refine: int = 1,
    simulator: str | None = None,
    dt: float | None = None,
    cfl: float = 0.1,
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> np.ndarray:
    """``[time, channel, *space]`` float64 on ``grid`` (which needs a time axis).

    ``refine``: simulate on a grid ``refine`` times finer per space axis and sample it back (for the
    second-order simulators; the spectral ones are accurate on the grid itself). The step defaults to a
    fifth of the dataset default (``cfl=0.1``): a reference is worth the extra steps.
    """
    if grid.time is None:
        raise ValueError("the simulator reference needs a grid with a time axis")
    if int(refine) != refine or refine < 1:
        raise ValueError(f"refine must be a positive integer, got {refine}")
    fine = Grid(tuple(_finer(a, int(refine)) for a in grid.space), grid.time)
    sol = simulate(problem, fine, numerics=Numerics(dt=dt, cfl=cfl, rtol=rtol, atol=atol), simulator=simulator)
    index = (0, slice(None), slice(None)) + (slice(None, None, int(refine)),) * grid.ndim
    return sol.numpy()[index]


def _finer(a: GridAxis, r: int) -> GridAxis:
    return GridAxis(a.name, a.lo, a.hi, a.n * r if a.periodic else (a.n - 1) * r + 1, a.periodic)
