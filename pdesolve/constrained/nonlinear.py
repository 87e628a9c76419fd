"""Nonlinear residuals: batched Levenberg-Marquardt with exact gradients from the implicit function theorem.

    min_w 1/2 ||r(w; theta)||^2 + tikhonov/2 ||w||^2   subject to   C w = d

r(w; theta) [batch, m] is the PDE residual of u = B w at m points (theta: the basis values and their
derivatives from a network, the forcing, ...); the initial/boundary conditions C w = d stay linear in w.
Each step solves the linearized problem with the constraints exactly (a KKT solve of size N + p, started
from the projection of w0 onto C w = d, so every iterate is feasible); the damping mu follows Nielsen's
rule (shrunk by how well the quadratic model predicted the decrease, doubled and redoubled on rejection).
Samples stop independently (a per-sample status says how).

The backward pass does not unroll the iterations: at the solution w*, with multipliers nu*,
    F(w, nu; theta) = [grad_w f(w; theta) + C^T nu ; C w - d] = 0,
so dL/dtheta = -[u; v]^T dF/dtheta with [H C^T; C 0][u; v] = [dL/dw; 0], where H is the exact Hessian of
f (J^T J plus the second-order term sum_i r_i grad^2 r_i, which matters whenever the residual does not
vanish at the solution). Memory is that of one Hessian and one vector-Jacobian product, whatever the number
of iterations. ``implicit=False`` differentiates through the iterations instead (memory grows with them),
for checks and comparisons.

The Jacobian dr/dw of the iterations comes from torch.func (forward mode by default: N Jacobian-vector
products, cost O(m N) each, linear in m; reverse mode costs m vector-Jacobian products, O(m^2 N) for a
pointwise residual) or from a function the caller gives. Either way the residual itself must be written in
torch operations that torch.func can differentiate twice (vmap, jvp, vjp): the backward takes the exact
Hessian by forward mode over one vector-Jacobian product of the residual. :func:`check_residual` says so
before training when it is not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad, jvp, vjp, vmap

from pdesolve.constrained.errors import ConstraintSetupError
from pdesolve.constrained.kkt import check_constraints, check_exact, empty_constraints, float64, result_dtype, solve_kkt
from pdesolve.constrained.status import SolveStatus

Residual = Callable[..., Tensor]
"""residual(w [batch, N], *params) -> [batch, m]; sample i of the output depends on sample i only."""
Jacobian = Callable[..., Tensor]
"""jacobian(w [batch, N], *params) -> dr/dw [batch, m, N]."""
Hessian = Callable[..., Tensor]
"""hessian(w [batch, N], *params) -> exact Hessian of 1/2 ||r||^2 in w, [batch, N, N] (no Tikhonov term)."""


@dataclass(frozen=True)
class LevenbergMarquardt:
    """Settings of the nonlinear solve.

    max_iter:  iteration limit; samples not converged by then are reported as such.
    xtol:      stop when an accepted step has ||dw|| <= xtol (xtol + ||w||).
    gtol:      stop when the gradient projected on C w = 0 has max-norm <= gtol.
    damping:   initial mu as a fraction of max diag(J^T J).
    tikhonov:  lambda of the lambda/2 ||w||^2 term (absolute); conditions nearly collinear bases.
    penalty:   None for exact constraints; rho > 0 to add rho/2 ||C w - d||^2 to the objective instead.
    implicit:  True: backward by the implicit function theorem; False: differentiate through the iterations.
    """

    max_iter: int = 50
    xtol: float = 1e-10
    gtol: float = 1e-10
    damping: float = 1e-3
    tikhonov: float = 0.0
    penalty: float | None = None
    implicit: bool = True

    def __post_init__(self) -> None:
        if int(self.max_iter) != self.max_iter or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter}")
        for name in ("xtol", "gtol", "tikhonov"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.damping > 0:
            raise ValueError(f"damping must be > 0, got {self.damping}")
        if self.penalty is not None and not self.penalty > 0:
            raise ValueError(f"penalty must be a positive weight or None (exact constraints), got {self.penalty}")


def forward_jacobian(residual: Residual) -> Jacobian:
    """dr/dw by forward mode: N Jacobian-vector products, vectorized with vmap. Best when N <= m."""

    def jacobian(w: Tensor, *params: Tensor) -> Tensor:
        tangents = _unit_tangents(w)  # [N, batch, N]
        cols = vmap(lambda t: jvp(lambda v: residual(v, *params), (w,), (t,))[1])(tangents)  # [N, batch, m]
        return cols.permute(1, 2, 0)

    return jacobian


def reverse_jacobian(residual: Residual) -> Jacobian:
    """dr/dw by reverse mode: m vector-Jacobian products, vectorized with vmap; O(m^2) for m points."""

    def jacobian(w: Tensor, *params: Tensor) -> Tensor:
        r, pullback = vjp(lambda v: residual(v, *params), w)
        m = r.shape[-1]
        cotangents = torch.eye(m, dtype=r.dtype, device=r.device)[:, None, :].expand(m, *r.shape)
        return vmap(pullback)(cotangents)[0].permute(1, 0, 2)  # [batch, m, N]

    return jacobian


def check_residual(
    residual: Residual,
    w0: Tensor,
    params: Sequence[Tensor],
    *,
    jacobian: Jacobian | None = None,
    hessian: Hessian | None = None,
) -> int:
    """Check that the residual fits the layer; returns m. Cheap: a few residual evaluations.

    The residual must map w [batch, N] to [batch, m] and be differentiable by torch.func to second order
    under vmap (the implicit backward needs the exact Hessian); a given Jacobian must be [batch, m, N], a
    given Hessian [batch, N, N].
    Raises ConstraintSetupError saying what to change. solve_nonlinear calls it on every solve.
    """
    w0, *params = float64(w0, *params)
    try:
        r = residual(w0, *params)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ConstraintSetupError(f"the residual failed on w of shape {tuple(w0.shape)}: {err}") from err
    if not isinstance(r, Tensor) or r.ndim != 2 or r.shape[0] != w0.shape[0]:
        got = tuple(r.shape) if isinstance(r, Tensor) else type(r).__name__
        raise ConstraintSetupError(f"the residual must return [batch, m] with batch={w0.shape[0]}, got {got}")
    gradient = _gradient_fn(residual, 0.0)
    try:  # one Hessian-vector product the way the backward takes N of them: vmap over jvp over vjp
        vmap(lambda t: jvp(lambda v: gradient(v, *params), (w0,), (t,))[1])(torch.ones_like(w0)[None])
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as err:
        raise ConstraintSetupError(
            "the nonlinear residual has no Jacobian path: torch.func could not differentiate it "
            f"(to second order, for the implicit backward): {err}. Write the residual with torch operations "
            "(no numpy, .item() or in-place updates of its inputs; a hand-written jacobian= only speeds up the "
            "iterations, the backward still differentiates the residual), or make the residual linear in w and "
            "use solve_linear"
        ) from err
    if jacobian is not None:
        _expect(jacobian(w0, *params), (*r.shape, w0.shape[1]), "jacobian", "[batch, m, N]")
    if hessian is not None:
        _expect(hessian(w0, *params), (w0.shape[0], w0.shape[1], w0.shape[1]), "hessian", "[batch, N, N]")
    return r.shape[1]


def _expect(x: object, shape: tuple[int, ...], what: str, layout: str) -> Tensor:
    """x itself when it is a tensor of that shape; else a ConstraintSetupError naming the given function."""
    if not isinstance(x, Tensor) or x.shape != shape:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ConstraintSetupError(f"the given {what} must return {layout} = {list(shape)}, got {got}")
    return x


def solve_nonlinear(
    residual: Residual,
    w0: Tensor,
    params: Sequence[Tensor] = (),
    C: Tensor | None = None,
    d: Tensor | None = None,
    *,
    jacobian: Jacobian | None = None,
    hessian: Hessian | None = None,
    options: LevenbergMarquardt = LevenbergMarquardt(),
) -> tuple[Tensor, SolveStatus]:
    """Weights w [batch, N] minimizing 1/2 ||residual(w, *params)||^2 (+ Tikhonov) subject to C w = d.

    w0: [batch, N] starting point (projected onto C w = d first); params: tensors the residual reads,
    each with leading dimension batch, differentiable; C: [batch, p, N]; d: [batch, p].
    jacobian: dr/dw as a function of (w, *params), default forward mode by torch.func.
    hessian: the exact Hessian of 1/2 ||r||^2 for the backward, default forward mode over one
    vector-Jacobian product (see PointwiseResidual for a fast exact one).
    Returns (w, status); w is differentiable with respect to params, C and d.
    """
    if w0.ndim != 2:
        raise ValueError(f"w0 must be [batch, N], got shape {tuple(w0.shape)}")
    batch, n = w0.shape
    check_constraints(C, d, batch, n)
    for i, p in enumerate(params):
        if not isinstance(p, Tensor) or p.ndim < 1 or p.shape[0] != batch:
            got = tuple(p.shape) if isinstance(p, Tensor) else type(p).__name__
            raise ValueError(f"params[{i}] must be a tensor with leading dimension batch={batch}, got {got}")
    check_residual(residual, w0, params)  # given derivatives are checked where they are used
    out = result_dtype(w0, C, d, *params)
    w0, C, d, *params = float64(w0, C, d, *params)
    if C is None or d is None:
        C, d = empty_constraints(w0, batch, n)
    res, jac, hess = residual, jacobian, hessian
    if options.penalty is None:
        check_exact(C.shape[1], n)
        inner_params, C_exact, d_exact = tuple(params), C, d
    else:
        res, jac, hess = _with_penalty(residual, jacobian, hessian, options.penalty)
        inner_params = (C, d, *params)
        C_exact, d_exact = empty_constraints(w0, batch, n)
    if options.implicit:
        w, converged, iterations = _ImplicitLM.apply(res, jac, hess, options, w0, C_exact, d_exact, *inner_params)
    else:
        w, _, converged, iterations = _levenberg_marquardt(res, jac, options, w0, C_exact, d_exact, inner_params)
    with torch.no_grad():
        r = residual(w, *params)
        violation = (torch.einsum("bpn,bn->bp", C, w) - d).abs().amax(-1) if C.shape[1] else w.new_zeros(batch)
        status = SolveStatus(converged, iterations, r.pow(2).mean(-1).sqrt(), violation)
    return w.to(out), status


class _ImplicitLM(torch.autograd.Function):
    """Levenberg-Marquardt forward without a graph; backward by the implicit function theorem."""

    @staticmethod
    def forward(ctx, residual, jacobian, hessian, options, w0, C, d, *params):  # type: ignore[override]
        w, nu, converged, iterations = _levenberg_marquardt(residual, jacobian, options, w0, C, d, params)
        ctx.residual, ctx.hessian, ctx.tikhonov = residual, hessian, options.tikhonov
        ctx.save_for_backward(w, nu, C, d, *params)
        ctx.mark_non_differentiable(converged, iterations)
        return w, converged, iterations

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_w, _grad_converged, _grad_iterations):  # type: ignore[override]
        w, nu, C, d, *params = ctx.saved_tensors
        gradient = _gradient_fn(ctx.residual, ctx.tikhonov)
        needs = ctx.needs_input_grad[5:]  # C, d, *params
        with torch.enable_grad():
            if ctx.hessian is None:
                H = _hessian(gradient, w, params).detach()
            else:
                with torch.no_grad():
                    H = _expect(ctx.hessian(w, *params), (*w.shape, w.shape[-1]), "hessian", "[batch, N, N]")
                    H = H + ctx.tikhonov * torch.eye(w.shape[-1], dtype=w.dtype, device=w.device)
            u, v = solve_kkt(H, C, grad_w, d.new_zeros(d.shape))
            leaves = [x.detach().requires_grad_(need) for x, need in zip((C, d, *params), needs, strict=True)]
            C_, d_, *params_ = leaves
            stationarity = gradient(w, *params_) + torch.einsum("bpn,bp->bn", C_, nu)  # [batch, N]
            feasibility = torch.einsum("bpn,bn->bp", C_, w) - d_  # [batch, p]
            wanted = [x for x in leaves if x.requires_grad]
            found = torch.autograd.grad((stationarity, feasibility), wanted, grad_outputs=(-u, -v), allow_unused=True)
        found = iter(torch.zeros_like(x) if g is None else g for g, x in zip(found, wanted, strict=True))
        return (None, None, None, None, None, *(next(found) if x.requires_grad else None for x in leaves))


def _levenberg_marquardt(
    residual: Residual,
    jacobian: Jacobian | None,
    opt: LevenbergMarquardt,
    w0: Tensor,
    C: Tensor,
    d: Tensor,
    params: Sequence[Tensor],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The iterations; differentiable by autograd when grad mode is on (the unrolled path).

    Returns w [batch, N], multipliers nu [batch, p], converged [batch] bool, iterations [batch] int64.
    """
    jac = jacobian or forward_jacobian(residual)
    lam = opt.tikhonov
    batch, n = w0.shape
    eye = torch.eye(n, dtype=w0.dtype, device=w0.device)
    project = _projector(C)
    w = w0 + project.correction(w0, d)  # feasible start
    r = residual(w, *params)
    cost = _cost(r, w, lam)
    active = torch.ones(batch, dtype=torch.bool, device=w.device)
    converged = torch.zeros_like(active)
    iterations = torch.zeros(batch, dtype=torch.int64, device=w.device)
    mu, growth = None, torch.full((batch,), 2.0, dtype=w.dtype, device=w.device)
    zeros_p = d.new_zeros(d.shape)
    for _ in range(opt.max_iter):
        J = _expect(jac(w, *params), (*r.shape, n), "jacobian", "[batch, m, N]")
        g = torch.einsum("bmn,bm->bn", J, r) + lam * w
        H = J.mT @ J + lam * eye
        if mu is None:
            mu = opt.damping * torch.diagonal(H, dim1=-2, dim2=-1).amax(-1).detach().clamp_min(torch.finfo(w.dtype).tiny)
        stationary = active & (project.tangent(g).abs().amax(-1) <= opt.gtol)
        converged, active = converged | stationary, active & ~stationary
        if not bool(active.any()):
            break
        step, _ = solve_kkt(H + mu[:, None, None] * eye, C, -g, zeros_p)
        w_try = w + step
        r_try = residual(w_try, *params)
        cost_try = _cost(r_try, w_try, lam)
        # a change within the rounding error of the cost counts as no increase (NaN is rejected)
        accept = active & (cost_try <= cost + 64 * torch.finfo(cost.dtype).eps * cost)
        small = step.norm(dim=-1) <= opt.xtol * (opt.xtol + w.norm(dim=-1))
        with torch.no_grad():  # damping update (Nielsen): by how well the quadratic model predicted the decrease
            predicted = -(g * step).sum(-1) - 0.5 * torch.einsum("bi,bij,bj->b", step, H, step)
            gain = torch.where(predicted > 0, (cost - cost_try) / predicted, torch.ones_like(predicted))
            shrink = torch.clamp(1 - (2 * gain - 1) ** 3, min=1 / 3, max=2.0)  # gain <= 0 only from rounding
            mu = torch.where(active, torch.where(accept, mu * shrink, mu * growth), mu)
            growth = torch.where(active, torch.where(accept, torch.full_like(growth, 2.0), growth * 2), growth)
        w = torch.where(accept[:, None], w_try, w)
        r = torch.where(accept[:, None], r_try, r)
        cost = torch.where(accept, cost_try, cost)
        iterations = iterations + active.long()
        done = accept & small
        converged, active = converged | done, active & ~done
        if not bool(active.any()):
            break
    with torch.no_grad():
        J = jac(w, *params)
        g = torch.einsum("bmn,bm->bn", J, r) + lam * w
        nu = project.multipliers(g)
    return w, nu, converged, iterations


