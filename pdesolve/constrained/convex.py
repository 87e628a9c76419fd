"""Inequality constraints: the least-squares problem as a differentiable convex program (cvxpylayers).

    min_w ||A w - b||^2 + tikhonov ||w||^2   subject to   C w = d,   G w <= h

Used only when a problem declares inequalities (a concentration in [0, 1] at the sampled points, bounds
from a maximum principle): a conic solver is one to two orders of magnitude slower than the KKT solve of
:mod:`pdesolve.constrained.lstsq` (see docs/benchmarks_constrained.md), and its gradients are only as
accurate as its tolerance. cvxpylayers is imported when the first such layer is built, never at import.

The objective reaches cvxpy through R and c with R^T R = A^T A + tikhonov I and R^T c = A^T b (a reduced
QR of the stacked [A; sqrt(tikhonov) I]), so the convex program has N x N data whatever the number m of
points, and it equals the original objective up to a constant. QR is differentiated by autograd (it needs
A of full column rank, or tikhonov > 0).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import Tensor

from pdesolve.constrained.errors import ConstraintSetupError
from pdesolve.constrained.kkt import check_system, float64, result_dtype
from pdesolve.constrained.status import SolveStatus

_DERIVATIVE_ONLY = ("mode", "n_jobs_backward")  # diffcp settings that only its solve-and-derivative call accepts


def bounds_as_inequalities(B: Tensor, lower: float | None = None, upper: float | None = None) -> tuple[Tensor, Tensor]:
    """lower <= B w <= upper at points as G w <= h.

    B: [batch, q, N] basis values at q points. Returns G [batch, q', N], h [batch, q'] with q' = q or 2q.
    """
    if lower is None and upper is None:
        raise ValueError("give lower, upper or both, got neither")
    if lower is not None and upper is not None and not lower < upper:
        raise ValueError(f"expected lower < upper, got lower={lower}, upper={upper}")
    G, h = [], []
    if upper is not None:
        G.append(B)
        h.append(B.new_full(B.shape[:2], float(upper)))
    if lower is not None:
        G.append(-B)
        h.append(B.new_full(B.shape[:2], -float(lower)))
    return torch.cat(G, dim=1), torch.cat(h, dim=1)


def check_cvxpylayers() -> None:
    """Raise ConstraintSetupError, before training, when the convex path cannot run here."""
    _import_cvxpylayers()


def _import_cvxpylayers() -> tuple[Any, Any]:
    """cvxpy and the torch CvxpyLayer, or a ConstraintSetupError that says how to get them."""
    try:
        cp = importlib.import_module("cvxpy")
        layers = importlib.import_module("cvxpylayers.torch")
    except ImportError as err:
        raise ConstraintSetupError(
            "this problem declares inequality constraints, which need cvxpylayers (and cvxpy), but it is not "
            f"installed ({err}); install it with `pip install cvxpylayers`, or remove the inequality "
            "constraints to use the exact KKT solve"
        ) from err
    return cp, layers.CvxpyLayer


class ConvexLeastSquares:
    """A cvxpylayers layer for fixed sizes: N weights, p equalities, q inequalities.

    Building it canonicalizes the convex program once (slow); calling it solves a batch. ``solver_args``
    go to diffcp and its conic solver (SCS by default: eps_abs, eps_rel, max_iters, ...). The derivative
    defaults to diffcp's dense mode: the program has only N x N data, and its gradients are then accurate
    to about the solver tolerance (the iterative lsqr mode stops near 1e-3).
    """

    def __init__(
        self,
        n_basis: int,
        n_equalities: int,
        n_inequalities: int,
        *,
        tikhonov: float = 0.0,
        tolerance: float = 1e-6,
        solver_args: dict[str, Any] | None = None,
    ) -> None:
        if n_basis < 1 or n_equalities < 0 or n_inequalities < 0:
            raise ValueError(f"expected n_basis >= 1, counts >= 0, got {n_basis}, {n_equalities}, {n_inequalities}")
        if tikhonov < 0:
            raise ValueError(f"tikhonov must be >= 0, got {tikhonov}")
        cp, CvxpyLayer = _import_cvxpylayers()
        self.sizes = (n_basis, n_equalities, n_inequalities)
        self.tikhonov = tikhonov
        self.tolerance = tolerance
        w = cp.Variable(n_basis)
        R, c = cp.Parameter((n_basis, n_basis)), cp.Parameter(n_basis)
        params, constraints = [R, c], []
        if n_equalities:
            C, d = cp.Parameter((n_equalities, n_basis)), cp.Parameter(n_equalities)
            params += [C, d]
            constraints.append(C @ w == d)
        if n_inequalities:
            G, h = cp.Parameter((n_inequalities, n_basis)), cp.Parameter(n_inequalities)
            params += [G, h]
            constraints.append(G @ w <= h)
        problem = cp.Problem(cp.Minimize(cp.sum_squares(R @ w - c)), constraints)
        # one worker each way: the batch is solved sample by sample in this process, no pool to spawn
        defaults = {
            "eps_abs": tolerance,
            "eps_rel": tolerance,
            "max_iters": 100_000,
            "n_jobs_forward": 1,
            "n_jobs_backward": 1,
            "mode": "dense",
        }
        self.solver_args = {**defaults, **(solver_args or {})}
        self.layer = CvxpyLayer(problem, parameters=params, variables=[w])

    def __call__(
        self,
        A: Tensor,
        b: Tensor,
        C: Tensor | None = None,
        d: Tensor | None = None,
        G: Tensor | None = None,
        h: Tensor | None = None,
    ) -> tuple[Tensor, SolveStatus]:
        """w [batch, N] and its status. A [batch, m, N], b [batch, m], C [batch, p, N], d [batch, p],
        G [batch, q, N], h [batch, q]; the sizes must match the layer's."""
        check_system(A, b, C, d)
        p = 0 if C is None else C.shape[1]
        q = 0 if G is None else G.shape[1]
        if (G is None) != (h is None) or (G is not None and (G.shape[::2] != A.shape[::2] or h.shape != G.shape[:2])):
            shapes = [None if x is None else tuple(x.shape) for x in (G, h)]
            raise ValueError(f"G must be [batch, q, N] and h [batch, q] with batch, N = {A.shape[::2]}, got {shapes}")
        if (A.shape[2], p, q) != self.sizes:
            raise ValueError(f"this layer was built for (N, p, q) = {self.sizes}, got {(A.shape[2], p, q)}")
        out = result_dtype(A, b, C, d, G, h)
        A, b, C, d, G, h = float64(A, b, C, d, G, h)
        n = A.shape[2]
        rows = A
        if self.tikhonov:
            ridge = (self.tikhonov**0.5) * torch.eye(n, dtype=A.dtype, device=A.device).expand(A.shape[0], n, n)
            rows = torch.cat([A, ridge], dim=1)
            b = torch.cat([b, b.new_zeros(b.shape[0], n)], dim=1)
        Q, R = torch.linalg.qr(rows)  # [batch, m(+N), N], [batch, N, N]
        c = torch.einsum("bmn,bm->bn", Q, b)
        args = [R, c] + [x for x in (C, d, G, h) if x is not None]
        solver_args = self.solver_args
        if not (torch.is_grad_enabled() and any(x.requires_grad for x in args)):  # diffcp solves without derivative
            solver_args = {k: v for k, v in solver_args.items() if k not in _DERIVATIVE_ONLY}
        (w,) = self.layer(*args, solver_args=solver_args)
        with torch.no_grad():
            residual = torch.einsum("bmn,bn->bm", A, w) - b[:, : A.shape[1]]
            violation = w.new_zeros(w.shape[0])
            if C is not None:
                violation = torch.maximum(violation, (torch.einsum("bpn,bn->bp", C, w) - d).abs().amax(-1))
            if G is not None:
                violation = torch.maximum(violation, (torch.einsum("bqn,bn->bq", G, w) - h).clamp_min(0).amax(-1))
            rms = residual.pow(2).mean(-1).sqrt()
            # the conic solver stops at a tolerance; a violation well above it means it did not converge
            ok = torch.isfinite(rms) & (violation <= 100 * self.tolerance * (1 + w.abs().amax(-1)))
            status = SolveStatus(ok, torch.ones_like(ok, dtype=torch.int64), rms, violation)
        return w.to(out), status
