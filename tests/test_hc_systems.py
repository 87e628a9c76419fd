"""Coupled systems (several fields) through the hard-constraint solvers: one block of basis weights per field.

- the block Jacobian, exact Hessian and linearization of PointwiseResidual for a system equal torch.func's;
- a linear two-field system on a periodic axis against its closed form (each Fourier mode a 2x2 matrix exponential);
- a linear two-field system between walls (a Dirichlet condition per field) against its closed form;
- a steady two-field system between walls against its closed form;
- the same system through moe_hc with two time slabs: the second slab starts from the first's solution, field by field;
- a nonlinear coupled system (cubic damping) through Levenberg-Marquardt, against the method of lines;
- one field: the losses are those of the code before systems were added (values computed on main).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.linalg import expm
from torch.func import hessian, jacfwd

import pdesolve as ps
from pdesolve.config import load_run_config
from pdesolve.constrained import PointwiseResidual
from pdesolve.solvers import SolverMismatch
from pdesolve.solvers.hc import HC, MoEHC

PROBLEMS = Path(__file__).resolve().parents[1] / "problems"
PERIODIC = {"bounds": [0, "2*pi"], "periodic": True}
DU, DV = 0.1, 0.05
LINEAR = {"fields": ["u", "v"], "residual": ["u_t - Du*u_xx + u - 2*v", "v_t - Dv*v_xx - u/2 + v"]}
OPTIONS = {"width": 32, "depth": 2, "basis": 32, "periodic_modes": 2, "points": {"solve": 128, "loss": 128, "initial": 16}}
ADAM = {"train": {"optimizer": {"name": "adam", "lr": 1e-2}}}


def linear_data(t_end=1.0):
    return {"name": "coupled_linear", "equation": LINEAR, "params": {"Du": DU, "Dv": DV},
            "domain": {"x": PERIODIC, "t": [0, t_end]}, "initial": {"u": "sin(x)", "v": "cos(2*x)"},
            "reference": {"kind": "simulator"}, "evaluate": {"grid": {"t": 11, "x": 32}}, "device": "cpu"}


def linear_exact(t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """[2, t, x]: mode sin(x) from (u, v) = (1, 0) and mode cos(2x) from (0, 1), each by the 2x2 system
    d/dt (a, b) = [[-Du k^2 - 1, 2], [1/2, -Dv k^2 - 1]] (a, b)."""
    out = np.zeros((2, len(t), len(x)))
    for k, start, shape in ((1, [1.0, 0.0], np.sin(x)), (2, [0.0, 1.0], np.cos(2 * x))):
        M = np.array([[-DU * k * k - 1, 2.0], [0.5, -DV * k * k - 1]])
        amp = np.stack([expm(M * ti) @ start for ti in t])  # [t, 2]
        out += amp.T[:, :, None] * shape[None, None]
    return out


def coupled_fn(f: torch.Tensor) -> torch.Tensor:
    """Two equations over two fields with features (value, derivative) each: [b, 4, m] -> [b, 2, m]."""
    u, ux, v, vx = f.unbind(1)
    return torch.stack([ux + u * v - v**3, vx - u * u + torch.sin(v) * ux], 1)


def test_system_jacobian_hessian_and_linearization_equal_torch_func():
    gen = torch.Generator().manual_seed(0)
    b, k, m, n, F = 2, 2, 7, 5, 2
    D = torch.randn(b, k, m, n, dtype=torch.float64, generator=gen)
    w = torch.randn(b, F * n, dtype=torch.float64, generator=gen)
    res = PointwiseResidual(coupled_fn, fields=F)

    def direct(wi, Di):  # one sample: field g's features D_k w_g, written out
        W = wi.reshape(F, n)
        f = torch.stack([Di[j] @ W[g] for g in range(F) for j in range(k)])[None]  # [1, F k, m]
        return coupled_fn(f)[0].reshape(-1)  # [E m], equation-major

    r = res(w, D)
    assert r.shape == (b, 2 * m)
    for i in range(b):
        torch.testing.assert_close(r[i], direct(w[i], D[i]), rtol=1e-13, atol=1e-13)
        J = jacfwd(direct)(w[i], D[i])
        torch.testing.assert_close(res.jacobian(w, D)[i], J, rtol=1e-12, atol=1e-12)
        H = hessian(lambda v, Di=D[i]: 0.5 * direct(v, Di).pow(2).sum())(w[i])
        torch.testing.assert_close(res.hessian(w, D)[i], H, rtol=1e-11, atol=1e-11)
    A, rhs = res.linearization(res.features(w, D), D)  # about the state D w itself: A w - b = r, A = J
    torch.testing.assert_close(A, res.jacobian(w, D), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.einsum("brn,bn->br", A, w) - rhs, r, rtol=1e-11, atol=1e-11)


def test_hc_solves_a_linear_coupled_system_against_its_closed_form(tmp_path):
    data = linear_data()
    problem = load_run_config("<test>", data=data).problem
    assert not HC.mismatches(problem)
    grid = problem.domain.grid({"t": 11, "x": 32})
    exact = linear_exact(grid.coords("t"), grid.coords("x"))
    torch.manual_seed(0)
    result = ps.solve(problem, "hc", steps=60, options=OPTIONS, settings={"evaluate": data["evaluate"], "device": "cpu", **ADAM},
                      out=tmp_path / "run", quiet=True)
    got = np.stack([result.solution.field(f)[0] for f in "uv"])  # [2, t, x]
    err = np.linalg.norm(got - exact) / np.linalg.norm(exact)
    assert err < 0.03, err  # measured 1.1e-2 after 60 steps (4.5 s)
    assert result.metrics["rel_l2"] == pytest.approx(err, rel=1e-6)  # the run's reference (the simulator) agrees
    # the 16 initial points are the cell centres x = (i + 1/2) 2 pi / 16, every second grid point: both fields exact there
    np.testing.assert_allclose(got[:, 0, 1::2], exact[:, 0, 1::2], rtol=0, atol=1e-12)
    assert np.abs(got[:, 0] - exact[:, 0]).max() < 1e-2  # and close between them (measured 4.1e-3)
    assert result.metrics["violations"]["constraints_max"] < 1e-9


def test_hc_holds_each_fields_walls_against_a_closed_form(tmp_path):
    """u_t = D u_xx - u + v, v_t = D v_xx + u - v on [0, pi], both fields zero at the walls, u = sin x, v = 0:
    u + v = sin(x) exp(-D t), u - v = sin(x) exp(-(D + 2) t)."""
    D = 0.1
    walls = [{"kind": "dirichlet", "axis": "x", "side": "both", "value": 0, "field": f} for f in "uv"]
    data = {"name": "coupled_walls", "equation": {"fields": ["u", "v"], "residual": ["u_t - D*u_xx + u - v", "v_t - D*v_xx - u + v"]},
            "params": {"D": D}, "domain": {"x": [0, "pi"], "t": [0, 1]}, "initial": {"u": "sin(x)", "v": 0}, "boundary": walls,
            "evaluate": {"grid": {"t": 11, "x": 33}}, "device": "cpu"}
    problem = load_run_config("<test>", data=data).problem
    options = {**OPTIONS, "periodic_modes": 1, "points": {"solve": 128, "loss": 128, "initial": 12, "boundary": 6}}
    torch.manual_seed(0)
    solver = HC(problem, HC.Options(**options), torch.device("cpu"))
    con, n = solver.constraints, OPTIONS["basis"]
    assert list(con.per_field()) == [12 + 12, 12 + 12]  # initial points plus two walls of 6, per field
    C = con.rows(solver.model.basis.features(torch.as_tensor(con.points)))  # [p, 2 N]
    assert (C[con.field == 0, n:] == 0).all() and (C[con.field == 1, :n] == 0).all()  # each row in its field's block
    torch.manual_seed(0)
    result = ps.solve(problem, "hc", steps=60, options=options, settings={"evaluate": data["evaluate"], "device": "cpu", **ADAM},
                      out=tmp_path / "run", quiet=True)
    grid = problem.domain.grid({"t": 11, "x": 33})
    t, x = np.meshgrid(grid.coords("t"), grid.coords("x"), indexing="ij")
    s, m = np.exp(-D * t) * np.sin(x), np.exp(-(D + 2) * t) * np.sin(x)
    exact = np.stack([(s + m) / 2, (s - m) / 2])
    got = np.stack([result.solution.field(f)[0] for f in "uv"])
    err = np.linalg.norm(got - exact) / np.linalg.norm(exact)
    assert err < 0.006, err  # measured 2.0e-3 after 60 steps (7 s)
    assert np.abs(got[:, :, [0, -1]]).max() < 4e-3  # both fields at both walls (exact at the 6 points per face; measured 1.0e-3)
    assert result.metrics["violations"]["constraints_max"] < 1e-8


def test_hc_solves_a_steady_coupled_system_to_its_closed_form(tmp_path):
    """-u_xx + v/2 = f, -v_xx + u = g on [0, pi], zero walls, with f, g from u = sin x, v = sin 2x (the operator
    [[k^2, 1/2], [1, k^2]] on sin(k x) is invertible for every k)."""
    eq = {"fields": ["u", "v"], "residual": ["-u_xx + v/2 - (sin(x) + sin(2*x)/2)", "-v_xx + u - (4*sin(2*x) + sin(x))"]}
    walls = [{"kind": "dirichlet", "axis": "x", "side": "both", "value": 0, "field": f} for f in "uv"]
    data = {"name": "steady_system", "equation": eq, "domain": {"x": [0, "pi"]}, "boundary": walls,
            "evaluate": {"grid": {"x": 33}}, "device": "cpu"}
    problem = load_run_config("<test>", data=data).problem
    assert problem.equation.steady
    torch.manual_seed(0)
    options = {**OPTIONS, "periodic_modes": 1, "points": {"solve": 128, "loss": 128, "boundary": 1}}
    result = ps.solve(problem, "hc", steps=150, options=options,
                      settings={"evaluate": data["evaluate"], "device": "cpu", **ADAM}, out=tmp_path / "run", quiet=True)
    x = problem.domain.grid({"x": 33}).coords("x")
    got = np.stack([result.solution.field(f) for f in "uv"]).reshape(2, -1)
    exact = np.stack([np.sin(x), np.sin(2 * x)])
    err = np.linalg.norm(got - exact) / np.linalg.norm(exact)
    assert err < 1e-4, err  # measured 7.7e-6 after 150 steps (4 s); one field alone (-u_xx = sin x): 3.8e-7


def test_moe_hc_time_slabs_hand_every_field_to_the_next_slab(tmp_path):
    data = linear_data()
    problem = load_run_config("<test>", data=data).problem
    options = {**OPTIONS, "experts": {"t": 2}}
    torch.manual_seed(0)
    solver = MoEHC(problem, MoEHC.Options(**options), torch.device("cpu"))
    assert solver.slabs == 2
    w, status = solver.weights()  # [2, 2 N]: slab 0, slab 1
    assert w.shape == (2, 2 * OPTIONS["basis"])
    start = solver.constraints.points[:16]  # the initial points moved to t = 0.5: exact there, both fields
    pts = torch.as_tensor(np.concatenate([np.full((16, 1), 0.5), start[:, 1:]], 1))
    b = solver.model.basis(pts)
    first, second = (torch.einsum("nb,fb->nf", b, w[i].reshape(2, -1)) for i in range(2))
    torch.testing.assert_close(second, first, rtol=0, atol=1e-9)
    assert float(status.constraint_violation.max()) < 1e-9
    torch.manual_seed(0)
    result = ps.solve(problem, "moe_hc", steps=60, options=options, settings={"evaluate": data["evaluate"], "device": "cpu", **ADAM},
                      out=tmp_path / "run", quiet=True)
    grid = problem.domain.grid({"t": 11, "x": 32})
    got = np.stack([result.solution.field(f)[0] for f in "uv"])
    exact = linear_exact(grid.coords("t"), grid.coords("x"))
    err = np.linalg.norm(got - exact) / np.linalg.norm(exact)
    assert err < 0.012, err  # measured 3.9e-3 after 60 steps (7 s)


def test_hc_solves_a_nonlinear_coupled_system_through_levenberg_marquardt(tmp_path):
    cfg = load_run_config(PROBLEMS / "coupled_reaction_diffusion.yaml", ["solver=hc"])
    assert not cfg.problem.equation.linear
    torch.manual_seed(0)
    result = ps.solve(PROBLEMS / "coupled_reaction_diffusion.yaml", "hc", steps=60, options=OPTIONS,
                      overrides=["train.optimizer={name: adam, lr: 1.0e-2}", "evaluate.grid={t: 11, x: 32}"],
                      out=tmp_path / "run", quiet=True, device="cpu")
    assert result.status.ok
    assert result.metrics["rel_l2"] < 0.06, result.metrics["rel_l2"]  # measured 2.8e-2 against the method of lines (16 s)
    assert result.metrics["violations"]["constraints_max"] < 1e-9
    solve = result.metrics["solve"]
    assert solve["converged_fraction"] == 1.0 and solve["iterations_max"] > 1  # iterated (nonlinear), and converged


def test_systems_refuse_what_holds_one_field_only():
    problem = load_run_config("<test>", data=linear_data()).problem
    with pytest.raises(SolverMismatch, match="bounds"):
        HC(problem, HC.Options(**OPTIONS, bounds=(-1.0, 1.0)), torch.device("cpu"))
    with pytest.raises(SolverMismatch, match=r"family: got 2 fields \['u', 'v'\], expected one"):
        HC(problem, HC.Options(**OPTIONS, family={"parameters": {"initial.u": [0, 1]}}), torch.device("cpu"))
    with pytest.raises(SolverMismatch, match="17 exact constraint points of one field on 16 basis functions"):
        HC(problem, HC.Options(**{**OPTIONS, "basis": 16, "points": {"initial": 17}}), torch.device("cpu"))


# measured on main before systems were added (tests/test_hc.py's build: SMALL points, torch.manual_seed(0), then 1)
ONE_FIELD = [("heat.yaml", "hc", {}, 35971498.89562336),
             ("reaction.yaml", "hc", {}, 2.150329057895666),
             ("burgers.yaml", "hc", {}, 1.0194596788948846),
             ("diffusion_sorption.yaml", "hc", {"nonlinear": {"u_floor": 1e-6}}, 124500887.43974611),
             ("heat.yaml", "moe_hc", {"experts": {"t": 2, "x": 2}}, 0.25712453842745725)]


@pytest.mark.parametrize(("path", "name", "options", "before"), ONE_FIELD)
def test_one_field_losses_are_those_before_systems(path, name, options, before):
    cls = {"hc": HC, "moe_hc": MoEHC}[name]
    cfg = load_run_config(PROBLEMS / path, [f"solver={name}"])
    torch.manual_seed(0)
    solver = cls(cfg.problem, cls.Options(**{"points": {"solve": 96, "loss": 96}, **options}), torch.device("cpu"))
    torch.manual_seed(1)
    loss, _ = solver.task(lambda: {}).loss()
    assert float(loss.detach()) == before  # bit for bit: the one-field path is the old one
