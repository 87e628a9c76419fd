"""The training task of the hard-constraint solvers: solve every expert, then the residual of the solved u.

Each step draws a batch of initial conditions (family setting), solves every expert's weights (differentiable
in the backbone), and takes the mean square PDE residual of the solved u at fresh points of each expert's
box, plus the weighted condition rows each expert was solved with; ``causal`` weights the residual term over
time chunks and ``curriculum`` ramps an equation parameter (the PINN's methods, :mod:`pdesolve.solvers.pinn_training`).
With ranks, each rank computes its block of the rows; the reported loss is the total and the backbone's gradients
are summed over the ranks.

The task sees the solver only through :class:`HCSolves` (declared here, implemented by
:class:`~pdesolve.solvers.hc.solver.HardConstrainedSolver`), so this module does not import the solver.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ...constrained import SolveStatus
from ...distributed import Ranks
from ...problem import Problem
from ...task import Task
from ..pinn_training import CausalWeights, Curriculum
from .basis import HCModel
from .family import ICBatch
from .options import HCOptions


class HCSolves(abc.ABC):
    """What the training task needs of a hard-constraint solver: its draws, its batched solve and its residual."""

    name: ClassVar[str]
    problem: Problem
    options: HCOptions
    model: HCModel
    ranks: Ranks
    linear: bool  # False: the solves are Levenberg-Marquardt iterations (their counts are reported)

    @abc.abstractmethod
    def draw_ics(self, rng: np.random.Generator) -> ICBatch | None:
        """The step's batch of training initial conditions (None for a single problem)."""

    @abc.abstractmethod
    def loss_points(self, rng: np.random.Generator) -> Tensor:
        """Fresh points in every expert's box, ``[K, m, d]``."""

    @abc.abstractmethod
    def solve_with_conditions(self, points: Tensor, ics: ICBatch | None = None
                              ) -> tuple[Tensor, SolveStatus, tuple[Tensor, Tensor] | None]:
        """Weights ``w [S K, N]``, their status, and the condition rows ``(C [S K, p, N], target [S K, p])``."""

    @abc.abstractmethod
    def row_features(self, points: Tensor, ics: ICBatch | None, samples: Tensor) -> Tensor:
        """Features ``[R, k, m, N]`` of row r at ``points[r] [m, d]`` with initial condition ``samples[r]``."""

    @abc.abstractmethod
    def residual(self, w: Tensor, features: Tensor, points: Tensor) -> Tensor:
        """The PDE residual of ``u = b . w`` per row, ``w [R, N]``, features ``[R, k, m, N]``, points ``[R, m, d]`` -> ``[R, m]``."""

    @property
    @abc.abstractmethod
    def condition_weight(self) -> float | None:
        """rho of the condition rows in the loss (None: exact conditions, not in the loss)."""

    @abc.abstractmethod
    def check_gradients(self) -> None:
        """Before a step: raise unless the last step gave every parameter its gradient (keeps the ranks in step)."""

    @abc.abstractmethod
    def set_coefficient(self, name: str, value: float) -> None:
        """Solve and take the residual with the equation parameter ``name`` at ``value`` from now on (a curriculum)."""


class HCTask(Task):
    """The training task: solve every expert, then the residual of the solved u at fresh points.

    With ``causal``, the residual term is the PINN's :class:`~pdesolve.solvers.pinn_training.CausalWeights` loss
    over time chunks of the problem's time interval, the loss points grouped by their time (all experts' and
    initial conditions' points together); with ``curriculum``, the equation parameter of the step is set on the
    solver before the step's solves. Both record what they did in the loss's terms (history columns) and keep
    their state in :meth:`state_dict`.
    """

    def __init__(self, solver: HCSolves, evaluate: Callable[[], dict[str, float]]):
        self.solver, self.model, self._evaluate = solver, solver.model, evaluate
        self.owner = f"solver {solver.name!r}"
        self.rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,)).item()))
        options, time = solver.options, solver.problem.domain.time
        self.causal = CausalWeights(options.causal, *time) if options.causal is not None and time is not None else None
        cur = options.curriculum
        self.curriculum = Curriculum(cur, float(solver.problem.coefficients[cur.parameter])) if cur is not None else None
        if self.curriculum is not None:
            self._ramp(0)

    def loss(self) -> tuple[Tensor, dict[str, float]]:
        s = self.solver
        ics = s.draw_ics(self.rng)
        w, status, conditions = s.solve_with_conditions(self.model.solve_points, ics)  # w [S K, N]
        pts = s.loss_points(self.rng)  # [K, m, d]
        K, m, _ = pts.shape
        n = len(w)  # S K rows: this rank takes its block; the ranks' shares add up to the loss
        rows = torch.arange(n, device=pts.device)[s.ranks.block(n)]
        share = s.ranks.share(n)
        pts = pts[rows % K]
        D = s.row_features(pts, ics, rows // K)  # [R, k, m, N]
        r = s.residual(w[rows], D, pts)  # [R, m] (a system: [R, E m], equation-major)
        if self.causal is None:
            residual = (r * r).sum() * (share / (n * m))
        else:  # per point the sum over a system's equations, as above; each rank's share of the chunks' means
            r2 = r.reshape(len(r), -1, m).square().sum(1).reshape(-1, 1)  # [R m, 1]
            chunk = self.causal.chunk_of(pts[..., 0].reshape(-1))
            residual = self.causal.losses(r2 * share, chunk, torch.full_like(r2[:, 0], share), reduce=s.ranks.sum)[0]
        loss = residual
        rho = s.condition_weight
        if rho is not None and conditions is not None:  # the rows each expert was solved with (later time slabs:
            C, target = conditions                       # the previous slab's solution, not the initial condition)
            miss = torch.einsum("bpn,bn->bp", C[rows], w[rows]) - target[rows].to(w)  # [R, p]
            loss = loss + rho * (miss * miss).sum() * (share / (n * miss.shape[1]))
        if s.ranks.group is not None:  # every rank reports the total; each backpropagates its share (gradients are summed)
            loss = loss + (s.ranks.sum(loss.detach()) - loss.detach())
            residual = s.ranks.sum(residual.detach())
        info = {"residual": float(residual.detach()), "solve_residual_max": float(status.residual.max()),
                "constraint_violation_max": float(status.constraint_violation.max())}
        if not s.linear:
            info["lm_iterations_max"] = float(status.iterations.max())
            info["lm_converged"] = float(status.converged.double().mean())
        if self.causal is not None:
            info.update(self.causal.record())
        if self.curriculum is not None:
            info[f"curriculum_{self.curriculum.options.parameter}"] = self._ramped
        return loss, info

    def before_step(self, step: int) -> None:
        self.solver.check_gradients()
        if self.causal is not None and step:
            self.causal.after_step()  # anneal the tolerance from the last step's weights
        if self.curriculum is not None:
            self._ramp(step)

    def _ramp(self, step: int) -> None:
        assert self.curriculum is not None
        self._ramped = self.curriculum.value(step)
        self.solver.set_coefficient(self.curriculum.options.parameter, self._ramped)

    def evaluate(self) -> dict[str, float]:
        return self._evaluate()

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"rng": self.rng.bit_generator.state}
        if self.causal is not None:
            state["causal"] = self.causal.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        if self.causal is not None:
            self.causal.load_state_dict(state["causal"])
