"""The automatic exact transform really satisfies the initial condition and the Dirichlet walls."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pdesolve.equations import get_equation
from pdesolve.problem import Axis, BoundaryCondition, Domain, InitialCondition, Problem
from pdesolve.solvers.pinn import PINNModel, PINNOptions


def _check(problem, n=400, seed=0):
    torch.manual_seed(seed)
    model = PINNModel(problem, PINNOptions(width=16, depth=2)).double()
    for p in model.parameters():  # a far-from-trivial network
        p.data.normal_(0, 1.0)
    rng = np.random.default_rng(seed)
    dom = problem.domain
    names = dom.names
    pts = np.stack([rng.uniform(*dom.bounds[n_], n) for n_ in names], axis=1)
    checked = 0
    # the transform's parameter-free part, kept across steps by the PINN task, gives the same jet as a fresh one
    c = torch.tensor(pts)
    kept, fresh = model.jet(c, 2, model.frame(c, 2)), model.jet(c, 2)
    for a, b in ((kept.v, fresh.v), (kept.g, fresh.g), (kept.h, fresh.h)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)
    t0 = dom.time[0]
    ic = pts.copy()
    ic[:, 0] = t0
    c = torch.tensor(ic)
    u = model(c)[:, 0].detach().numpy()
    expected = problem.initial.values["u"].numpy(**{k: ic[:, i] for i, k in enumerate(names) if k != "t"})
    np.testing.assert_allclose(u, expected, atol=1e-12)
    checked += 1
    for bc in problem.boundary:
        face = pts.copy()
        i = names.index(bc.axis)
        face[:, i] = dom.bounds[bc.axis][0 if bc.side == "lo" else 1]
        u = model(torch.tensor(face))[:, 0].detach().numpy()
        expected = bc.value.numpy(**{k: face[:, j] for j, k in enumerate(names)})
        np.testing.assert_allclose(u, expected, atol=1e-12)
        checked += 1
    return checked


def test_ic_and_dirichlet_walls_hold_exactly_for_burgers():
    p = Problem(
        "b",
        get_equation("burgers"),
        {"nu": 0.01},
        Domain((Axis("x", -1.0, 1.0),), (0.0, 1.0)),
        InitialCondition.of({"u": "-sin(pi*x)"}, ("x",)),
        BoundaryCondition.dirichlet_walls("x", ("t", "x")),
    )
    assert _check(p) == 3


def test_time_dependent_walls_and_2d_corners_hold_exactly():
    """Compatible but non-trivial data: u = x + y^2 + t (x - y) on every face of a 2D box."""
    v = ("t", "x", "y")
    value = "x + y**2 + t*(x - y)"
    bcs = tuple(
        BoundaryCondition("dirichlet", a, s, __import__("pdesolve").Expression.parse(value, v)) for a in ("x", "y") for s in ("lo", "hi")
    )
    p = Problem(
        "h",
        get_equation("heat"),
        {"nu": 0.1},
        Domain((Axis("x", 0.0, 1.0), Axis("y", -1.0, 2.0)), (0.0, 2.0)),
        InitialCondition.of({"u": "x + y**2"}, ("x", "y")),
        bcs,
    )
    assert _check(p) == 5


def test_one_sided_inflow_wall_and_neumann_left_soft():
    from pdesolve.expr import Expression

    v = ("t", "x")
    bcs = (
        BoundaryCondition("dirichlet", "x", "lo", Expression.parse("sin(-2*t)", v)),
        BoundaryCondition("neumann", "x", "hi", Expression.parse("0", v)),
    )
    p = Problem(
        "c",
        get_equation("convection"),
        {"beta": 2.0},
        Domain((Axis("x", 0.0, 2 * math.pi),), (0.0, 1.0)),
        InitialCondition.of({"u": "sin(x)"}, ("x",)),
        bcs,
    )
    model = PINNModel(p, PINNOptions())
    assert model.hard.enforced() == {"initial:u", "dirichlet:u@x.lo"}
    with pytest.raises(AssertionError):
        _check(p)  # the Neumann wall is not a value constraint: checking its value must fail


def test_an_initial_condition_that_disagrees_with_a_wall_becomes_a_loss_term():
    """A rod at ~0 whose left wall is held at 0.5: no transform holds both, so the walls stay exact, the initial
    condition becomes a soft term of the PINN, and the constraint says why."""
    import warnings

    from pdesolve.config import load_run_config
    from pdesolve.nn.hard import HardConstraint

    cfg = load_run_config(Path(__file__).resolve().parents[1] / "problems" / "heat.yaml",
                          ["initial.u=exp(-10*(x-0.5)**2)", "boundary=[{kind: dirichlet, axis: x, side: lo, value: 0.5}, "
                           "{kind: dirichlet, axis: x, side: hi, value: 0}]"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hard = HardConstraint(cfg.problem)
    assert [a.name for a in hard.axes["u"]] == ["x"] and len(hard.notes) == 1 and "initial condition" in hard.notes[0]
    assert any("wall" in str(w.message) for w in caught)
    assert HardConstraint(load_run_config(Path(__file__).resolve().parents[1] / "problems" / "heat.yaml").problem).notes == []
