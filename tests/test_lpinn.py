"""Lagrangian PINN: the chain rule through dX/ds, the map back to a grid, the fit check, and small runs."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import pdesolve as ps
from pdesolve.config import load_run_config
from pdesolve.equations.base import Equation, Parameter
from pdesolve.errors import UserError
from pdesolve.expr import Expression
from pdesolve.nn.jet import Jet
from pdesolve.nn.lagrangian import LagrangianDerivatives, to_grid
from pdesolve.optim import make_optimizer
from pdesolve.problem import Axis, BoundaryCondition, Domain, InitialCondition, Problem
from pdesolve.solvers import SolverMismatch
from pdesolve.solvers.lpinn import LPINN, derivative_order, residuals
from pdesolve.train import TrainSettings, seed_everything, train

PROBLEMS = Path(__file__).resolve().parents[1] / "problems"


def _jets(n: int = 200, seed: int = 0) -> tuple[Jet, Jet]:
    """Coordinate jets ``(t, s)`` carrying d/dt, d/ds and d2/ds2, float64."""
    rng = np.random.default_rng(seed)
    coords = torch.as_tensor(np.stack([rng.uniform(0, 1, n), rng.uniform(0, 2 * math.pi, n)], 1))
    t, s = Jet.variables(coords, 2, slice(1, 2))
    return t, s


# ----------------------------------------------------------------------------- the Jacobian
def test_eulerian_derivatives_through_the_jacobian_match_the_closed_form():
    # u(x, t) = exp(-t) sin(x) seen along the compressing map X = s + 0.8 t sin(s): W(s, t) = u(X(s, t), t)
    t, s = _jets()
    X = s + t * s.sin() * 0.8
    W = (t * -1.0).exp() * X.sin()
    d = LagrangianDerivatives(W, X, t.v)
    e, x = torch.exp(-t.v), X.v
    torch.testing.assert_close(d("u"), e * torch.sin(x), rtol=0, atol=1e-13)
    torch.testing.assert_close(d("u", "x"), e * torch.cos(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(d("u", "x", "x"), -e * torch.sin(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(d("u", "t"), -e * torch.sin(x), rtol=0, atol=1e-12)
    assert d.coord("x") is X.v
    # differentiating by the label instead is wrong wherever dX/ds != 1
    label = LagrangianDerivatives(W, X, t.v, label_derivatives=True)
    assert float((label("u", "x", "x") + e * torch.sin(x)).abs().max()) > 0.1
    with pytest.raises(ValueError, match="got derivative"):
        d("u", "x", "x", "x")


def _problem(equation: str | Equation, params: dict, u0: str, **kw) -> Problem:
    from pdesolve.equations import get_equation

    eq = get_equation(equation) if isinstance(equation, str) else equation
    dom = kw.pop("domain", Domain((Axis("x", 0.0, 2 * math.pi, True),), (0.0, 1.0)))
    return Problem(name="p", equation=eq, params=params, domain=dom, initial=InitialCondition.of({"u": u0}, ("x",), params), **kw)


class ConvectionReaction(Equation):
    """``u_t + beta u_x = rho u (1 - u)``: the logistic reaction carried along characteristics (test-only family)."""

    name = "convection_reaction"
    parameters = {"beta": Parameter(None), "rho": Parameter(None, 0.0)}
    linear = False
    max_space_order = 1

    def forcing(self, d, p):
        u = d("u")
        return (-p["beta"] * d("u", "x") + p["rho"] * u * (1 - u)).unsqueeze(-1)

    def rhs(self, u, grid, p):
        return -p["beta"] * grid.diff(u, grid.space[0].name) + p["rho"] * u * (1 - u)

    def velocity(self, d, p):
        return torch.full_like(d("u"), p["beta"])


@pytest.mark.parametrize("case", ["convection", "convection_diffusion", "burgers_inviscid", "convection_reaction"])
def test_exact_lagrangian_solutions_have_zero_residuals(case):
    """Closed-form characteristics and states make both LPINN residuals and the PDE residual vanish."""
    t, s = _jets()
    if case == "convection":
        p = _problem("convection", {"beta": 40.0}, "sin(x)")
        X, W = s + t * 40.0, s.sin()
    elif case == "convection_diffusion":
        p = _problem("convection_diffusion", {"beta": 3.0, "nu": 0.2}, "sin(x)")
        X, W = s + t * 3.0, (t * -0.2).exp() * s.sin()
    elif case == "burgers_inviscid":  # before the shock (t < 1/max|u0'|): straight characteristics X = s + t u0(s)
        p = _problem("burgers", {"nu": 0.0}, "0.5*sin(x)")
        X, W = s + t * s.sin() * 0.5, s.sin() * 0.5
    else:
        p = _problem(ConvectionReaction(), {"beta": 5.0, "rho": 3.0}, "0.5 + 0.4*sin(x)")
        u0, g = s.sin() * 0.4 + 0.5, (t * 3.0).exp()
        X, W = s + t * 5.0, u0 * g / (1 - u0 + u0 * g)
    r = residuals(p, t, X, W, speed=7.0)
    for key in ("characteristic", "state", "eulerian"):
        assert float(r[key].abs().max()) < 1e-12, key
    assert derivative_order(p) == (2 if case in ("convection_diffusion", "burgers_inviscid") else 1)


def test_burgers_diffusion_uses_the_physical_second_derivative():
    # straight Burgers characteristics compress (X_s = 1 + t u0'); the state residual is then exactly -nu u_xx
    t, s = _jets()
    nu = 0.05
    p = _problem("burgers", {"nu": nu}, "0.5*sin(x)")
    X, W = s + t * s.sin() * 0.5, s.sin() * 0.5
    r = residuals(p, t, X, W)
    xs = 1 + 0.5 * t.v * torch.cos(s.v)
    u_xx = (-0.5 * torch.sin(s.v) * xs - 0.5 * torch.cos(s.v) * (-0.5 * t.v * torch.sin(s.v))) / xs**3
    torch.testing.assert_close(r["state"], -nu * u_xx, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- back onto the grid
def test_map_back_is_exact_when_labels_land_on_grid_points():
    n, period = 64, 2 * math.pi
    x = period * np.arange(n) / n
    labels = period * np.arange(4 * n) / (4 * n)
    shifts = np.array([0.0, 3, 101, -7]) * period / (4 * n)  # whole label cells, wrapping more than once
    positions = labels[None, :] + shifts[:, None] + period * np.array([0, 0, 2, -1])[:, None]
    values = np.sin(labels)[None, :].repeat(4, 0)
    out = to_grid(positions, values, x, 0.0, period, periodic=True)
    np.testing.assert_allclose(out, np.sin(x[None, :] - shifts[:, None]), rtol=0, atol=1e-14)
    # a field linear in x is reproduced exactly from any (unsorted, stretched) bounded labels
    rng = np.random.default_rng(1)
    pos = np.sort(rng.uniform(-0.1, 1.1, (3, 50)), 1)[:, rng.permutation(50)]
    xb = np.linspace(0, 1, 33)
    np.testing.assert_allclose(to_grid(pos, 2 * pos - 1, xb, 0.0, 1.0, periodic=False), np.broadcast_to(2 * xb - 1, (3, 33)), atol=1e-14)


def test_map_back_converges_at_second_order():
    period, x = 2 * math.pi, np.linspace(0, 2 * math.pi, 200, endpoint=False)
    errs, sizes = [], [64, 128, 256, 512]
    for m in sizes:
        s = period * np.arange(m) / m
        X = s + 0.3 * np.sin(s) + 0.37  # a smooth, monotone, not grid-aligned map
        errs.append(np.max(np.abs(to_grid(X[None], np.cos(s)[None], x, 0, period, True)[0] - _invert_then_cos(x))))
    slope = np.polyfit(np.log(sizes), np.log(errs), 1)[0]
    assert -2.2 < slope < -1.8, (slope, errs)


def _invert_then_cos(x: np.ndarray) -> np.ndarray:
    s = x.copy()
    for _ in range(50):  # Newton on s + 0.3 sin s + 0.37 = x (mod 2 pi); the map is monotone
        s -= (s + 0.3 * np.sin(s) + 0.37 - x) / (1 + 0.3 * np.cos(s))
    return np.cos(s)


# ----------------------------------------------------------------------------- the pieces fit
def test_lpinn_refuses_a_problem_without_transport(tmp_path):
    cfg = load_run_config(PROBLEMS / "heat.yaml")
    with pytest.raises(SolverMismatch, match=r"'heat' has no transport term .*use solver 'pinn'"):
        LPINN(cfg.problem, LPINN.Options(), torch.device("cpu"))
    with pytest.raises(UserError, match="no transport term"):
        ps.solve(PROBLEMS / "heat.yaml", "lpinn", steps=1, out=tmp_path / "h", quiet=True, device="cpu")
    kdv = _problem("kdv", {"delta": 0.01}, "sin(x)")
    assert any("order 3" in m for m in LPINN.mismatches(kdv))


def test_bounded_walls_inflow_and_outflow_are_told_apart():
    dom = Domain((Axis("x", 0.0, 1.0),), (0.0, 1.0))
    inflow = BoundaryCondition("dirichlet", "x", "lo", Expression.parse("sin(-2*pi*t)", ("t", "x")))
    p = _problem("convection", {"beta": 1.0}, "sin(2*pi*x)", domain=dom, boundary=(inflow,))
    assert LPINN.mismatches(p) == []
    no_data = _problem("convection", {"beta": 1.0}, "sin(2*pi*x)", domain=dom)
    assert any("x.lo but it has no Dirichlet condition" in m for m in LPINN.mismatches(no_data))
    backwards = _problem("convection", {"beta": -1.0}, "sin(2*pi*x)", domain=dom, boundary=(inflow,))
    assert any("x.hi but it has no Dirichlet" in m for m in LPINN.mismatches(backwards))


# ----------------------------------------------------------------------------- training
def _fit(problem: Problem, options: dict, adam: int, lbfgs: int, seed: int = 0) -> LPINN:
    seed_everything(seed)
    solver = LPINN(problem, LPINN.Options.model_validate(options), torch.device("cpu"))
    rule = make_optimizer("adam_lbfgs", {"adam_steps": adam, "lr": 5e-3}, adam + lbfgs)
    result = train(solver.task(lambda: {}), rule, TrainSettings(steps=adam + lbfgs, quiet=True))
    assert result.status.ok, result.status
    return solver


def test_small_run_learns_straight_characteristics_at_beta_30():
    cfg = load_run_config(PROBLEMS / "convection_beta30.yaml")
    # at rest (the default frame) the position branch starts still and must learn all of the motion
    solver = _fit(cfg.problem, {"width": 20, "depth": 2, "points": {"interior": 400}, "frame": "rest"}, adam=300, lbfgs=150)
    grid = cfg.problem.domain.grid({"t": 51, "x": 128})
    from pdesolve.metrics import relative_l2
    from pdesolve.reference import reference_solution

    err = relative_l2(solver.predict(grid).numpy()[0], reference_solution(cfg.problem, grid))
    assert err < 1e-2, err
    s = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    X, W = solver.lagrangian(grid.coords("t"), [s])
    drift = np.abs(X - (s[None, :] + 30.0 * grid.coords("t")[:, None]))
    assert drift.max() < 3e-2, drift.max()  # X = x0 + beta t, to a small fraction of the 30-unit travel
    np.testing.assert_allclose(W[0], np.sin(s), atol=1e-6)  # the start is exact


def test_inflow_wall_carries_its_data_in():
    # inviscid Burgers on [0, 1], u = 1 entering at x = 0 over u0 = 1 + 0.2 x (a fan, no shock): characteristics
    # from the wall carry 1 along X = tau + (t - tau); those from x0 carry u0(x0) along X = x0 + t u0(x0)
    dom = Domain((Axis("x", 0.0, 1.0),), (0.0, 1.0))
    inflow = BoundaryCondition("dirichlet", "x", "lo", Expression.parse("1", ("t", "x")))
    p = _problem("burgers", {"nu": 0.0}, "1 + 0.2*x", domain=dom, boundary=(inflow,))
    solver = _fit(p, {"width": 20, "depth": 2, "points": {"interior": 400}}, adam=300, lbfgs=100)
    assert [f.label for f in solver.chars.families] == ["initial", "inflow@lo"]
    assert solver.chars.speed == pytest.approx(1.2, rel=1e-3)
    grid = dom.grid({"t": 21, "x": 41})
    u = solver.predict(grid).numpy()[0, :, 0]
    m = grid.mesh()
    exact = np.where(m["x"] <= m["t"], 1.0, 1 + 0.2 * (m["x"] - m["t"]) / (1 + 0.2 * m["t"]))
    assert np.abs(u - exact).max() < 2e-2, np.abs(u - exact).max()


def test_conservation_loss_is_offered_only_where_the_total_is_conserved():
    from pdesolve.solvers.lpinn import conserves

    shock = load_run_config(PROBLEMS / "burgers_shock_periodic.yaml").problem
    reaction = load_run_config(PROBLEMS / "reaction.yaml").problem
    assert conserves(shock) and not conserves(reaction)
    opts = LPINN.Options.model_validate({"conservation": {"weight": 1.0, "times": 4, "labels": 64}})
    solver = LPINN(shock, opts, torch.device("cpu"), torch.float64)
    task = solver.task(lambda: {})
    # at the start the characteristics keep their spacing and values, so int W X_s ds is the initial total
    np.testing.assert_allclose(task.totals().detach().numpy(), 0.5 * 2 * np.pi, rtol=1e-12)
    assert task.loss()[1]["conservation"] < 1e-24
    with pytest.raises(SolverMismatch, match="does not keep int u dx"):
        LPINN(_problem(ConvectionReaction(), {"beta": 1.0, "rho": 1.0}, "0.5"), opts, torch.device("cpu"))


def test_run_folder_holds_the_characteristics_figure(tmp_path):
    """``pdesolve solve --solver lpinn`` writes the learned characteristics beside the standard figures."""
    import pdesolve as ps

    run = ps.solve(PROBLEMS / "convection_beta10.yaml", "lpinn", steps=3, out=tmp_path / "run", quiet=True, device="cpu",
                   overrides=["solvers.lpinn.points.interior=64", "evaluate.grid.x=32", "evaluate.grid.t=9"])
    figure = run.run_dir / "characteristics.png"
    assert figure.stat().st_size > 1000
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mean_frame_starts_characteristics_at_the_mean_initial_speed():
    from pdesolve.solvers.characteristics import Characteristics

    problem = load_run_config(PROBLEMS / "burgers_shock_periodic.yaml").problem  # u0 = sin x + 0.5: mean speed 0.5
    mean = Characteristics(problem, "mean")
    assert mean.families[0].drift * mean.speed == pytest.approx(0.5, abs=1e-9)
    assert Characteristics(problem).families[0].drift == 0.0


def _lpinn_task(options: dict, problem_file: str = "convection_beta30.yaml", seed: int = 0):
    cfg = load_run_config(PROBLEMS / problem_file)
    seed_everything(seed)
    solver = LPINN(cfg.problem, LPINN.Options.model_validate({"width": 16, "depth": 2, "points": {"interior": 256}, **options}),
                   torch.device("cpu"))
    return solver, solver.task(lambda: {})


def test_causal_weights_on_lpinn_weigh_both_residuals_by_the_earlier_chunks():
    """Wang, Sankaran, Perdikaris 2022 on the two-branch residual: chunk i of each term weighted by
    exp(-eps * sum over earlier chunks of both terms' mean squares)."""
    _, task = _lpinn_task({"causal": {"chunks": 4, "tolerances": [2.0]}})
    loss, record = task.loss()
    r = task.residuals(task.points)
    t = torch.cat([g[:, 0] for g in task.points])
    chunk = ((t - 0.0) / 0.25).floor().long().clamp(0, 3)
    per = torch.stack([torch.stack([(r[k][chunk == i] ** 2).mean() for k in ("characteristic", "state")]) for i in range(4)])
    total = per.sum(1)
    w = torch.exp(-2.0 * (torch.cumsum(total, 0) - total))
    expected = (w[:, None] * per).mean(0)
    torch.testing.assert_close(loss, expected.sum())
    assert record["causal_eps"] == 2.0 and record["causal_min_weight"] == pytest.approx(float(w.min()))
    _, plain = _lpinn_task({})  # off: the plain means over all points, at the same points and weights
    assert float(plain.loss()[0]) == pytest.approx(float(sum((r[k] ** 2).mean() for k in ("characteristic", "state"))),
                                                   rel=1e-6)


def test_lpinn_with_causal_and_adaptive_weights_resumes_exactly(tmp_path):
    options = {"causal": {"chunks": 4, "tolerances": [0.1, 1.0], "threshold": 0.5},
               "adaptive_weights": {"method": "grad_norm", "every": 2}, "points": {"interior": 256, "resample_every": 3}}

    def run(steps, ckpt, resume=False):  # with diffusion, so that both residuals have gradients to balance
        _, task = _lpinn_task(options, "convection_diffusion_lpinn.yaml")
        rule = make_optimizer("adam", {"lr": 1e-3}, 6)
        return train(task, rule, TrainSettings(steps=steps, log_every=1, quiet=True, checkpoint_every=3), checkpoint=ckpt,
                     resume=resume)

    whole = run(6, tmp_path / "a.pt")
    run(3, tmp_path / "b.pt")
    resumed = run(6, tmp_path / "b.pt", resume=True)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
    last = whole.history[-1]
    assert {"causal_eps", "causal_min_weight", "weight_characteristic", "weight_state"} <= set(last)
    assert last["weight_characteristic"] != 1.0 and last["weight_state"] != 1.0  # the gradient norms moved the weights
    assert max(last["weight_characteristic"], last["weight_state"]) < 1e6
