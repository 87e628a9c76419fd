"""Lagrangian PINN against plain PINNs (ours and DeepXDE's) on transport problems, side by side in one run.

Cases: periodic convection u_t + beta u_x = 0 (u0 = sin x) for several beta, convection-diffusion, and
viscous Burgers with the moving shock (u0 = sin x + 0.5). Every solver gets the same budget: Adam for
``--adam`` steps, then L-BFGS for ``--lbfgs`` steps (strong Wolfe line search). Our back-ends run through
``pdesolve.solve`` exactly as a user would (settings from the problem files): LPINN in its default rest frame
(``lpinn``) and in the mean frame (``lpinn-mean``), and our PINN; DeepXDE (pytorch
backend) gets the network and points of our PINN (4 x 50 tanh, 2540 interior points, 160 initial,
80 periodic-boundary points). Errors are relative L2 on each problem's evaluation grid against its
reference; times are the training wall time, measured in the same process, one torch thread.
Rows are appended to the JSON file as they finish, so an interrupted run continues where it stopped.

    nice -n 10 python scripts/bench_lpinn.py --adam 1000 --lbfgs 500 --seeds 0 1 2 --out docs/bench_lpinn.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pdesolve.io import write_json

ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = ROOT / "problems"
SOLVERS = ("lpinn", "lpinn-mean", "pinn", "deepxde")
# lpinn-mean: LPINN with ``frame: mean`` (on a periodic axis characteristics start at the mean initial speed and the
# position branch learns the deviation) instead of the default rest frame (it learns all of the motion)
VARIANTS = {"lpinn-mean": ("lpinn", ["solvers.lpinn.frame=mean"])}
# the plain PINN of the comparison: one network over the whole interval, as DeepXDE's (the problem files' solvers.pinn may
# ship methods such as time marching that this benchmark does not measure; docs/benchmarks.md, issue 17)
PLAIN_PINN = ["solvers.pinn={width: 50, depth: 4, points: {interior: 2540, sampler: lhs}}"]


def cases(betas: list[float]) -> dict[str, tuple[Path, list[str]]]:
    """Case name -> (problem file, overrides)."""
    conv = PROBLEMS / "convection_beta50.yaml"
    out = {f"convection beta={b:g}": (conv, [f"params.beta={b}", f"name=convection_beta{b:g}"]) for b in betas}
    out["convection-diffusion"] = (PROBLEMS / "convection_diffusion_lpinn.yaml", [])
    out["burgers moving shock"] = (PROBLEMS / "burgers_shock_periodic.yaml", [])
    return out


def run_ours(path: Path, overrides: list[str], solver: str, seed: int, adam: int, lbfgs: int, lr: float) -> dict[str, float]:
    import pdesolve as ps

    opts = [f"train.steps={adam + lbfgs}", "train.optimizer.name=adam_lbfgs", f"train.optimizer.adam_steps={adam}",
            f"train.optimizer.lr={lr}", "train.checkpoint_every=0"]
    with tempfile.TemporaryDirectory() as tmp:
        r = ps.solve(path, solver, overrides=overrides + opts, seed=seed, out=Path(tmp) / "run", quiet=True, device="cpu")
    return {"rel_l2": r.metrics["rel_l2"], "wall_s": r.metrics["wall_time_s"], "status": r.status.kind}


class _DDEDerivatives:
    """Our equations' Derivatives accessor over DeepXDE's autograd helpers (input columns: x, t)."""

    def __init__(self, dde, x, y, axis: str):
        self.dde, self.x, self.y, self.space, self.axis = dde, x, y, (axis,), axis

    def __call__(self, field: str, *axes: str):
        if not axes:
            return self.y[:, 0]
        if axes == ("t",):
            return self.dde.grad.jacobian(self.y, self.x, i=0, j=1)[:, 0]
        if axes == (self.axis,):
            return self.dde.grad.jacobian(self.y, self.x, i=0, j=0)[:, 0]
        if axes == (self.axis, self.axis):
            return self.dde.grad.hessian(self.y, self.x, i=0, j=0)[:, 0]
        raise ValueError(f"unsupported derivative {axes}")

    def coord(self, name: str):
        return self.x[:, 1] if name == "t" else self.x[:, 0]


def run_deepxde(path: Path, overrides: list[str], seed: int, adam: int, lbfgs: int, lr: float) -> dict[str, float]:
    os.environ.setdefault("DDE_BACKEND", "pytorch")
    import deepxde as dde

    from pdesolve.config import load_run_config
    from pdesolve.metrics import relative_l2
    from pdesolve.reference import reference_solution
    from pdesolve.solvers.lpinn import derivative_order

    cfg = load_run_config(path, overrides)
    problem = cfg.problem
    ax, (t0, t1), eq, p = problem.domain.space[0], problem.domain.time, problem.equation, problem.coefficients
    u0 = problem.initial.values[eq.fields[0]]
    dde.config.set_random_seed(seed)
    geom = dde.geometry.GeometryXTime(dde.geometry.Interval(ax.lo, ax.hi), dde.geometry.TimeDomain(t0, t1))

    def pde(x, y):
        return eq.residual(_DDEDerivatives(dde, x, y, ax.name), p)

    def on_wall(_, on_boundary):
        return on_boundary

    conditions = [dde.icbc.IC(geom, lambda x: u0.numpy(**{ax.name: x[:, 0:1]}), lambda _, on_initial: on_initial),
                  dde.icbc.PeriodicBC(geom, 0, on_wall, derivative_order=0)]
    if derivative_order(problem) == 2:
        conditions.append(dde.icbc.PeriodicBC(geom, 0, on_wall, derivative_order=1))
    data = dde.data.TimePDE(geom, pde, conditions, num_domain=2540, num_boundary=80, num_initial=160)
    model = dde.Model(data, dde.nn.FNN([2] + [50] * 4 + [1], "tanh", "Glorot normal"))
    start = time.perf_counter()
    model.compile("adam", lr=lr)
    model.train(iterations=adam, display_every=10**9, verbose=0)
    dde.optimizers.set_LBFGS_options(maxiter=lbfgs)
    # DeepXDE computes its per-call iteration cap at import time; keep it consistent with maxiter
    dde.optimizers.config.LBFGS_options["iter_per_step"] = min(1000, lbfgs)
    dde.optimizers.config.LBFGS_options["fun_per_step"] = int(min(1000, lbfgs) * 1.25)
    model.compile("L-BFGS")
    model.train(display_every=10**9, verbose=0)
    wall = time.perf_counter() - start
    lbfgs_done = model.train_state.step - adam  # DeepXDE's L-BFGS stops early on its own tolerances
    grid = problem.domain.grid(cfg.eval_grid)
    m = grid.mesh()
    pred = model.predict(np.stack([m[ax.name].ravel(), m["t"].ravel()], axis=1)).reshape(m["t"].shape)
    ref = reference_solution(problem, grid)[:, 0]
    err = relative_l2(pred, ref)
    return {"rel_l2": err, "wall_s": wall, "status": "budget" if np.isfinite(err) else "diverged", "lbfgs_iterations": int(lbfgs_done)}


def summary(rows: list[dict]) -> str:
    order = list(dict.fromkeys(r["case"] for r in rows))
    keys = sorted({(r["case"], r["solver"]) for r in rows}, key=lambda k: (order.index(k[0]), SOLVERS.index(k[1])))
    lines = ["| case | solver | seeds | rel. L2 (mean) | rel. L2 (min - max) | wall s (mean) |", "|---|---|---|---|---|---|"]
    for case, solver in keys:
        sel = [r for r in rows if r["case"] == case and r["solver"] == solver]
        e = np.array([r["rel_l2"] for r in sel])
        w = np.array([r["wall_s"] for r in sel])
        lines.append(f"| {case} | {solver} | {len(sel)} | {e.mean():.2e} | {e.min():.2e} - {e.max():.2e} | {w.mean():.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adam", type=int, default=1000)
    ap.add_argument("--lbfgs", type=int, default=500)
    ap.add_argument("--betas", type=float, nargs="+", default=[1, 10, 30, 50, 100])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the LPINN runs")
    ap.add_argument("--baseline-seeds", type=int, nargs="+", default=None, help="seeds of the PINN baselines (default: --seeds)")
    ap.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=SOLVERS)
    ap.add_argument("--cases", nargs="+", default=None, help="a subset of the case names")
    ap.add_argument("--lr-lpinn", type=float, default=5e-3, help="Adam learning rate of LPINN (its problem files' value)")
    ap.add_argument("--lr-pinn", type=float, default=1e-3, help="Adam learning rate of both PINNs (the usual PINN setting)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_lpinn.json")
    ap.add_argument("--merge", type=Path, nargs="+", help="only merge the rows of these result files (parts of one matrix run "
                    "as parallel processes) into --out and print the table")
    args = ap.parse_args()
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        merged = {"meta": {**parts[0]["meta"], "parts": [str(p) for p in args.merge]}, "rows": [r for part in parts for r in part["rows"]]}
        write_json(args.out, merged)
        print(summary(merged["rows"]))
        return
    torch.set_num_threads(1)
    base_seeds = args.baseline_seeds if args.baseline_seeds is not None else args.seeds
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 torch thread",
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "adam": args.adam, "lbfgs": args.lbfgs,
            "lr_lpinn": args.lr_lpinn, "lr_pinn": args.lr_pinn}
    rows: list[dict] = []
    if args.out.exists():
        old = json.loads(args.out.read_text())
        same = ("adam", "lbfgs", "lr_lpinn", "lr_pinn")
        if all(old["meta"].get(k) == meta[k] for k in same):
            rows = old["rows"]
    done = {(r["case"], r["solver"], r["seed"]) for r in rows}
    selected = {k: v for k, v in cases(args.betas).items() if args.cases is None or k in args.cases}
    for seed in sorted(set(args.seeds) | set(base_seeds)):
        for case, (path, overrides) in selected.items():
            for solver in args.solvers:
                if (case, solver, seed) in done or seed not in (args.seeds if solver.startswith("lpinn") else base_seeds):
                    continue
                if solver == "deepxde":
                    r = run_deepxde(path, overrides, seed, args.adam, args.lbfgs, args.lr_pinn)
                else:
                    lr = args.lr_lpinn if solver.startswith("lpinn") else args.lr_pinn
                    name, extra = VARIANTS.get(solver, (solver, PLAIN_PINN if solver == "pinn" else []))
                    r = run_ours(path, overrides + extra, name, seed, args.adam, args.lbfgs, lr)
                rows.append({"case": case, "solver": solver, "seed": seed, **r})
                print(f"{case:24s} {solver:8s} seed {seed}: rel L2 {r['rel_l2']:.3e}, {r['wall_s']:.0f} s", flush=True)
                try:
                    os.environ.setdefault("DDE_BACKEND", "pytorch")
                    import deepxde

                    meta["deepxde"] = deepxde.__version__
                except ImportError:
                    pass
                args.out.parent.mkdir(parents=True, exist_ok=True)
                write_json(args.out, {"meta": meta, "rows": rows})
    print(summary(rows))


if __name__ == "__main__":
    main()
