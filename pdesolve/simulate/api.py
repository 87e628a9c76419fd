"""``simulate(problem, grid, times, u0)``: pick the simulator for a problem and run a batch of trajectories."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..grid import Grid
from ..problem import Problem
from ..solution import Solution
from .base import Numerics, Params, SimulationError, Simulator, time_axis
from .diffusion_sorption import DiffusionSorptionFV
from .fv1d import BurgersFV
from .heat import HeatCN
from .mol import MethodOfLines
from .ns2d import Vorticity2D
from .spectral1d import Spectral1D
from .spectral2d import AdvectionDiffusionSpectral

# first match wins: the specialised schemes first, the generic method of lines (any grid form) last
SIMULATORS: dict[str, Simulator] = {
    s.name: s
    for s in (Spectral1D(), BurgersFV(), DiffusionSorptionFV(), HeatCN(), Vorticity2D(), AdvectionDiffusionSpectral(), MethodOfLines())
}


def select_simulator(problem: Problem, name: str | None = None) -> Simulator:
    """The simulator called ``name``, or the first one that can run ``problem``; errors say why not."""
    if name is not None:
        if name not in SIMULATORS:
            raise SimulationError(f"unknown simulator {name!r}; valid simulators are {sorted(SIMULATORS)}")
        reason = SIMULATORS[name].check(problem)
        if reason:
            raise SimulationError(f"simulator {name!r} cannot run problem {problem.name!r}: {reason}")
        return SIMULATORS[name]
    reasons = []
    for sim in SIMULATORS.values():
        reason = sim.check(problem)
        if reason is None:
            return sim
        reasons.append(f"{sim.name}: {reason}")
    raise SimulationError(f"no simulator can run problem {problem.name!r} ({problem.equation.name}): " + "; ".join(reasons))


def simulate(
    problem: Problem,
    grid: Grid,
    times: Any = None,
    u0: Any = None,
    *,
    params: Mapping[str, Any] | None = None,
    numerics: Numerics | None = None,
    simulator: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
) -> Solution:
    """Simulate a batch of trajectories of ``problem`` on ``grid``'s space axes.

    ``times``: increasing, uniformly spaced output times from the problem's ``t0`` on (None: the grid's
    time axis). ``u0``: ``[batch, channel, *space]`` or ``[channel, *space]`` (None: the problem's initial
    condition). ``params``: per-trajectory values (a number or ``[batch]``) of equation parameters and,
    where the simulator supports it, wall values ``boundary.<axis>.<side>``. Returns a Solution with
    values ``[batch, time, channel, *space]`` (torch, ``dtype`` on ``device``).
    """
    numerics = numerics or Numerics()
    sim = select_simulator(problem, simulator)
    _check_grid(problem, grid)
    t = _times(grid, times)
    if u0 is None:
        u0 = problem.initial_numpy(grid)
    u0 = torch.as_tensor(u0, dtype=dtype, device=device)
    if device is None:
        device = u0.device
    channels = len(problem.equation.fields)
    if u0.dim() == grid.ndim + 1:
        u0 = u0.unsqueeze(0)
    if tuple(u0.shape[1:]) != (channels,) + grid.space_shape:
        raise SimulationError(f"expected u0 [batch, {channels}, *{grid.space_shape}], got shape {tuple(u0.shape)}")
    batch_params = _params(problem, sim, params or {}, u0.shape[0], u0.device)
    values = sim.run(problem, grid, t, u0, batch_params, numerics)
    if not torch.isfinite(values).all():
        raise SimulationError(
            f"{sim.name} produced non-finite values for {problem.name!r}; reduce the step (numerics.dt or cfl) or refine the grid"
        )
    out_grid = Grid(grid.space, time_axis(t))
    return Solution(out_grid, problem.equation.fields, values.to(dtype))


def _check_grid(problem: Problem, grid: Grid) -> None:
    dom = problem.domain.space
    got = [(a.name, a.lo, a.hi, a.periodic) for a in grid.space]
    want = [(a.name, a.lo, a.hi, a.periodic) for a in dom]
    same = len(got) == len(want) and all(
        g[0] == w[0] and g[3] == w[3] and np.allclose(g[1:3], w[1:3]) for g, w in zip(got, want, strict=True)
    )
    if not same:
        raise SimulationError(f"the grid's space axes (name, lo, hi, periodic) {got} do not match the problem's domain {want}")


def _times(grid: Grid, times: Any) -> np.ndarray:
    if times is None:
        if grid.time is None:
            raise SimulationError("pass output times, or a grid with a time axis")
        return grid.time.coords
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    time_axis(t)
    return t


def _params(problem: Problem, sim: Simulator, given: Mapping[str, Any], batch: int, device: torch.device) -> Params:
    valid = set(problem.equation.parameters) | set(sim.boundary_keys(problem))
    unknown = set(given) - valid
    if unknown:
        raise SimulationError(
            f"unknown per-trajectory parameters {sorted(unknown)} for {sim.name}; valid names are {sorted(valid)}"
        )
    values = {**problem.coefficients, **dict(given)}
    out: Params = {}
    for name, v in values.items():
        tv = torch.as_tensor(np.asarray(v, dtype=np.float64), device=device).reshape(-1)
        if tv.numel() == 1:
            tv = tv.expand(batch)
        if tv.numel() != batch:
            raise SimulationError(f"parameter {name!r}: expected 1 or {batch} values (one per trajectory), got {tv.numel()}")
        if name in problem.equation.parameters:
            bad = [float(x) for x in tv.unique().tolist() if problem.equation.parameters[name].check(float(x))]
            if bad:
                raise SimulationError(f"parameter {name!r}: {problem.equation.parameters[name].check(bad[0])}")
        out[name] = tv.contiguous()
    return out
