"""Residuals that are pointwise functions of linear features of w: fast exact Jacobian and Hessian.

In a hard-constrained basis model every field the PDE needs is linear in the weights: u = B w, u_x = B_x w,
u_xx = B_xx w, u_t = B_t w, ... (the network gives the feature matrices D_k = B, B_x, ...), and the residual
combines them point by point, r_i = F(f_1i, ..., f_ki; extra_i) with f_k = D_k w. Then

    J = sum_k diag(F_k) D_k,      H = J^T J + sum_{k,l} D_k^T diag(r F_kl) D_l,

with F_k, F_kl the first and second derivatives of F in its k feature arguments, taken by torch.func on
[batch, k, m] arrays (cheap: k and k^2 passes over the points). Jacobian and exact Hessian then cost
O(k m N + k^2 m N^2) dense arithmetic instead of N automatic-differentiation passes that broadcast the
feature matrices over the N directions.

A coupled system of F fields (``fields=F``) shares the feature matrices: each field has its own N weights,
w = (w_1, ..., w_F) of length F N, and its features are f_(g,j) = D_j w_g (feature row g k + j, k per field).
F then returns one residual per equation, ``[batch, E, m]``; the residual vector is the E m rows,
equation-major, and the Jacobian [batch, E m, F N] is block-structured: dr_e/dw_g = sum_j diag(F_e,(g,j)) D_j.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jvp, vmap

PointwiseFn = Callable[..., Tensor]
"""F(features [batch, k, m], *extra) -> [batch, m]; point i of the output reads point i of the inputs only."""


class PointwiseResidual:
    """r(w; D, *extra) = F(D w, *extra) with D [batch, k, m, N] stacked feature matrices.

    Use it as the residual of solve_nonlinear, with ``jacobian=res.jacobian, hessian=res.hessian``;
    params are then (D, *extra). F must be pointwise in the points and written in torch operations.
    ``fields`` > 1: a coupled system (see the module docstring); w is [batch, fields N], F reads features
    ``[batch, fields k, m]`` and returns ``[batch, E, m]``, and the residual is ``[batch, E m]``.
    """

    def __init__(self, fn: PointwiseFn, fields: int = 1) -> None:
        self.fn, self.fields = fn, fields

    def features(self, w: Tensor, D: Tensor) -> Tensor:
        """f_k = D_k w, [batch, k, m] (a system: f_(g,k) = D_k w_g, [batch, fields k, m])."""
        if self.fields == 1:
            return torch.einsum("bkmn,bn->bkm", D, w)
        b, k, m, _ = D.shape
        return torch.einsum("bkmn,bgn->bgkm", D, w.reshape(b, self.fields, -1)).reshape(b, self.fields * k, m)

    def __call__(self, w: Tensor, D: Tensor, *extra: Tensor) -> Tensor:
        r = self.fn(self.features(w, D), *extra)
        return r if self.fields == 1 else r.flatten(1)

    def linearization(self, f: Tensor, D: Tensor, *extra: Tensor) -> tuple[Tensor, Tensor]:
        """The residual linearized about the features ``f`` (any state, not necessarily D w): r ~ A w - b with
        A the Jacobian there and b = -(F(f) - sum_k F_k f_k); ``A [batch, rows, fields N]``, ``b [batch, rows]``."""
        first = self._first(f, extra)  # [K, batch, (E,) m]
        r = self.fn(f, *extra)
        fk = f if r.ndim == 2 else f[:, :, None]  # [batch, K, (1,) m] against F_k [batch, (E,) m]
        b = -(r - sum(first[i] * fk[:, i] for i in range(f.shape[1])))
        return self._jacobian(first, D), b.flatten(1)

    def _jacobian(self, first: Tensor, D: Tensor) -> Tensor:
        """dr/dw from F_k, [batch, rows, fields N]."""
        if self.fields == 1:
            return _combine(first, D)
        b, k, m, n = D.shape
        first = first.reshape(self.fields, k, *first.shape[1:])  # [g, k, batch, E, m]
        J = torch.einsum("gkbem,bkmn->bemgn", first, D)
        return J.reshape(b, -1, self.fields * n)

    def _first(self, f: Tensor, extra: tuple[Tensor, ...]) -> Tensor:
        """F_k at every point, [k, batch, m]."""
        k = f.shape[1]
        units = torch.eye(k, dtype=f.dtype, device=f.device)[:, None, :, None].expand(k, f.shape[0], k, f.shape[2])
        return vmap(lambda t: jvp(lambda v: self.fn(v, *extra), (f,), (t,))[1])(units)

    def jacobian(self, w: Tensor, D: Tensor, *extra: Tensor) -> Tensor:
        """dr/dw, [batch, m, N] (a system: [batch, E m, fields N])."""
        return self._jacobian(self._first(self.features(w, D), extra), D)

    def hessian(self, w: Tensor, D: Tensor, *extra: Tensor) -> Tensor:
        """Exact Hessian of 1/2 ||r||^2 with respect to w, [batch, N, N]."""
        f = self.features(w, D)
        k = f.shape[1]
        units = torch.eye(k, dtype=f.dtype, device=f.device)[:, None, :, None].expand(k, f.shape[0], k, f.shape[2])
        second = vmap(lambda t: jvp(lambda v: self._first(v, extra), (f,), (t,))[1])(units)  # [l, k, batch, m]
        first = self._first(f, extra)  # [k, batch, m]
        r = self.fn(f, *extra)  # [batch, m]
        J = self._jacobian(first, D)
        if self.fields == 1:
            weighted = torch.einsum("lkbm,bm,blmn->bkmn", second, r, D)  # sum_l r F_kl D_l
            return J.mT @ J + torch.einsum("bkmi,bkmj->bij", D, weighted)
        b, kd, m, n = D.shape
        g = self.fields  # sum over equations e of r_e F_e,(h,l),(g,k), then D_k^T [..] D_l into block (g, h)
        second = second.reshape(g, kd, g, kd, b, -1, m)  # [h, l, g, k, batch, E, m]
        weighted = torch.einsum("hlgkbem,bem,blmn->bgkhmn", second, r, D)
        curvature = torch.einsum("bkmi,bgkhmj->bgihj", D, weighted).reshape(b, g * n, g * n)
        return J.mT @ J + curvature


def _combine(first: Tensor, D: Tensor) -> Tensor:
    """sum_k diag(F_k) D_k, [batch, m, N]; k is small, and a sum of k products avoids a [batch, k, m, N] copy."""
    return sum(first[k][..., None] * D[:, k] for k in range(D.shape[1]))