def _cost(r: Tensor, w: Tensor, lam: float) -> Tensor:
    """f = 1/2 ||r||^2 + lam/2 ||w||^2 per sample, [batch]."""
    return 0.5 * r.pow(2).sum(-1) + 0.5 * lam * w.pow(2).sum(-1)


class _projector:
    """Projections for the linear constraints C w = d (p may be 0)."""

    def __init__(self, C: Tensor) -> None:
        self.C = C
        # the pseudo-inverse of C C^T: dependent constraint rows (a point shared by two faces, symmetric placements)
        # leave the Gram matrix singular, and the minimum-norm projections stay the right ones
        self.gram_pinv = torch.linalg.pinv(C @ C.mT, hermitian=True)  # [batch, p, p]

    def _solve(self, y: Tensor) -> Tensor:
        return (self.gram_pinv @ y[..., None])[..., 0]

    def correction(self, w: Tensor, d: Tensor) -> Tensor:
        """Smallest dw with C (w + dw) = d, [batch, N]."""
        if self.C.shape[1] == 0:
            return torch.zeros_like(w)
        return torch.einsum("bpn,bp->bn", self.C, self._solve(d - torch.einsum("bpn,bn->bp", self.C, w)))

    def tangent(self, g: Tensor) -> Tensor:
        """g projected onto the null space of C, [batch, N]."""
        if self.C.shape[1] == 0:
            return g
        return g - torch.einsum("bpn,bp->bn", self.C, self._solve(torch.einsum("bpn,bn->bp", self.C, g)))

    def multipliers(self, g: Tensor) -> Tensor:
        """nu with g + C^T nu as small as possible (exactly zero at a KKT point), [batch, p]."""
        if self.C.shape[1] == 0:
            return g.new_zeros(g.shape[0], 0)
        return -self._solve(torch.einsum("bpn,bn->bp", self.C, g))


