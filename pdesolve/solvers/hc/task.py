"""The training task of the hard-constraint solvers: solve every expert, then the residual of the solved u.

Each step draws a batch of initial conditions (family setting), solves every expert's weights (differentiable
in the backbone), and takes the mean square PDE residual of the solved u at fresh points of each expert's
box, plus the weighted condition rows each expert was solved with. With ranks, each rank computes its
block of the rows; the reported loss is the total and the backbone's gradients are summed over the ranks.

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
from ...task import Task
from .basis import HCModel
from .family import ICBatch


class HCSolves(abc.ABC):
    """What the training task needs of a hard-constraint solver: its draws, its batched solve and its residual."""

    name: ClassVar[str]
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


class HCTask(Task):
    """The training task: solve every expert, then the residual of the solved u at fresh points."""

    def __init__(self, solver: HCSolves, evaluate: Callable[[], dict[str, float]]):
        self.solver, self.model, self._evaluate = solver, solver.model, evaluate
        self.owner = f"solver {solver.name!r}"
        self.rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,)).item()))

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
        r = s.residual(w[rows], D, pts)  # [R, m]
        residual = (r * r).sum() * (share / (n * m))
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
        return loss, info

    def before_step(self, step: int) -> None:
        self.solver.check_gradients()

    def evaluate(self) -> dict[str, float]:
        return self._evaluate()

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
