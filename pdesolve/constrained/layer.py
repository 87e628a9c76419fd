"""The linear hard-constraint layer a solver holds: the KKT solve, or cvxpylayers when inequalities are declared."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from pdesolve.constrained.convex import ConvexLeastSquares, check_cvxpylayers
from pdesolve.constrained.lstsq import solve_linear
from pdesolve.constrained.status import SolveStatus


class ConstrainedLeastSquares:
    """min ||A w - b||^2 + tikhonov ||w||^2 s.t. C w = d (and G w <= h when the problem declares inequalities).

    inequalities: whether the problem has inequality constraints. Only then is the (slow) convex path used,
    and cvxpylayers is checked at construction, so a missing install is reported before training.
    penalty: weighted constraint rows instead of exact ones (KKT path only).
    tolerance, solver_args: for the conic solver of the convex path.
    """

    def __init__(
        self,
        *,
        inequalities: bool = False,
        tikhonov: float = 0.0,
        penalty: float | None = None,
        tolerance: float = 1e-8,
        solver_args: dict[str, Any] | None = None,
    ) -> None:
        if inequalities and penalty is not None:
            raise ValueError(
                f"penalty={penalty} applies to the KKT path; with inequalities the equalities are exact, expected penalty=None"
            )
        if inequalities:
            check_cvxpylayers()
        self.inequalities = inequalities
        self.tikhonov = tikhonov
        self.penalty = penalty
        self.tolerance = tolerance
        self.solver_args = solver_args
        self._convex: dict[tuple[int, int, int], ConvexLeastSquares] = {}

    def __call__(
        self,
        A: Tensor,
        b: Tensor,
        C: Tensor | None = None,
        d: Tensor | None = None,
        G: Tensor | None = None,
        h: Tensor | None = None,
    ) -> tuple[Tensor, SolveStatus]:
        """w [batch, N] and its status; A [batch, m, N], b [batch, m], C [batch, p, N], d [batch, p],
        G [batch, q, N], h [batch, q] (G, h only for a layer built with inequalities=True)."""
        if not self.inequalities:
            if G is not None or h is not None:
                raise ValueError(
                    "got inequality constraints G, h for a layer built with inequalities=False; build it with inequalities=True"
                )
            return solve_linear(A, b, C, d, tikhonov=self.tikhonov, penalty=self.penalty)
        sizes = (A.shape[-1], 0 if C is None else C.shape[1], 0 if G is None else G.shape[1])
        if sizes not in self._convex:  # canonicalizing the convex program is slow; once per size
            self._convex[sizes] = ConvexLeastSquares(*sizes, tikhonov=self.tikhonov, tolerance=self.tolerance, solver_args=self.solver_args)
        return self._convex[sizes](A, b, C, d, G, h)
