"""The Solver interfaces: point solvers train on a problem at points; grid solvers learn time steps on a grid.

Every back-end trains through :func:`pdesolve.train.train` on a :class:`~pdesolve.task.Task` and predicts
a :class:`~pdesolve.solution.Solution` on a Grid. The runners (:mod:`pdesolve.runner` for point solvers,
:mod:`pdesolve.grid_runner` for grid solvers) read only the members declared here.

A solver is built as ``cls(problem, options, device, ranks=..., family=...)``: the runner sets up the
process group (``ranks``, only for a solver whose options ask for it, :meth:`Solver.distributed`) and the
problem's family of initial conditions (``family``, from its ``simulate:`` section) before the solver
exists; a solver never starts a process group or picks a device itself.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel
from torch import Tensor, nn

from ..distributed import Ranks
from ..grid import Grid
from ..problem import Problem
from ..solution import Solution
from ..task import Task

if TYPE_CHECKING:
    from ..rollout import Trajectories
    from ..simulate.family import InitialConditionFamily

Evaluate = Callable[[], dict[str, float]]


class SolverMismatch(ValueError):
    """A back-end asked to solve a problem it cannot handle; the message says what to change."""


class Solver(abc.ABC):
    """What every back-end has: its name, options model, model, and a prediction on a grid of its domain."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]]
    parametric: ClassVar[bool] = False  # solves a parametric family (Problem.ranges) as a whole: docs/hypernetworks.md
    takes_geometry: ClassVar[bool] = False  # samples a region (Domain.geometry) instead of the box: docs/steady.md
    learns_coefficients: ClassVar[bool] = False  # learns unknown coefficients from observations (Problem.unknowns): docs/inverse.md
    model: nn.Module

    def __init__(self, problem: Problem, options: BaseModel, device: torch.device, dtype: torch.dtype = torch.float32, *,
                 ranks: Ranks | None = None, family: InitialConditionFamily | None = None):
        problems = self.mismatches(problem)
        if problem.is_family and not self.parametric:
            problems.append(f"it takes one value per parameter, and {sorted(problem.ranges)} span ranges (a parametric family: "
                            "solve it with a parametric solver, hyper_pinn)")
        if problem.domain.geometry is not None and not self.takes_geometry:
            problems.append("got a domain with a geometry, expected a box (the solvers that sample a region: pinn)")
        if (problem.unknowns or problem.observations is not None) and not self.learns_coefficients:
            problems.append(f"it cannot learn coefficients from observations, and {sorted(problem.unknowns) or 'the data'} are "
                            "given (an inverse problem: solve it with pinn)")
        if problems:
            raise SolverMismatch(f"solver {self.name!r} cannot solve problem {problem.name!r}: " + "; ".join(problems))
        self.problem, self.options, self.device, self.dtype = problem, options, device, dtype
        self.ranks = ranks if ranks is not None else Ranks.single()  # only the primary rank writes results
        self.family = family  # the problem's initial-condition family (its simulate: section), if it has one

    @classmethod
    def mismatches(cls, problem: Problem) -> list[str]:
        """Why this back-end does not fit ``problem`` (empty when it does)."""
        return []

    @classmethod
    def option_mismatches(cls, problem: Problem, options: BaseModel) -> list[str]:
        """Why these options do not fit ``problem`` (empty when they do), one message per mistake, each starting with
        the key path (``solvers.<name>.<key>: ...``). Checked by the constructor and by ``pdesolve validate``."""
        return []

    @classmethod
    def distributed(cls, options: BaseModel) -> bool:
        """Whether these options ask for a process group (the runner joins one before building the solver)."""
        return False

    @classmethod
    def needs_family(cls, options: BaseModel) -> bool:
        """Whether these options use the problem's initial-condition family (the runner builds it from ``simulate:``)."""
        return False

    @abc.abstractmethod
    def predict(self, grid: Grid) -> Solution:
        """The learned solution on ``grid`` (batch of one), float64."""

    def diagnostics(self, grid: Grid) -> dict[str, Any]:
        """Extra fields and numbers beyond the loss.

        Known keys: ``residual_map`` (the PDE residual on ``grid``, saved and plotted); ``violations``
        (numbers per condition), ``solve`` (a constrained solve's status) and ``family`` (errors on held-out
        problems), copied into ``metrics.json``; ``figures`` (name -> ``draw(path)``: the runner writes each
        as ``<name>.png`` in the run folder).
        """
        return {}


def pointwise_mismatches(problem: Problem, max_order: int, carrier: str, mixed: bool = False) -> list[str]:
    """Why the equation's pointwise face cannot be evaluated by a solver whose ``carrier`` (its jets, its basis)
    holds space derivatives up to ``max_order`` (and mixed second derivatives such as u_xy when ``mixed``)."""
    eq, out = problem.equation, []
    if not eq.pointwise:
        out.append(f"the {eq.name!r} equation has no pointwise residual (it is defined on grids only); use a grid solver")
    if eq.max_space_order > max_order:
        out.append(f"the {eq.name!r} equation needs space derivatives of order {eq.max_space_order}; {carrier} carries up to "
                   f"order {max_order}")
    if eq.mixed_derivatives and not mixed:
        wanted = ", ".join(f"d2/d{a}d{b}" for a, b in eq.mixed_derivatives)
        out.append(f"the {eq.name!r} equation reads mixed derivatives ({wanted}); {carrier} carries pure derivatives along each "
                   "axis only; use solver 'pinn'")
    return out


