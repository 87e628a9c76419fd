"""Linear residuals: a batched, differentiable equality-constrained least-squares solve.

    min_w ||A w - b||^2 + tikhonov ||w||^2   subject to   C w = d

A [batch, m, N] is the PDE operator applied to N basis functions at m points, b [batch, m] the right side,
C [batch, p, N] w = d [batch, p] the initial/boundary conditions. The constraints hold exactly through one
KKT solve on the normal equations (size N + p, cost O(m N^2 + (N+p)^3), linear in m); or, with
``penalty=rho``, they are stacked as rows of weight sqrt(rho) in the least-squares objective instead.

``tikhonov`` (absolute, default 0) adds lambda ||w||^2: the normal equations square the condition number
of A, and a network's basis functions can be nearly collinear, so a hard-constraint solver should set
lambda to a small multiple of the scale of diag(A^T A) (for example 1e-10 times its mean). The solution
then differs from the unregularized one by O(lambda / sigma_min(A)^2).

Everything runs in float64; the weights come back in the caller's dtype. Gradients with respect to A, b,
C and d are exact: autograd goes through the one dense solve (its backward is one more solve with the
same matrix), so memory holds a few [batch, N+p, N+p] matrices besides the inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pdesolve.constrained.kkt import check_exact, check_system, empty_constraints, float64, result_dtype, solve_kkt
from pdesolve.constrained.status import SolveStatus, direct_status


def solve_linear(
    A: Tensor,
    b: Tensor,
    C: Tensor | None = None,
    d: Tensor | None = None,
    *,
    tikhonov: float = 0.0,
    penalty: float | None = None,
) -> tuple[Tensor, SolveStatus]:
    """Weights w [batch, N] minimizing ||A w - b||^2 + tikhonov ||w||^2 subject to C w = d.

    A: [batch, m, N]; b: [batch, m]; C: [batch, p, N] or None; d: [batch, p] or None.
    penalty: None for exact constraints (KKT, needs p <= N and C of full row rank); a positive number
    rho to minimize ||A w - b||^2 + rho ||C w - d||^2 instead.
    Returns (w, status); w is differentiable with respect to A, b, C, d.
    """
    check_system(A, b, C, d)
    if tikhonov < 0:
        raise ValueError(f"tikhonov must be >= 0, got {tikhonov}")
    if penalty is not None and not penalty > 0:
        raise ValueError(f"penalty must be a positive weight or None (exact constraints), got {penalty}")
    out = result_dtype(A, b, C, d)
    A, b, C, d = float64(A, b, C, d)
    batch, _, n = A.shape
    if C is None or d is None:
        C, d = empty_constraints(A, batch, n)
    if penalty is None:
        check_exact(C.shape[1], n)
        rows_A, rows_b, C_kkt, d_kkt = A, b, C, d
    else:
        scale = penalty**0.5
        rows_A, rows_b = torch.cat([A, scale * C], dim=1), torch.cat([b, scale * d], dim=1)
        C_kkt, d_kkt = empty_constraints(A, batch, n)
    H = rows_A.mT @ rows_A  # [batch, N, N]
    if tikhonov:
        H = H + tikhonov * torch.eye(n, dtype=H.dtype, device=H.device)
    g = torch.einsum("bmn,bm->bn", rows_A, rows_b)
    w, _ = solve_kkt(H, C_kkt, g, d_kkt)
    with torch.no_grad():
        residual = torch.einsum("bmn,bn->bm", A, w) - b
        violation = _violation(C, d, w)
    return w.to(out), direct_status(residual, violation)


def _violation(C: Tensor, d: Tensor, w: Tensor) -> Tensor:
    """max |C w - d| per sample, [batch]; zero without constraints."""
    if C.shape[1] == 0:
        return w.new_zeros(w.shape[0])
    return (torch.einsum("bpn,bn->bp", C, w) - d).abs().amax(-1)