def _unit_tangents(w: Tensor) -> Tensor:
    """e_j broadcast over the batch, [N, batch, N]."""
    n = w.shape[-1]
    return torch.eye(n, dtype=w.dtype, device=w.device)[:, None, :].expand(n, *w.shape)


def _gradient_fn(residual: Residual, lam: float) -> Callable[..., Tensor]:
    """(w, *params) -> grad_w f [batch, N], differentiable in w and params (torch.func and autograd).

    Always one vector-Jacobian product of the residual, never through a given Jacobian: forward mode over
    a Jacobian built from m products would cost O(m^2 N^2) memory for the Hessian.
    """

    def automatic(w: Tensor, *params: Tensor) -> Tensor:
        # samples are independent, so the gradient of the batch sum is each sample's gradient
        return grad(lambda v: 0.5 * residual(v, *params).pow(2).sum())(w) + lam * w

    return automatic


def _hessian(gradient: Callable[..., Tensor], w: Tensor, params: Sequence[Tensor]) -> Tensor:
    """Exact Hessian of f per sample, [batch, N, N]: forward mode over the gradient."""
    cols = vmap(lambda t: jvp(lambda v: gradient(v, *params), (w,), (t,))[1])(_unit_tangents(w))  # [N, batch, N]
    H = cols.permute(1, 2, 0)
    return 0.5 * (H + H.mT)


def _with_penalty(
    residual: Residual, jacobian: Jacobian | None, hessian: Hessian | None, rho: float
) -> tuple[Residual, Jacobian | None, Hessian | None]:
    """Append sqrt(rho) (C w - d) to the residual; C and d become its first two params."""
    scale = rho**0.5

    def res(w: Tensor, C: Tensor, d: Tensor, *params: Tensor) -> Tensor:
        return torch.cat([residual(w, *params), scale * (torch.einsum("bpn,bn->bp", C, w) - d)], dim=-1)

    def jac(w: Tensor, C: Tensor, d: Tensor, *params: Tensor) -> Tensor:
        return torch.cat([jacobian(w, *params), scale * C], dim=-2)

    def hess(w: Tensor, C: Tensor, d: Tensor, *params: Tensor) -> Tensor:
        return hessian(w, *params) + rho * C.mT @ C  # the appended rows are linear in w

    return res, None if jacobian is None else jac, None if hessian is None else hess