class PointSolver(Solver):
    """A solver that trains on the problem itself at sampled points (PINN, LPINN, hc, moe_hc)."""

    @abc.abstractmethod
    def task(self, evaluate: Evaluate) -> Task:
        """The training task; ``evaluate()`` returns metrics against the reference during training."""


@dataclass(frozen=True)
class RolloutSettings:
    """How a grid solver is scored: rollouts of ``steps`` frames (None: as far as the data goes) from ``starts``
    start times, on at most ``eval_trajectories`` validation trajectories during training."""

    steps: int | None = None
    starts: int = 1
    eval_trajectories: int = 8


@dataclass(frozen=True)
class DataSettings:
    """How a grid solver reads trajectories: the train/val/test ``split`` fractions and its seed, and the
    frame ``stride`` (learn every n-th frame)."""

    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    stride: int = 1


DATA, FAMILY = "data", "family"


class GridSolver(Solver):
    """A learned time stepper on a grid: ``[batch, history, channel, *space] -> [batch, channel, *space]``.

    It trains either on a dataset of trajectories (``DATA`` in ``trains_on``: :meth:`data_task`) or, with no
    data, on states drawn from the problem's initial-condition family (``FAMILY``: :meth:`family_task`, for
    physics-only grid losses). ``history`` frames go in; ``frame_dt`` is the time one step advances (0 before
    training).
    """

    trains_on: ClassVar[frozenset[str]]
    history: int
    frames_per_step: int = 1  # frames one call of step returns (NeuralStagger: s_t)

    @classmethod
    def needs_family(cls, options: BaseModel) -> bool:
        return FAMILY in cls.trains_on

    @property
    @abc.abstractmethod
    def rollout_settings(self) -> RolloutSettings: ...

    @property
    @abc.abstractmethod
    def data_settings(self) -> DataSettings: ...

    @property
    @abc.abstractmethod
    def frame_dt(self) -> float:
        """The time one step advances (0 before training)."""

    def data_task(self, data: Trajectories, evaluate: Evaluate) -> Task:
        """The training task on in-memory trajectories (the train split); ``evaluate()`` scores validation rollouts."""
        raise SolverMismatch(f"solver {self.name!r} does not train on trajectory data; it trains on {sorted(self.trains_on)}")

    def family_task(self, family: InitialConditionFamily, grid: Grid, evaluate: Evaluate) -> Task:
        """The training task on states drawn from ``family`` with no data (physics-only losses): on ``grid``'s space
        axes, stepping by its time axis' spacing (both from the problem's ``simulate:`` section)."""
        raise SolverMismatch(f"solver {self.name!r} does not train without data; it trains on {sorted(self.trains_on)}")

    @abc.abstractmethod
    def step(self, frames: Tensor) -> Tensor:
        """One step in evaluation mode: ``[batch, history, channel, *space] -> [batch, channel, *space]``, or
        ``[batch, frames_per_step, channel, *space]`` for a stepper that returns several frames per call."""

    def step_with_grad(self) -> Callable[[Tensor], Tensor] | None:
        """:meth:`step` with autograd kept (evaluation mode), for executors that differentiate the stepper
        (``pdesolve rollout --executor newton``, :mod:`pdesolve.parallel_time`); None where the solver has none."""
        return None

    @abc.abstractmethod
    def check_grid(self, grid: Grid) -> None:
        """Raise :class:`~pdesolve.errors.UserError` unless the stepper can run on ``grid``'s space axes."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """The network's settings as plain values (for ``metrics.json``)."""

    def piece_factors(self) -> tuple[int, ...]:
        """The factors per space axis of the strided sub-grids (pieces) the stepper is made of (all 1: one piece)."""
        return (1,) * len(self.problem.domain.space)

    def piece_stepper(self, piece: tuple[int, ...]) -> Callable[[Tensor], Tensor]:
        """The stepper of one piece alone, on its sub-grid ``u[..., i::s_h, j::s_w]`` (a coarse simulator)."""
        from ..errors import UserError

        raise UserError(f"solver {self.name!r} is not made of pieces on sub-grids; roll it out on the whole grid")

    def predict(self, grid: Grid) -> Solution:
        """Roll out from the problem's initial condition over ``grid``'s times (their spacing: the trained step).

        With ``history > 1`` the first frames come from the problem's simulator (the start-up a rollout needs).
        """
        import math

        import numpy as np

        from ..errors import UserError
        from ..rollout import rollout
        from ..simulate import simulate

        dt = self.frame_dt
        if grid.time is None:
            raise UserError(f"solver {self.name!r} predicts on grids with a time axis")
        if dt <= 0:
            raise UserError(f"solver {self.name!r} has not been trained yet (no frame spacing)")
        if grid.time.n > 1 and not math.isclose(grid.time.spacing, dt, rel_tol=1e-4):
            raise UserError(f"the grid's time spacing {grid.time.spacing:g} differs from the trained frame spacing {dt:g}")
        if grid.time.n < self.history:
            raise UserError(f"the grid has {grid.time.n} times, fewer than the {self.history} start frames")
        self.check_grid(grid)
        space = Grid(grid.space)
        if self.history == 1:
            start = np.asarray(self.problem.initial_numpy(space))[None, None]  # [1, 1, channel, *space]
        else:
            start = simulate(self.problem, space, grid.time.coords[: self.history]).numpy()
        x = torch.as_tensor(start, dtype=torch.float64)
        pred = rollout(lambda w: self.step(w).double().cpu(), x, grid.time.n - self.history)
        return Solution(grid, self.problem.equation.fields, torch.cat([x, pred], dim=1).numpy())
