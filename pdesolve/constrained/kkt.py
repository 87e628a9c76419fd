"""Batched KKT algebra shared by the linear and nonlinear paths, and the input checks they share.

For min 1/2 w^T H w - g^T w subject to C w = d the optimality (KKT) conditions are the symmetric
indefinite system

    [ H  C^T ] [ w  ]   [ g ]
    [ C   0  ] [ nu ] = [ d ]

solved here densely for every sample at once. Its size is N + p (basis functions plus constraints),
independent of the number m of sampled points: forming H = A^T A costs O(m N^2), the solve O((N+p)^3).
"""

from __future__ import annotations

import torch
from torch import Tensor


def solve_kkt(H: Tensor, C: Tensor, g: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    """Solve the KKT system above for every sample.

    H: [batch, N, N] symmetric; C: [batch, p, N] with full row rank (p may be 0); g: [batch, N];
    d: [batch, p]. Returns w [batch, N] and the multipliers nu [batch, p]. Differentiable by autograd.
    """
    n, p = H.shape[-1], C.shape[-2]
    if p == 0:
        return torch.linalg.solve(H, g), g.new_zeros(g.shape[:-1] + (0,))
    top = torch.cat([H, C.mT], dim=-1)  # [batch, N, N+p]
    bottom = torch.cat([C, C.new_zeros(C.shape[:-1] + (p,))], dim=-1)  # [batch, p, N+p]
    K = torch.cat([top, bottom], dim=-2)  # [batch, N+p, N+p]
    rhs = torch.cat([g, d], dim=-1)
    x, info = torch.linalg.solve_ex(K, rhs)
    if bool((info != 0).any()):
        # dependent constraint rows (e.g. points placed symmetrically on an odd basis) or a singular H: the
        # quasi-definite neighbour of K always solves, and equals the KKT solution to ~1e-10 where one exists
        x = _solve_or_pinv(K + _quasi_definite_shift(H, C), rhs)
    return x[..., :n], x[..., n:]


def _solve_or_pinv(K: Tensor, rhs: Tensor) -> Tensor:
    """``K^-1 rhs`` per sample; where K is singular to round-off even so (H's scale so large, from a sharp front's
    stiff residual features, that the shift is below it), the minimum-norm solution by the pseudo-inverse. Each sample
    takes one differentiable path, so no singular solve enters the backward pass."""
    with torch.no_grad():
        bad = torch.linalg.solve_ex(K, rhs)[1] != 0
    if not bool(bad.any()):
        return torch.linalg.solve(K, rhs)
    good = ~bad
    x = rhs.new_zeros(rhs.shape)
    x = x.index_put((good.nonzero()[:, 0],), torch.linalg.solve(K[good], rhs[good]))
    return x.index_put((bad.nonzero()[:, 0],), (torch.linalg.pinv(K[bad], hermitian=True) @ rhs[bad][..., None])[..., 0])


def _quasi_definite_shift(H: Tensor, C: Tensor) -> Tensor:
    """``diag(eps_H I, -delta I)``: ``[[H + eps_H, C^T], [C, -delta]]`` is nonsingular for any C, and eliminating the
    multipliers leaves ``H + eps_H + C^T C / delta``: the conditions as a penalty 1e10 times H's scale."""
    n, p = H.shape[-1], C.shape[-2]
    h = H.diagonal(dim1=-2, dim2=-1).abs().mean(-1).clamp_min(1e-300)  # [batch]
    c = C.pow(2).sum(-1).mean(-1).clamp_min(1e-300)  # [batch]
    diag = torch.cat([(1e-12 * h)[:, None].expand(-1, n), -(1e-10 * c / h)[:, None].expand(-1, p)], dim=-1)
    return torch.diag_embed(diag.detach())


def empty_constraints(like: Tensor, batch: int, n: int) -> tuple[Tensor, Tensor]:
    """C [batch, 0, N] and d [batch, 0]: 'no constraints' as tensors so every path has one shape."""
    return like.new_zeros(batch, 0, n), like.new_zeros(batch, 0)


def check_system(A: Tensor, b: Tensor, C: Tensor | None, d: Tensor | None, *, what: str = "A") -> None:
    """Check the shapes of A [batch, m, N], b [batch, m], C [batch, p, N], d [batch, p]."""
    if A.ndim != 3:
        raise ValueError(f"{what} must be [batch, m, N], got shape {tuple(A.shape)}")
    batch, m, n = A.shape
    if b.shape != (batch, m):
        raise ValueError(f"b must be [batch, m] = {[batch, m]}, got shape {tuple(b.shape)}")
    check_constraints(C, d, batch, n)


def check_constraints(C: Tensor | None, d: Tensor | None, batch: int, n: int) -> None:
    """Check C [batch, p, N] and d [batch, p]; both or neither, and p <= N for an exact solve."""
    if (C is None) != (d is None):
        given = "C" if C is not None else "d"
        raise ValueError(f"give both C and d or neither, got only {given}")
    if C is None or d is None:
        return
    if C.ndim != 3 or C.shape[0] != batch or C.shape[2] != n:
        raise ValueError(f"C must be [batch, p, N] with batch={batch}, N={n}, got shape {tuple(C.shape)}")
    if d.shape != C.shape[:2]:
        raise ValueError(f"d must be [batch, p] = {list(C.shape[:2])}, got shape {tuple(d.shape)}")


def check_exact(p: int, n: int) -> None:
    """Exact constraints need at most N independent rows; otherwise the KKT matrix is singular."""
    if p > n:
        raise ValueError(
            f"{p} equality constraints on {n} basis weights cannot all hold exactly (need p <= N); "
            "use more basis functions, fewer constraint points, or weighted constraint rows (penalty=...)"
        )


def float64(*xs: Tensor | None) -> list[Tensor | None]:
    """Cast to float64 (the reference precision: normal equations square the condition number)."""
    return [None if x is None else x.to(torch.float64) for x in xs]


def result_dtype(*xs: Tensor | None) -> torch.dtype:
    """The floating dtype the caller gave (float32 in, float32 out), at least float32."""
    dtype = torch.float32
    for x in xs:
        if x is not None:
            dtype = torch.promote_types(dtype, x.dtype)
    return dtype
