"""Differentiable constrained least squares: the hard-constraint layer of the hc / moe_hc solvers.

Given basis values from a network, find per sample the weights w of u = B w that satisfy the PDE at m
points in the least-squares sense and the initial/boundary conditions C w = d exactly, with gradients
with respect to everything the network produced. Experts of a mixture are solved as one batch.

- :func:`solve_linear`: linear residuals, one batched KKT solve (float64, exact gradients by autograd).
- :func:`solve_nonlinear`: nonlinear residuals, Levenberg-Marquardt with an implicit-function backward.
- :class:`PointwiseResidual`: residuals F(D w) pointwise in linear features, with a fast exact Jacobian/Hessian.
- :class:`ConvexLeastSquares`: inequality constraints through cvxpylayers (imported only when used).
- :class:`ConstrainedLeastSquares`: the linear layer a solver holds; picks KKT or convex by the problem.
- :class:`SolveStatus`: converged / iterations / residual / constraint violation per sample.
"""

from pdesolve.constrained.convex import ConvexLeastSquares, bounds_as_inequalities, check_cvxpylayers
from pdesolve.constrained.errors import ConstraintSetupError
from pdesolve.constrained.layer import ConstrainedLeastSquares
from pdesolve.constrained.lstsq import solve_linear
from pdesolve.constrained.nonlinear import (
    LevenbergMarquardt,
    check_residual,
    forward_jacobian,
    reverse_jacobian,
    solve_nonlinear,
)
from pdesolve.constrained.pointwise import PointwiseResidual
from pdesolve.constrained.status import SolveStatus

__all__ = [
    "ConstrainedLeastSquares",
    "ConstraintSetupError",
    "ConvexLeastSquares",
    "LevenbergMarquardt",
    "PointwiseResidual",
    "SolveStatus",
    "bounds_as_inequalities",
    "check_cvxpylayers",
    "check_residual",
    "forward_jacobian",
    "reverse_jacobian",
    "solve_linear",
    "solve_nonlinear",
]
