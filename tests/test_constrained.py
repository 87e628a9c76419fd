"""The differentiable constrained least-squares layer: exactness, gradients, constraints, inequalities.

References are independent of the code under test: torch.linalg.lstsq, a null-space solve in numpy/scipy,
finite differences (gradcheck), spectral accuracy on a Poisson problem with a closed form, cvxpy with the
Clarabel interior-point solver, and the unrolled iterations for the implicit backward.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.linalg
import torch
from numpy.polynomial import chebyshev

from pdesolve.constrained import (
    ConstrainedLeastSquares,
    ConstraintSetupError,
    ConvexLeastSquares,
    LevenbergMarquardt,
    PointwiseResidual,
    bounds_as_inequalities,
    check_residual,
    forward_jacobian,
    reverse_jacobian,
    solve_linear,
    solve_nonlinear,
)

F64 = torch.float64


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=F64)


def _linear_system(seed: int = 0, batch: int = 3, m: int = 20, n: int = 6, p: int = 2):
    gen = torch.Generator().manual_seed(seed)
    return _rand(gen, batch, m, n), _rand(gen, batch, m), _rand(gen, batch, p, n), _rand(gen, batch, p)


def _chebyshev(x: np.ndarray, n: int, order: int) -> torch.Tensor:
    """Values of T_0..T_{n-1} (or their derivatives) at x, [len(x), n]."""
    eye = np.eye(n)
    cols = [chebyshev.chebval(x, chebyshev.chebder(eye[k], order) if order else eye[k]) for k in range(n)]
    return torch.tensor(np.stack(cols, axis=-1), dtype=F64)


# ---------------------------------------------------------------------------------------------- linear


def test_unconstrained_equals_torch_lstsq():
    A, b, _, _ = _linear_system(m=40, n=8)
    w, status = solve_linear(A, b)
    expected = torch.linalg.lstsq(A, b[..., None]).solution[..., 0]
    assert torch.allclose(w, expected, rtol=1e-10, atol=1e-12)
    assert status.all_converged
    rms = (torch.einsum("bmn,bn->bm", A, expected) - b).pow(2).mean(-1).sqrt()
    assert torch.allclose(status.residual, rms, rtol=1e-10)


def test_tikhonov_equals_stacked_lstsq():
    A, b, _, _ = _linear_system(m=15, n=6)
    lam = 0.3
    w, _ = solve_linear(A, b, tikhonov=lam)
    rows = torch.cat([A, lam**0.5 * torch.eye(6, dtype=F64).expand(3, 6, 6)], dim=1)
    rhs = torch.cat([b, torch.zeros(3, 6, dtype=F64)], dim=1)
    assert torch.allclose(w, torch.linalg.lstsq(rows, rhs[..., None]).solution[..., 0], rtol=1e-10, atol=1e-12)


def test_equality_constraints_exact_and_optimal():
    """Compare with the null-space method: w = w_p + Z y, y from an unconstrained lstsq (scipy)."""
    A, b, C, d = _linear_system(m=25, n=7, p=3)
    w, status = solve_linear(A, b, C, d)
    assert status.constraint_violation.max() < 1e-12
    for i in range(A.shape[0]):
        Ai, bi, Ci, di = (x[i].numpy() for x in (A, b, C, d))
        w_p = np.linalg.lstsq(Ci, di, rcond=None)[0]
        Z = scipy.linalg.null_space(Ci)
        y = np.linalg.lstsq(Ai @ Z, bi - Ai @ w_p, rcond=None)[0]
        np.testing.assert_allclose(w[i].numpy(), w_p + Z @ y, rtol=1e-9, atol=1e-11)


def test_linear_gradcheck_exact_and_penalty():
    A, b, C, d = (x.requires_grad_() for x in _linear_system(batch=2, m=7, n=4, p=2))
    assert torch.autograd.gradcheck(lambda *x: solve_linear(*x)[0], (A, b, C, d))
    assert torch.autograd.gradcheck(lambda *x: solve_linear(*x, tikhonov=0.1, penalty=5.0)[0], (A, b, C, d))


def test_penalty_rows_converge_to_exact_constraints_at_rate_one_over_rho():
    A, b, C, d = _linear_system(m=30, n=6, p=2)
    exact, _ = solve_linear(A, b, C, d)
    rhos = np.array([1e2, 1e3, 1e4, 1e5])
    errors = [float((solve_linear(A, b, C, d, penalty=float(r))[0] - exact).norm()) for r in rhos]
    slope = np.polyfit(np.log(rhos), np.log(errors), 1)[0]
    assert abs(slope + 1) < 0.05, (slope, errors)


def test_poisson_with_chebyshev_basis_is_spectrally_accurate():
    """-u'' = pi^2 sin(pi x) on [-1, 1], u(+-1) = 0: u = sin(pi x); 20 Chebyshev modes give ~1e-12."""
    n, m = 20, 60
    x = np.cos(np.pi * (np.arange(m) + 0.5) / m)
    A = -_chebyshev(x, n, 2)[None]
    b = torch.tensor(np.pi**2 * np.sin(np.pi * x), dtype=F64)[None]
    C = _chebyshev(np.array([-1.0, 1.0]), n, 0)[None]
    w, status = solve_linear(A, b, C, torch.zeros(1, 2, dtype=F64))
    xs = np.linspace(-1, 1, 201)
    u = _chebyshev(xs, n, 0) @ w[0]
    assert np.abs(u.numpy() - np.sin(np.pi * xs)).max() < 1e-10
    assert status.constraint_violation.max() < 1e-13


def test_float32_in_float32_out_with_float64_accuracy():
    A, b, C, d = _linear_system(m=30, n=6, p=2)
    w64, _ = solve_linear(A, b, C, d)
    w32, _ = solve_linear(A.float(), b.float(), C.float(), d.float())
    assert w32.dtype == torch.float32
    # float32 inputs rounded once (relative 6e-8), then solved in float64: error stays at input rounding
    assert (w32.double() - w64).abs().max() / w64.abs().max() < 1e-5


def test_dependent_constraint_rows_still_solve():
    """Repeated (here: negated) condition rows make the KKT matrix singular; the solve falls back to its
    quasi-definite neighbour and gives the solution of the independent rows, with finite gradients."""
    A, b, C, d = _linear_system(m=20, n=5, p=2)
    w_ref, _ = solve_linear(A, b, C, d)
    C3 = torch.cat([C, -C[:, :1]], 1).requires_grad_()
    d3 = torch.cat([d, -d[:, :1]], 1)
    w, status = solve_linear(A, b, C3, d3)
    torch.testing.assert_close(w, w_ref, rtol=1e-7, atol=1e-9)
    assert float(status.constraint_violation.max()) < 1e-8
    (g,) = torch.autograd.grad(w.sum(), C3)
    assert torch.isfinite(g).all()


def test_linear_refuses_bad_shapes_and_too_many_constraints():
    A, b, C, d = _linear_system(m=10, n=3, p=2)
    with pytest.raises(ValueError, match=r"b must be \[batch, m\]"):
        solve_linear(A, b[:, :5])
    with pytest.raises(ValueError, match="give both C and d"):
        solve_linear(A, b, C)
    C4, d4 = torch.randn(3, 4, 3, dtype=F64), torch.randn(3, 4, dtype=F64)
    with pytest.raises(ValueError, match="need p <= N"):
        solve_linear(A, b, C4, d4)


# ------------------------------------------------------------------------------------------- nonlinear

NU = 0.1


def burgers_residual(w, B, Bx, Bxx, f):
    """Steady viscous Burgers u u_x - nu u_xx - f at m points, u = B w; [batch, m]."""
    u = torch.einsum("bmn,bn->bm", B, w)
    ux = torch.einsum("bmn,bn->bm", Bx, w)
    uxx = torch.einsum("bmn,bn->bm", Bxx, w)
    return u * ux - NU * uxx - f


def _burgers(batch: int, m: int, n: int, noise: float, seed: int = 0):
    """Chebyshev basis (perturbed per sample, like a network's), forcing from w* plus noise, u(+-1) from w*."""
    gen = torch.Generator().manual_seed(seed)
    x = np.cos(np.pi * (np.arange(m) + 0.5) / m)
    basis = [(_chebyshev(x, n, k)[None] * (1 + 0.05 * _rand(gen, batch, 1, n))) for k in range(3)]
    w_star = 0.5 * _rand(gen, batch, n)
    f = burgers_residual(w_star, *basis, torch.zeros(batch, m, dtype=F64)) + noise * _rand(gen, batch, m)
    C = _chebyshev(np.array([-1.0, 1.0]), n, 0).expand(batch, 2, n).clone()
    d = torch.einsum("bpn,bn->bp", C, w_star)
    return w_star, (*basis, f), C, d


def test_nonlinear_recovers_manufactured_solution():
    w_star, params, C, d = _burgers(batch=4, m=30, n=8, noise=0.0)
    w, status = solve_nonlinear(burgers_residual, torch.zeros_like(w_star), params, C, d)
    assert status.all_converged and int(status.iterations.max()) < 30
    assert (w - w_star).abs().max() < 1e-10
    assert status.residual.max() < 1e-10 and status.constraint_violation.max() < 1e-12


def test_nonlinear_linear_residual_equals_kkt_solve():
    A, b, C, d = _linear_system(m=20, n=5, p=2)
    w_lin, _ = solve_linear(A, b, C, d)

    def residual(w, A, b):
        return torch.einsum("bmn,bn->bm", A, w) - b

    w, status = solve_nonlinear(residual, torch.zeros(3, 5, dtype=F64), (A, b), C, d)
    assert torch.allclose(w, w_lin, rtol=1e-10, atol=1e-12)
    # damped steps (mu starts at 1e-3 max diag J^T J, /3 per accepted step) each cut the error by ~mu / sigma^2
    assert status.all_converged and int(status.iterations.max()) < 10


def test_nonlinear_gradcheck_with_nonzero_residual():
    """A residual that does not vanish at the solution: the backward needs the full Hessian, not J^T J."""
    _, params, C, d = _burgers(batch=2, m=9, n=5, noise=0.3, seed=1)
    inputs = tuple(x.clone().requires_grad_() for x in (*params, C, d))
    opts = LevenbergMarquardt(max_iter=200, xtol=1e-14, gtol=1e-13)

    def solve(B, Bx, Bxx, f, C, d):
        return solve_nonlinear(burgers_residual, torch.zeros(2, 5, dtype=F64), (B, Bx, Bxx, f), C, d, options=opts)[0]

    # the forward converges linearly (nonzero residual) to ~1e-11, so a finite-difference step of 1e-6 would
    # see solver noise of 1e-5; at 1e-4 the central difference is accurate to ~1e-6 (O(eps^2))
    assert torch.autograd.gradcheck(solve, inputs, eps=1e-4, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_gauss_newton_hessian_alone_would_fail_gradcheck():
    """Guards the previous test's meaning: with noise the second-order term changes the gradient."""
    _, params, C, d = _burgers(batch=2, m=9, n=5, noise=0.3, seed=1)
    f = params[3].clone().requires_grad_()
    w, _ = solve_nonlinear(burgers_residual, torch.zeros(2, 5, dtype=F64), (*params[:3], f), C, d)
    (g_exact,) = torch.autograd.grad(w.sum(), f)
    J = forward_jacobian(burgers_residual)(w.detach(), *params[:3], f.detach())
    # implicit gradient with H ~ J^T J: dw/df = (J^T J)^{-1} J^T on the constraint null space
    u, _ = _kkt(J.mT @ J, C, torch.ones_like(w))
    g_gn = torch.einsum("bmn,bn->bm", J, u)
    assert (g_gn - g_exact).abs().max() > 1e-3 * g_exact.abs().max()


def _kkt(H, C, g):
    from pdesolve.constrained.kkt import solve_kkt

    return solve_kkt(H, C, g, torch.zeros(C.shape[:2], dtype=F64))


def test_implicit_backward_equals_unrolled_backward():
    """Differentiating through 60 iterations gives the implicit gradient to ~1e-14 (1e-10 at worst over seeds).

    The unrolled reference is only as converged as its last accepted steps: at the rounding floor the
    damping grows on rejected steps and freezes the unrolled derivative, hence the 1e-9 bound.
    """
    _, params, C, d = _burgers(batch=3, m=24, n=7, noise=0.05, seed=2)
    inputs = [x.clone().requires_grad_() for x in (*params, C, d)]
    w0 = torch.zeros(3, 7, dtype=F64)
    weights = _rand(torch.Generator().manual_seed(5), 3, 7)
    grads = {}
    for implicit in (True, False):
        opts = LevenbergMarquardt(max_iter=60, xtol=0.0, gtol=0.0, implicit=implicit)  # unrolled: run all 60
        w, _ = solve_nonlinear(burgers_residual, w0, inputs[:4], inputs[4], inputs[5], options=opts)
        grads[implicit] = torch.autograd.grad((w * weights).sum(), inputs)
    for g_imp, g_unr in zip(grads[True], grads[False], strict=True):
        assert (g_imp - g_unr).abs().max() <= 1e-9 * g_unr.abs().max()


def _saved_bytes(output: torch.Tensor) -> int:
    """Bytes of the tensors the autograd graph behind output keeps for its backward."""
    total, seen, stack = 0, set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        saved = [getattr(node, name) for name in dir(node) if name.startswith("_saved_")]
        saved += list(getattr(node, "saved_tensors", ()))  # custom autograd Functions
        for x in saved:
            for t in x if isinstance(x, tuple | list) else (x,):
                if isinstance(t, torch.Tensor):
                    total += t.numel() * t.element_size()
        stack.extend(fn for fn, _ in node.next_functions)
    return total


def test_implicit_memory_does_not_grow_with_iterations():
    """What autograd keeps for the backward: constant for the implicit path, growing when unrolled."""
    _, params, C, d = _burgers(batch=2, m=16, n=6, noise=0.1, seed=3)
    inputs = [x.clone().requires_grad_() for x in params]

    def saved_bytes(max_iter: int, implicit: bool) -> int:
        opts = LevenbergMarquardt(max_iter=max_iter, xtol=0.0, gtol=0.0, implicit=implicit)
        w, _ = solve_nonlinear(burgers_residual, torch.zeros(2, 6, dtype=F64), inputs, C, d, options=opts)
        return _saved_bytes(w)

    assert saved_bytes(5, True) == saved_bytes(40, True)
    assert saved_bytes(40, False) > 5 * saved_bytes(5, True)


def test_jacobian_paths_agree():
    w_star, params, C, d = _burgers(batch=2, m=12, n=5, noise=0.1)
    assert torch.allclose(forward_jacobian(burgers_residual)(w_star, *params), reverse_jacobian(burgers_residual)(w_star, *params))

    def given(w, B, Bx, Bxx, f):  # d(u u_x - nu u_xx)/dw by hand
        u, ux = torch.einsum("bmn,bn->bm", B, w), torch.einsum("bmn,bn->bm", Bx, w)
        return B * ux[..., None] + u[..., None] * Bx - NU * Bxx

    f = params[3].clone().requires_grad_()
    results = []
    for jac in (None, given):
        w, _ = solve_nonlinear(burgers_residual, torch.zeros(2, 5, dtype=F64), (*params[:3], f), C, d, jacobian=jac)
        results.append((w, torch.autograd.grad(w.pow(2).sum(), f)[0]))
    assert torch.allclose(results[0][0], results[1][0], rtol=1e-10, atol=1e-12)
    assert torch.allclose(results[0][1], results[1][1], rtol=1e-8, atol=1e-10)


BURGERS_POINTWISE = PointwiseResidual(lambda f, forcing: f[:, 0] * f[:, 1] - NU * f[:, 2] - forcing)


def test_pointwise_jacobian_and_hessian_are_exact():
    """Against torch.autograd.functional on each sample of 1/2 ||r||^2 (a nonzero residual)."""
    w_star, (B, Bx, Bxx, f), C, d = _burgers(batch=2, m=10, n=5, noise=0.3)
    D = torch.stack([B, Bx, Bxx], dim=1)
    w = w_star + 0.1
    r = BURGERS_POINTWISE(w, D, f)
    assert torch.allclose(r, burgers_residual(w, B, Bx, Bxx, f), rtol=1e-13, atol=1e-13)
    J = BURGERS_POINTWISE.jacobian(w, D, f)
    H = BURGERS_POINTWISE.hessian(w, D, f)
    for i in range(2):

        def sample(v, i=i):
            return burgers_residual(v[None], B[i : i + 1], Bx[i : i + 1], Bxx[i : i + 1], f[i : i + 1])[0]

        assert torch.allclose(J[i], torch.autograd.functional.jacobian(sample, w[i]), rtol=1e-12, atol=1e-12)
        H_ref = torch.autograd.functional.hessian(lambda v, sample=sample: 0.5 * sample(v).pow(2).sum(), w[i])
        assert torch.allclose(H[i], H_ref, rtol=1e-12, atol=1e-10)


def test_pointwise_derivatives_give_the_same_solution_and_gradients():
    _, (B, Bx, Bxx, f), C, d = _burgers(batch=2, m=16, n=6, noise=0.1, seed=4)
    inputs = [x.clone().requires_grad_() for x in (B, Bx, Bxx, f, C, d)]
    weights = _rand(torch.Generator().manual_seed(1), 2, 6)
    results = []
    for structured in (False, True):
        for penalty in (None, 1e3):
            opts = LevenbergMarquardt(penalty=penalty)
            if structured:
                D = torch.stack(inputs[:3], dim=1)
                res, params = BURGERS_POINTWISE, (D, inputs[3])
                derivs = {"jacobian": res.jacobian, "hessian": res.hessian}
            else:
                res, params, derivs = burgers_residual, inputs[:4], {}
            w, status = solve_nonlinear(res, torch.zeros(2, 6, dtype=F64), params, *inputs[4:], options=opts, **derivs)
            assert status.all_converged
            results.append((w, torch.autograd.grad((w * weights).sum(), inputs)))
    for (w_gen, g_gen), (w_str, g_str) in ((results[0], results[2]), (results[1], results[3])):
        assert torch.allclose(w_gen, w_str, rtol=1e-10, atol=1e-12)
        for a, b in zip(g_gen, g_str, strict=True):
            assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)


def test_nonlinear_penalty_approaches_exact_constraints():
    """Started at the exact solution, the penalized minimizer moves away from it by O(1/rho)."""
    w_star, params, C, d = _burgers(batch=2, m=20, n=6, noise=0.1)
    exact, _ = solve_nonlinear(burgers_residual, torch.zeros_like(w_star), params, C, d)
    rhos = np.array([1e2, 1e3, 1e4, 1e5])
    errors, violations = [], []
    for rho in rhos:
        opts = LevenbergMarquardt(penalty=float(rho), max_iter=200)
        w, status = solve_nonlinear(burgers_residual, exact, params, C, d, options=opts)
        assert status.all_converged
        errors.append(float((w - exact).abs().max()))
        violations.append(float(status.constraint_violation.max()))
    assert abs(np.polyfit(np.log(rhos), np.log(errors), 1)[0] + 1) < 0.1, errors
    assert abs(np.polyfit(np.log(rhos), np.log(violations), 1)[0] + 1) < 0.1, violations


def test_nonlinear_float32_in_float32_out():
    w_star, params, C, d = _burgers(batch=2, m=20, n=6, noise=0.0)
    # started inside the basin of w*: from zero, sample 0 of this draw ends in a local minimum (residual 0.58) on
    # some CPUs (AVX2 MKL) and not on others, in float64 as well; that is the problem's, not the dtype's
    start = 0.5 * w_star
    w64, _ = solve_nonlinear(burgers_residual, start, params, C, d)
    w32, status = solve_nonlinear(burgers_residual, start.float(), [p.float() for p in params], C.float(), d.float())
    assert w32.dtype == torch.float32 and status.all_converged
    assert (w32.double() - w64).abs().max() < 1e-5 * w64.abs().max()


def test_status_reports_unconverged_samples():
    w_star, params, C, d = _burgers(batch=3, m=20, n=6, noise=0.0)
    _, status = solve_nonlinear(burgers_residual, torch.zeros_like(w_star), params, C, d, options=LevenbergMarquardt(max_iter=1))
    assert not status.converged.any() and status.iterations.tolist() == [1, 1, 1]
    assert "0/3 converged" in status.summary() and "raise max_iter" in status.summary()
    assert status.as_dict()["converged_fraction"] == 0.0


def test_residual_without_jacobian_path_is_refused():
    w_star, params, C, d = _burgers(batch=2, m=10, n=4, noise=0.0)

    def numpy_residual(w, B, Bx, Bxx, f):
        return torch.from_numpy(burgers_residual(w, B, Bx, Bxx, f).numpy())

    with pytest.raises(ConstraintSetupError, match="no Jacobian path"):
        check_residual(numpy_residual, w_star, params)
    with pytest.raises(ConstraintSetupError, match="no Jacobian path"):
        solve_nonlinear(numpy_residual, w_star, params, C, d)
    with pytest.raises(ConstraintSetupError, match=r"\[batch, m\]"):
        check_residual(lambda w, *p: w.sum(), w_star, params)
    with pytest.raises(ConstraintSetupError, match="given jacobian"):
        check_residual(burgers_residual, w_star, params, jacobian=lambda w, *p: torch.zeros(2, 10, dtype=F64))
    with pytest.raises(ConstraintSetupError, match="given hessian"):
        check_residual(burgers_residual, w_star, params, hessian=lambda w, *p: torch.zeros(2, 4, dtype=F64))
    with pytest.raises(ConstraintSetupError, match="given jacobian"):
        solve_nonlinear(burgers_residual, w_star, params, C, d, jacobian=lambda w, *p: torch.zeros(2, 10, dtype=F64))
    assert check_residual(burgers_residual, w_star, params) == 10


# ---------------------------------------------------------------------------------------------- convex


def _bounded_problem(batch: int = 2, m: int = 24, n: int = 6, q: int = 15):
    """Fit data that overshoots [0, 1]; u = B w must stay in [0, 1] at q points, u(-1) = 0.2 exactly."""
    gen = torch.Generator().manual_seed(7)
    x = np.linspace(-1, 1, m)
    A = _chebyshev(x, n, 0).expand(batch, m, n).clone()
    b = torch.tensor(1.3 * np.exp(-4 * x**2), dtype=F64) + 0.05 * _rand(gen, batch, m)
    B_points = _chebyshev(np.linspace(-1, 1, q), n, 0).expand(batch, q, n).clone()
    C = _chebyshev(np.array([-1.0]), n, 0).expand(batch, 1, n).clone()
    return A, b, C, torch.full((batch, 1), 0.2, dtype=F64), B_points


def test_convex_path_respects_bounds_and_matches_an_interior_point_reference():
    import cvxpy as cp

    A, b, C, d, B_points = _bounded_problem()
    G, h = bounds_as_inequalities(B_points, 0.0, 1.0)
    layer = ConstrainedLeastSquares(inequalities=True, tolerance=1e-9)
    w, status = layer(A, b, C, d, G, h)
    u = torch.einsum("bqn,bn->bq", B_points, w)
    assert u.min() >= -1e-7 and u.max() <= 1 + 1e-7
    assert status.all_converged and status.constraint_violation.max() < 1e-7
    free, _ = solve_linear(A, b, C, d)
    assert torch.einsum("bqn,bn->bq", B_points, free).max() > 1.05  # the bound is active, not decorative
    for i in range(A.shape[0]):
        v = cp.Variable(A.shape[2])
        Bi = B_points[i].numpy()
        cons = [C[i].numpy() @ v == d[i].numpy(), Bi @ v <= 1, Bi @ v >= 0]
        cp.Problem(cp.Minimize(cp.sum_squares(A[i].numpy() @ v - b[i].numpy())), cons).solve(solver=cp.CLARABEL)
        np.testing.assert_allclose(w[i].numpy(), v.value, atol=1e-6)


def test_convex_gradients_match_kkt_on_the_active_set():
    """With the active bounds turned into equalities, the KKT layer gives the exact gradient."""
    A, b, C, d, B_points = _bounded_problem()
    G, h = bounds_as_inequalities(B_points, 0.0, 1.0)
    b1 = b.clone().requires_grad_()
    w, _ = ConvexLeastSquares(A.shape[2], 1, G.shape[1], tolerance=1e-10)(A, b1, C, d, G, h)
    weights = _rand(torch.Generator().manual_seed(3), *w.shape)
    (g_convex,) = torch.autograd.grad((w * weights).sum(), b1)
    slack = h - torch.einsum("bqn,bn->bq", G, w.detach())
    for i in range(A.shape[0]):
        active = slack[i] < 1e-6
        assert 0 < int(active.sum()) < A.shape[2] - 1
        C_act = torch.cat([C[i], G[i][active]])[None]
        d_act = torch.cat([d[i], h[i][active]])[None]
        bi = b[i : i + 1].clone().requires_grad_()
        w_act, _ = solve_linear(A[i : i + 1], bi, C_act, d_act)
        assert torch.allclose(w_act[0], w[i].detach(), atol=1e-6)
        (g_kkt,) = torch.autograd.grad((w_act * weights[i]).sum(), bi)
        assert (g_convex[i] - g_kkt[0]).abs().max() < 1e-5 * g_kkt.abs().max()


def test_inequalities_without_cvxpylayers_are_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "cvxpylayers.torch", None)  # import now raises ImportError
    with pytest.raises(ConstraintSetupError, match="pip install cvxpylayers"):
        ConstrainedLeastSquares(inequalities=True)
    ConstrainedLeastSquares()  # equality-only problems never need it


def test_layer_uses_kkt_without_inequalities_and_refuses_undeclared_ones():
    A, b, C, d = _linear_system()
    layer = ConstrainedLeastSquares(tikhonov=1e-12)
    w, status = layer(A, b, C, d)
    assert torch.allclose(w, solve_linear(A, b, C, d, tikhonov=1e-12)[0])
    G, h = bounds_as_inequalities(A[:, :4], 0.0, 1.0)
    with pytest.raises(ValueError, match="inequalities=True"):
        layer(A, b, C, d, G, h)
