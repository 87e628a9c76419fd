"""Inverse diffusion-reaction side by side with DeepXDE (its example ``examples/pinn_inverse/reaction_inverse.py``).

    python scripts/bench_inverse.py --adam 5000 --lbfgs 1000 --out /tmp/bench_inverse.json

The problem (Raissi et al. 2019's diffusion-reaction system as DeepXDE's example states it): fields ``ca``, ``cb`` on
x in [0, 1], t in [0, 10],

    ca_t = D ca_xx - kf ca cb^2,    cb_t = D cb_xx - 2 kf ca cb^2,
    ca = cb = exp(-20 x) at t = 0,  ca = cb = 1 - x on both walls,

with D and kf unknown (true 2e-3 and 0.1; learning starts at 1e-3 and 0.05, as in the example). The observations
are noise-free values of both fields on a 21 x 21 (t, x) grid made here by a method of lines of our own (second-order
finite differences on 401 points, scipy's BDF at rtol 1e-10; checked against 801 points), which also gives the
reference the relative L2 error is measured against (101 x 101 grid).

Both sides use the same observations, network (2-20-20-20-2, tanh), points (2000 interior, 100 on the walls per
field, 100 initial), soft conditions, Adam at lr 1e-3 for ``--adam`` steps then ``--lbfgs`` L-BFGS iterations, and
equal relative loss weights (ours are set so that our loss is exactly half of DeepXDE's sum of per-component
means). Differences kept: DeepXDE scales D by hand (``1e-3 * D``) as its example does, ours learns log D (the automatic
parametrisation of a positive coefficient); DeepXDE also adds the observation points to its residual points
(``anchors``), ours does not. One process, one thread, the same seed.

Times: wall and CPU time of the process (one thread: the CPU time is what the run costs on an idle core; the wall time
depends on the machine's load). ``--only ours`` / ``--only deepxde`` run one side (the data are made the same way in
each process), so both sides may run at once on a shared machine.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.integrate import solve_ivp

from pdesolve.datafiles import write_columns

TRUE = {"D": 2e-3, "kf": 0.1}
START = {"D": 1e-3, "kf": 0.05}


# ----------------------------------------------------------------------------- the trusted solution
def method_of_lines(n: int, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``ca``, ``cb`` as ``[time, x]`` on ``n`` uniform points, by second-order differences and BDF."""
    x = np.linspace(0, 1, n)
    h = x[1] - x[0]
    wall = 1 - x  # the Dirichlet values at the ends: 1 at x = 0, 0 at x = 1
    D, kf = TRUE["D"], TRUE["kf"]

    def rhs(_t, y):
        a, b = y[: n - 2], y[n - 2:]
        full_a = np.concatenate([[wall[0]], a, [wall[-1]]])
        full_b = np.concatenate([[wall[0]], b, [wall[-1]]])
        lap_a = (full_a[2:] - 2 * a + full_a[:-2]) / h**2
        lap_b = (full_b[2:] - 2 * b + full_b[:-2]) / h**2
        react = kf * a * b**2
        return np.concatenate([D * lap_a - react, D * lap_b - 2 * react])

    u0 = np.exp(-20 * x[1:-1])
    sol = solve_ivp(rhs, (times[0], times[-1]), np.concatenate([u0, u0]), method="BDF", t_eval=times, rtol=1e-10, atol=1e-12)
    assert sol.success, sol.message
    inner = sol.y.T  # [time, 2 (n - 2)]
    ca = np.concatenate([np.full((len(times), 1), wall[0]), inner[:, : n - 2], np.full((len(times), 1), wall[-1])], axis=1)
    cb = np.concatenate([np.full((len(times), 1), wall[0]), inner[:, n - 2:], np.full((len(times), 1), wall[-1])], axis=1)
    ca[0], cb[0] = np.exp(-20 * x), np.exp(-20 * x)
    return x, ca, cb


def make_data(folder: Path) -> dict:
    """Observations (CSV) and the reference (npz) in ``folder``; returns what they hold and the solver check."""
    t_obs, t_ref = np.linspace(0, 10, 21), np.linspace(0, 10, 101)
    times = np.union1d(t_obs, t_ref)
    x, ca, cb = method_of_lines(401, times)
    x2, ca2, _ = method_of_lines(801, times)
    check = float(np.abs(ca2[:, ::2] - ca).max())  # the discretization error, far below what the PINNs reach
    rows = {float(t): i for i, t in enumerate(times)}
    ref_rows = [rows[float(t)] for t in t_ref]
    np.savez(folder / "reaction_ref.npz", t=t_ref, x=x[::4], ca=ca[ref_rows][:, ::4], cb=cb[ref_rows][:, ::4])
    obs_rows = [rows[float(t)] for t in t_obs]
    T, X = np.meshgrid(t_obs, x[::20], indexing="ij")
    columns = {"t": T.ravel(), "x": X.ravel(), "ca": ca[obs_rows][:, ::20].ravel(), "cb": cb[obs_rows][:, ::20].ravel()}
    write_columns(folder / "reaction_obs.csv", columns)
    return {"observations": len(columns["t"]), "mol_401_vs_801_max_diff": check}


