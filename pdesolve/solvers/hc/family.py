"""The family-of-problems setting of the hard-constraint solvers: one backbone over many initial conditions.

Instead of one problem, the backbone learns the solution operator of a family: its input is the initial
condition sampled at ``sensors`` points per space axis (beside the coordinates), so each initial condition
gets its own basis functions, its own constraint rows and its own solve. The initial conditions are members
``0..train+test-1`` of stream :data:`STREAM` of an
:class:`~pdesolve.simulate.family.InitialConditionFamily`: the family the options' own draws declare
(``initial``, ``parameters``), else the problem's (its ``simulate:`` section, which the runner passes to the
solver). The first ``train`` are trained on; ``test`` more are held out for evaluation against the
problem's simulator. Only initial values vary: equation and wall parameters are refused.

Shapes: a batch of S initial conditions is ``sensors [S, s]`` (the backbone's extra input) and
``targets [S, n0]`` (the initial values at the n0 initial-condition constraint points).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.interpolate import RegularGridInterpolator
from torch import Tensor

from ...grid import Grid, GridAxis
from ...metrics import error_metrics
from ...problem import Problem
from ...simulate import Numerics, simulate
from ...simulate.family import InitialConditionFamily
from ...simulate.settings import GaussianRandomField, ProblemInitial, SineSum
from .options import FamilyOptions

STREAM = 0x46414D  # "FAM": the hc family's members (design from [seed, STREAM], states from [seed, STREAM, i])


def family_draws(problem: Problem, options: FamilyOptions, family: InitialConditionFamily | None) -> InitialConditionFamily:
    """The family the initial conditions are drawn from: the options' own draws when they give ``initial`` or
    ``parameters``, else ``family`` (the problem's ``simulate:`` section) with the options' ``sampler`` and
    ``seed`` where given. Raises ValueError (a message under ``family``) when neither draws anything, or when
    the draws vary anything but initial values."""
    allowed = {f"initial.{f}" for f in problem.equation.fields}
    if options.initial is not None or options.parameters is not None:
        parameters = options.parameters or {}
        unknown = sorted(set(parameters) - allowed)
        if unknown:
            raise ValueError(f"family.parameters: got {unknown}, expected only initial values {sorted(allowed)} "
                             "(the family setting varies initial conditions; equation and wall parameters stay fixed)")
        draws = InitialConditionFamily(problem, options.initial or ProblemInitial(), parameters, options.sampler or "random",
                                       1 if options.seed is None else options.seed)
        where = "family"
    elif family is not None:
        unknown = sorted(set(family.parameters) - allowed)
        if unknown:
            raise ValueError(f"family: the problem's simulate.parameters vary {unknown}, expected only initial values "
                             f"{sorted(allowed)} (the family setting varies initial conditions; equation and wall parameters "
                             "stay fixed); give family.parameters or family.initial to draw the family's own")
        draws = replace(family, sampler=options.sampler or family.sampler, seed=family.seed if options.seed is None else options.seed)
        where = "family (from the problem's simulate: section)"
    else:
        raise ValueError("family: nothing to draw; give family.parameters {initial.u: [low, high]} or family.initial "
                         "(kind: grf or sine_sum), or a simulate: section in the problem file")
    if not (set(draws.parameters) & allowed or isinstance(draws.initial, GaussianRandomField | SineSum)):
        raise ValueError(f"{where}: nothing to draw; give parameters {{initial.u: [low, high]}} or an initial sampler "
                         "(kind: grf or sine_sum), as in the simulate: section")
    return draws


class ICFamily:
    """``count`` initial conditions of ``problem`` on a draw grid, the first ``train`` for training.

    ``family``: the problem's initial-condition family, used when ``options`` give no draws of their own.
    """

    def __init__(self, problem: Problem, options: FamilyOptions, family: InitialConditionFamily | None = None):
        fields = problem.equation.fields
        if len(fields) != 1:
            raise ValueError(f"family: got {len(fields)} fields {list(fields)}, expected one (the family setting draws one "
                             "field's initial conditions; a coupled system solves one problem: drop family)")
        self.problem, self.options = problem, options
        self.draws = family_draws(problem, options, family)
        self.count = options.train + options.test
        space = problem.domain.space
        self.grid = Grid(tuple(GridAxis(a.name, a.lo, a.hi, options.resolution, a.periodic) for a in space))
        self.sensor_grid = Grid(tuple(GridAxis(a.name, a.lo, a.hi, options.sensors, a.periodic) for a in space))
        self.values = self._draw()  # [count, *space] on self.grid
        self.sensors = self._sample(self.values, self.sensor_grid.points())  # [count, s]
        self._references: dict[tuple[int, ...], np.ndarray] = {}

    def _draw(self) -> np.ndarray:
        """Members ``0..count-1`` of the draws' stream :data:`STREAM`, ``[count, *space]``."""
        design = self.draws.design(self.count, STREAM)
        return self.draws.states(np.arange(self.count), self.grid, design, STREAM)[:, 0]

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
            sol = simulate(problem, fine, u0=torch.as_tensor(u0), numerics=Numerics(cfl=0.1, rtol=1e-10, atol=1e-12),
                           simulator=self.draws.simulator)
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
