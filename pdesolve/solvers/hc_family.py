"""The family-of-problems setting of the hard-constraint solvers: one backbone over many initial conditions.

Instead of one problem, the backbone learns the solution operator of a family: its input is the initial
condition sampled at ``sensors`` points per space axis (beside the coordinates), so each initial condition
gets its own basis functions, its own constraint rows and its own solve. Initial conditions are drawn the
way ``pdesolve simulate`` draws them (``initial.<field>`` constants from ``parameters``, or an ``initial``
random field), ``train`` of them for training and ``test`` more, held out, for evaluation against the
problem's simulator.

Shapes: a batch of S initial conditions is ``sensors [S, s]`` (the backbone's extra input) and
``targets [S, n0]`` (the initial values at the n0 initial-condition constraint points).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy.interpolate import RegularGridInterpolator
from torch import Tensor

from ..grid import Grid, GridAxis
from ..metrics import error_metrics
from ..problem import Problem
from ..simulate import Numerics, sample_parameters, simulate
from ..simulate.samplers import draw_fields
from ..simulate.settings import InitialSampler, ParameterRange, ProblemInitial


class FamilyOptions(BaseModel):
    """``train`` / ``test`` initial conditions; how they are drawn mirrors the ``simulate:`` section.

    In a problem file, reuse the ``simulate:`` draws with a YAML anchor (``parameters: &draws ...`` there,
    ``parameters: *draws`` here).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    train: int = Field(32, gt=0, description="initial conditions to train on")
    test: int = Field(8, ge=0, description="held-out initial conditions, evaluated against the simulator")
    batch: int = Field(4, gt=0, description="initial conditions per training step")
    sensors: int = Field(32, ge=2, description="points per space axis where the backbone reads the initial condition")
    resolution: int = Field(257, ge=2, description="points per space axis the random initial fields are drawn on")
    initial: InitialSampler = ProblemInitial()
    parameters: dict[str, ParameterRange] = Field(default_factory=dict, description="initial.<field>: [low, high] constants")
    sampler: Literal["random", "lhs", "sobol", "uniform"] = Field("random", description="the design of the parameter draws")
    seed: int = Field(1, description="the draw; train and test come from one stream")


class ICFamily:
    """``count`` initial conditions of ``problem`` on a draw grid, the first ``train`` for training."""

    def __init__(self, problem: Problem, options: FamilyOptions):
        fields = problem.equation.fields
        allowed = {f"initial.{f}" for f in fields}
        unknown = sorted(set(options.parameters) - allowed)
        if unknown:
            raise ValueError(f"family.parameters: got {unknown}, expected only initial values {sorted(allowed)} "
                             "(the family setting varies initial conditions; equation and wall parameters stay fixed)")
        if len(fields) != 1:
            raise ValueError(f"family: got {len(fields)} fields, expected one")
        self.problem, self.options = problem, options
        self.count = options.train + options.test
        space = problem.domain.space
        self.grid = Grid(tuple(GridAxis(a.name, a.lo, a.hi, options.resolution, a.periodic) for a in space))
        self.sensor_grid = Grid(tuple(GridAxis(a.name, a.lo, a.hi, options.sensors, a.periodic) for a in space))
        self.values = self._draw()  # [count, *space] on self.grid
        self.sensors = self._sample(self.values, self.sensor_grid.points())  # [count, s]
        self._references: dict[tuple[int, ...], np.ndarray] = {}

    def _draw(self) -> np.ndarray:
        o, field = self.options, self.problem.equation.fields[0]
        rng = np.random.default_rng([o.seed, 0x46414D])
        n, shape = self.count, self.grid.space_shape
        ranges = {k: (r.low, r.high, r.log) for k, r in o.parameters.items()}
        if f"initial.{field}" in ranges:
            const = sample_parameters(ranges, n, o.sampler, rng)[f"initial.{field}"]
            return np.broadcast_to(const.reshape((n,) + (1,) * len(shape)), (n,) + shape).copy()
        drawn = draw_fields(o.initial, self.grid, n, rng)
        if drawn is not None:
            return drawn
        raise ValueError("family: nothing to draw; give parameters {initial.u: [low, high]} or an initial sampler "
                         "(kind: grf or sine_sum), as in the simulate: section")

    def _sample(self, values: np.ndarray, pts: np.ndarray) -> np.ndarray:
        """Linear interpolation of ``values [S, *space]`` at space points ``[n, d_space]`` -> ``[S, n]``."""
        axes = tuple(a.coords for a in self.grid.space)
        return np.stack([RegularGridInterpolator(axes, v)(pts) for v in values])

    def split(self, which: str) -> np.ndarray:
        """Indices of the ``train`` or ``test`` initial conditions."""
        return np.arange(self.options.train) if which == "train" else np.arange(self.options.train, self.count)

    def targets(self, index: np.ndarray, space_points: np.ndarray) -> Tensor:
        """Initial values at ``space_points [n0, d_space]`` for the ICs ``index``, ``[S, n0]`` float64."""
        return torch.as_tensor(self._sample(self.values[index], space_points))

    def reference(self, index: int, grid: Grid, refine: int = 4) -> np.ndarray:
        """The simulator's trajectory from IC ``index`` on ``grid``, ``[1, time, 1, *space]``, cached."""
        key = (index, *grid.shape)
        if key not in self._references:
            fine = Grid(tuple(GridAxis(a.name, a.lo, a.hi, (a.n - 1) * refine + 1 if not a.periodic else a.n * refine, a.periodic)
                              for a in grid.space), grid.time)
            u0 = self._sample(self.values[[index]], Grid(fine.space).points()).reshape((1, 1) + fine.space_shape)
            problem = replace(self.problem, reference=None)
            sol = simulate(problem, fine, u0=torch.as_tensor(u0), numerics=Numerics(cfl=0.1, rtol=1e-10, atol=1e-12))
            index_ = (slice(None), slice(None), slice(None)) + (slice(None, None, refine),) * grid.ndim
            self._references[key] = sol.numpy()[index_]
        return self._references[key]


@dataclass(frozen=True)
class ICBatch:
    """S initial conditions of a family: ``sensors [S, s]``, constraint targets ``[S, p]``, mean values ``[S]``."""

    sensors: Tensor
    targets: Tensor
    means: Tensor


def family_errors(predictions: Mapping[int, np.ndarray], family: ICFamily, grid: Grid) -> dict[str, float]:
    """Mean and worst relative L2 over the given ICs, ``predictions[i] [1, time, 1, *space]``."""
    rel = [error_metrics(u, family.reference(i, grid))["rel_l2"] for i, u in predictions.items()]
    return {"test_rel_l2": float(np.mean(rel)), "test_rel_l2_max": float(np.max(rel))} if rel else {}