# ----------------------------------------------------------------------------- the user's input, ours
def ours_problem(folder: Path):
    """What a pdesolve user writes (Python API; a problem file once equations can be written as expressions)."""
    from pdesolve.equations import Equation, Parameter
    from pdesolve.observations import load_observations
    from pdesolve.problem import Axis, BoundaryCondition, Domain, InitialCondition, Problem, Reference, Unknown

    class DiffusionReaction(Equation):
        name = "diffusion_reaction_ab"
        fields = ("ca", "cb")
        parameters = {"D": Parameter(None, 0.0, doc="diffusivity"), "kf": Parameter(None, 0.0, doc="reaction rate")}

        def forcing(self, d, p):
            x, react = d.space[0], p["kf"] * d("ca") * d("cb") ** 2
            return torch.stack([p["D"] * d("ca", x, x) - react, p["D"] * d("cb", x, x) - 2 * react], dim=-1)

    walls = tuple(bc for f in ("ca", "cb") for bc in BoundaryCondition.dirichlet_walls("x", ("t", "x"), "1 - x", f))
    return Problem(
        name="reaction_inverse", equation=DiffusionReaction(), params={},
        unknowns={"D": Unknown(1e-3, true=2e-3), "kf": Unknown(0.05, true=0.1)},
        observations=load_observations(folder / "reaction_obs.csv", ("t", "x"), ("ca", "cb")),
        domain=Domain((Axis("x", 0.0, 1.0),), (0.0, 10.0)),
        initial=InitialCondition.of({"ca": "exp(-20*x)", "cb": "exp(-20*x)"}, ("x",)), boundary=walls,
        reference=Reference("file", {"path": str(folder / "reaction_ref.npz")}),
    )


OURS_SETTINGS = {
    "solvers": {"pinn": {"width": 20, "depth": 3, "activation": "tanh", "hard_constraints": False,
                         "points": {"interior": 2000, "boundary": 200, "initial": 100},
                         "weights": {"residual": 1.0, "initial": 1.0, "boundary": 0.25}}},
    "device": "cpu",
}


def run_ours(folder: Path, adam: int, lbfgs: int, seed: int) -> dict:
    import pdesolve as ps

    optimizer = {"name": "adam_lbfgs", "adam_steps": adam, "lr": 1e-3} if lbfgs else {"name": "adam", "lr": 1e-3}
    settings = {**OURS_SETTINGS, "seed": seed, "train": {"steps": adam + lbfgs, "optimizer": optimizer, "log_every": 100,
                                                          "checkpoint_every": 0}}
    start, cpu = time.perf_counter(), time.process_time()
    res = ps.solve(ours_problem(folder), "pinn", settings=settings, out=folder / "ours", quiet=True, overwrite=True)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    rec = res.metrics["recovered"]
    return {"D": rec["D"]["value"], "kf": rec["kf"]["value"], "rel_l2": res.metrics["rel_l2"], "wall_s": wall, "cpu_s": cpu}


# ----------------------------------------------------------------------------- the user's input, DeepXDE
def deepxde_model(folder: Path, seed: int):
    """What a DeepXDE user writes (its example, with our observations)."""
    os.environ.setdefault("DDE_BACKEND", "pytorch")
    import deepxde as dde

    dde.config.set_random_seed(seed)
    obs = np.loadtxt(folder / "reaction_obs.csv", delimiter=",", skiprows=1)
    observe_x, Ca, Cb = obs[:, [1, 0]], obs[:, 2:3], obs[:, 3:4]  # DeepXDE's columns are (x, t)
    kf, D = dde.Variable(0.05), dde.Variable(1.0)

    def pde(x, y):
        ca, cb = y[:, 0:1], y[:, 1:2]
        dca_t = dde.grad.jacobian(y, x, i=0, j=1)
        dca_xx = dde.grad.hessian(y, x, component=0, i=0, j=0)
        dcb_t = dde.grad.jacobian(y, x, i=1, j=1)
        dcb_xx = dde.grad.hessian(y, x, component=1, i=0, j=0)
        eq_a = dca_t - 1e-3 * D * dca_xx + kf * ca * cb**2
        eq_b = dcb_t - 1e-3 * D * dcb_xx + 2 * kf * ca * cb**2
        return [eq_a, eq_b]

    geomtime = dde.geometry.GeometryXTime(dde.geometry.Interval(0, 1), dde.geometry.TimeDomain(0, 10))
    bc_a = dde.icbc.DirichletBC(geomtime, lambda x: 1 - x[:, 0:1], lambda _, on_boundary: on_boundary, component=0)
    bc_b = dde.icbc.DirichletBC(geomtime, lambda x: 1 - x[:, 0:1], lambda _, on_boundary: on_boundary, component=1)
    ic1 = dde.icbc.IC(geomtime, lambda x: np.exp(-20 * x[:, 0:1]), lambda _, on_initial: on_initial, component=0)
    ic2 = dde.icbc.IC(geomtime, lambda x: np.exp(-20 * x[:, 0:1]), lambda _, on_initial: on_initial, component=1)
    observe_y1 = dde.icbc.PointSetBC(observe_x, Ca, component=0)
    observe_y2 = dde.icbc.PointSetBC(observe_x, Cb, component=1)
    data = dde.data.TimePDE(geomtime, pde, [bc_a, bc_b, ic1, ic2, observe_y1, observe_y2], num_domain=2000, num_boundary=100,
                            num_initial=100, anchors=observe_x)
    net = dde.nn.FNN([2] + [20] * 3 + [2], "tanh", "Glorot uniform")
    model = dde.Model(data, net)
    model.compile("adam", lr=0.001, external_trainable_variables=[kf, D])
    return dde, model, kf, D


