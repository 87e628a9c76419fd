"""Residuals that are pointwise functions of linear features of w: fast exact Jacobian and Hessian.

In a hard-constrained basis model every field the PDE needs is linear in the weights: u = B w, u_x = B_x w,
u_xx = B_xx w, u_t = B_t w, ... (the network gives the feature matrices D_k = B, B_x, ...), and the residual
combines them point by point, r_i = F(f_1i, ..., f_ki; extra_i) with f_k = D_k w. Then

    J = sum_k diag(F_k) D_k,      H = J^T J + sum_{k,l} D_k^T diag(r F_kl) D_l,

with F_k, F_kl the first and second derivatives of F in its k feature arguments, taken by torch.func on
[batch, k, m] arrays (cheap: k and k^2 passes over the points). Jacobian and exact Hessian then cost
O(k m N + k^2 m N^2) dense arithmetic instead of N automatic-differentiation passes that broadcast the
feature matrices over the N directions.
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
    """

    def __init__(self, fn: PointwiseFn) -> None:
        self.fn = fn

    @staticmethod
    def features(w: Tensor, D: Tensor) -> Tensor:
        """f_k = D_k w, [batch, k, m]."""
        return torch.einsum("bkmn,bn->bkm", D, w)

    def __call__(self, w: Tensor, D: Tensor, *extra: Tensor) -> Tensor:
        return self.fn(self.features(w, D), *extra)

    def _first(self, f: Tensor, extra: tuple[Tensor, ...]) -> Tensor:
        """F_k at every point, [k, batch, m]."""
        k = f.shape[1]
        units = torch.eye(k, dtype=f.dtype, device=f.device)[:, None, :, None].expand(k, f.shape[0], k, f.shape[2])
        return vmap(lambda t: jvp(lambda v: self.fn(v, *extra), (f,), (t,))[1])(units)

    def jacobian(self, w: Tensor, D: Tensor, *extra: Tensor) -> Tensor:
        """dr/dw, [batch, m, N]."""
        return _combine(self._first(self.features(w, D), extra), D)

    def hessian(self, w: Tensor, D: Tensor, *extra: Tensor) -> Tensor:
        """Exact Hessian of 1/2 ||r||^2 with respect to w, [batch, N, N]."""
        f = self.features(w, D)
        k = f.shape[1]
        units = torch.eye(k, dtype=f.dtype, device=f.device)[:, None, :, None].expand(k, f.shape[0], k, f.shape[2])
        second = vmap(lambda t: jvp(lambda v: self._first(v, extra), (f,), (t,))[1])(units)  # [l, k, batch, m]
        first = self._first(f, extra)  # [k, batch, m]
        r = self.fn(f, *extra)  # [batch, m]
        J = _combine(first, D)
        weighted = torch.einsum("lkbm,bm,blmn->bkmn", second, r, D)  # sum_l r F_kl D_l
        return J.mT @ J + torch.einsum("bkmi,bkmj->bij", D, weighted)


def _combine(first: Tensor, D: Tensor) -> Tensor:
    """sum_k diag(F_k) D_k, [batch, m, N]; k is small, and a sum of k products avoids a [batch, k, m, N] copy."""
    return sum(first[k][..., None] * D[:, k] for k in range(D.shape[1]))
