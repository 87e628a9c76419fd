"""The training task of the hard-constraint solvers: solve every expert, then the residual of the solved u.

Each step draws a batch of initial conditions (family setting), solves every expert's weights (differentiable
in the backbone), and takes the mean square PDE residual of the solved u at fresh points of each expert's
box, plus the weighted condition rows each expert was solved with. With ranks, each rank computes its
block of the rows; the reported loss is the total and the backbone's gradients are summed over the ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..task import Task

if TYPE_CHECKING:
    from .hard_constrained import HardConstrainedSolver


class HCTask(Task):
    """The training task: solve every expert, then the residual of the solved u at fresh points."""

    def __init__(self, solver: HardConstrainedSolver, evaluate: Callable[[], dict[str, float]]):
        self.solver, self.model, self._evaluate = solver, solver.model, evaluate
        self.owner = f"solver {solver.name!r}"
        self.rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,)).item()))

    def loss(self) -> tuple[Tensor, dict[str, float]]:
        s = self.solver
        ics = None
        if s.family is not None:
            train = s.family.split("train")
            ics = s.family_ics(self.rng.choice(train, size=min(s.family.options.batch, len(train)), replace=False))
        w, status, conditions = s.solve_with_conditions(self.model.solve_points, ics)  # w [S K, N]
        opts = s.options.points
        pts = torch.as_tensor(s.boxes.sample(opts.loss, opts.sampler, self.rng), dtype=s.dtype, device=s.device)  # [K, m, d]
        K, m, _ = pts.shape
        n = len(w)  # S K rows: this rank takes its block; the ranks' shares add up to the loss
        rows = torch.arange(n, device=s.device)[s.ranks.block(n)]
        share = s.ranks.share(n)
        pts = pts[rows % K]
        D = s.row_features(pts, ics, rows // K)  # [R, k, m, N]
        r = s.pointwise(w[rows], D, pts, s.source(pts))  # [R, m]
        residual = (r * r).sum() * (share / (n * m))
        loss = residual
        rho = s.options.constraint_weight if s.options.constraint_weight is not None else 1.0 if s.options.soft else None
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
        if self.solver.averager is not None:  # every parameter got its gradient in the last step (ranks in step)
            self.solver.averager.check()

    def evaluate(self) -> dict[str, float]:
        return self._evaluate()

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