def run_deepxde(folder: Path, adam: int, lbfgs: int, seed: int) -> dict:
    start, cpu = time.perf_counter(), time.process_time()
    dde, model, kf, D = deepxde_model(folder, seed)
    model.train(iterations=adam, display_every=10**9, verbose=0)
    if lbfgs:
        dde.optimizers.set_LBFGS_options(maxiter=lbfgs)
        dde.optimizers.config.LBFGS_options["iter_per_step"] = min(1000, lbfgs)
        dde.optimizers.config.LBFGS_options["fun_per_step"] = int(min(1000, lbfgs) * 1.25)
        model.compile("L-BFGS", external_trainable_variables=[kf, D])
        model.train(display_every=10**9, verbose=0)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    ref = np.load(folder / "reaction_ref.npz")
    T, X = np.meshgrid(ref["t"], ref["x"], indexing="ij")
    pred = model.predict(np.stack([X.ravel(), T.ravel()], axis=1))  # [points, 2]
    truth = np.stack([ref["ca"].ravel(), ref["cb"].ravel()], axis=1)
    rel = float(np.linalg.norm(pred - truth) / np.linalg.norm(truth))
    return {"D": 1e-3 * float(D.detach()), "kf": float(kf.detach()), "rel_l2": rel, "wall_s": wall, "cpu_s": cpu}


def user_lines(fn) -> int:
    """Lines of a function's body that are code (no blank lines, comments or docstring)."""
    body = inspect.getsource(fn).split('"""')[2] if '"""' in inspect.getsource(fn) else inspect.getsource(fn)
    return sum(1 for line in body.splitlines() if line.strip() and not line.strip().startswith("#"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adam", type=int, default=5000)
    p.add_argument("--lbfgs", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=["ours", "deepxde"], default=None)
    p.add_argument("--out", default=None, help="JSON file for the results")
    args = p.parse_args()
    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="bench_inverse_"))
    meta = make_data(folder)
    rows = []
    runners = {"pdesolve pinn": run_ours, "deepxde": run_deepxde}
    settings_lines = len(inspect.getsource(inspect.getmodule(main)).split("OURS_SETTINGS = {")[1].split("\n}\n")[0].splitlines()) + 1
    lines = {"pdesolve pinn": user_lines(ours_problem) + settings_lines, "deepxde": user_lines(deepxde_model) - 1}  # less DDE_BACKEND
    for name, fn in runners.items():
        if args.only and not name.startswith({"ours": "pdesolve", "deepxde": "deepxde"}[args.only]):
            continue
        r = fn(folder, args.adam, args.lbfgs, args.seed)
        r.update(solver=name, D_error=abs(r["D"] - TRUE["D"]) / TRUE["D"], kf_error=abs(r["kf"] - TRUE["kf"]) / TRUE["kf"],
                 user_lines=lines[name])
        rows.append(r)
        print(f"{name:14s} D {r['D']:.4e} ({100 * r['D_error']:6.2f} %)  kf {r['kf']:.4f} ({100 * r['kf_error']:6.2f} %)  "
              f"rel L2 {r['rel_l2']:.2e}  {r['wall_s']:7.1f} s wall  {r['cpu_s']:7.1f} s CPU  {r['user_lines']} lines", flush=True)
    os.environ.setdefault("DDE_BACKEND", "pytorch")
    import deepxde

    meta.update(adam=args.adam, lbfgs=args.lbfgs, seed=args.seed, deepxde=deepxde.__version__, torch=torch.__version__)
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
