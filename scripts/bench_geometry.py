"""Poisson beyond boxes: our PINN and DeepXDE's (pytorch backend) side by side in one process, on DeepXDE's L-shape
example and on a square with a hole.

- ``lshape`` (``problems/poisson_lshape.yaml``): ``-Laplacian u = 1`` on the L-shaped polygon, ``u = 0`` on its
  boundary (DeepXDE's ``examples/pinn_forward/Poisson_Lshape.py``); reference: the masked-grid finite-difference solve
  (``fd_masked``, 65 x 65 evaluation grid solved 8 times finer);
- ``disk_hole`` (``problems/poisson_disk_hole.yaml``): the manufactured ``u = exp(x) sin(pi y)`` on ``[-1, 1]^2`` minus
  the disk of radius 0.3, Dirichlet on the square, Neumann on the hole; reference: the closed form.

Same network (4 hidden layers of 50, tanh, Glorot normal, float32), same numbers of interior and boundary points
(1200 and 120, drawn pseudo-randomly: DeepXDE's ``train_distribution="pseudo"``; its default is Hammersley), the same
loss (the mean squared residual plus one mean squared term per condition, unit weights), Adam with lr 1e-3 and then
L-BFGS (history 100, strong Wolfe line search; DeepXDE's example does the same), one torch thread. Training runs in
interleaved blocks (ours, DeepXDE, ours, ...) so that a busy machine slows both alike; after each block both are
scored (untimed) by the relative L2 error on the evaluation grid's points inside the region. Time to error is the
training time until the first block end at or below the stated error. Lines of user input: the non-blank, non-comment
lines of our problem file against those of the DeepXDE user code for the same problem (the function that builds the
model, plus its import and the three training calls); our file also states a description, the reference and the
evaluation grid, which DeepXDE's code does not: the count without them is given in brackets.

    python scripts/bench_geometry.py --adam 500 --lbfgs 500 --block 100 --targets 1e-1 2e-2 5e-3
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CASES = {"lshape": ROOT / "problems" / "poisson_lshape.yaml", "disk_hole": ROOT / "problems" / "poisson_disk_hole.yaml"}


# ----------------------------------------------------------------------------- DeepXDE user code (counted)
def deepxde_lshape(dde):
    geom = dde.geometry.Polygon([[0, 0], [1, 0], [1, -1], [-1, -1], [-1, 1], [0, 1]])
    # DeepXDE 1.15's polygon returns float64 boundary points, which its float32 network refuses: cast them
    sample = geom.random_boundary_points
    geom.random_boundary_points = lambda n, random="pseudo": sample(n, random).astype(np.float32)

    def pde(x, u):
        return -dde.grad.hessian(u, x, i=0, j=0) - dde.grad.hessian(u, x, i=1, j=1) - 1

    bc = dde.icbc.DirichletBC(geom, lambda x: 0, lambda x, on_boundary: on_boundary)
    data = dde.data.PDE(geom, pde, bc, num_domain=1200, num_boundary=120, train_distribution="pseudo")
    net = dde.nn.FNN([2] + [50] * 4 + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3)  # then model.train(iterations=...), model.compile("L-BFGS"), model.train()
    return model


def deepxde_disk_hole(dde):
    outer = dde.geometry.Rectangle([-1, -1], [1, 1])
    hole = dde.geometry.Disk([0, 0], 0.3)
    geom = outer - hole

    def pde(x, u):
        lap = dde.grad.hessian(u, x, i=0, j=0) + dde.grad.hessian(u, x, i=1, j=1)
        f = (np.pi**2 - 1) * torch.exp(x[:, 0:1]) * torch.sin(np.pi * x[:, 1:2])
        return -lap - f

    def exact(x):
        return np.exp(x[:, 0:1]) * np.sin(np.pi * x[:, 1:2])

    def hole_flux(x):  # du/dn with n = -(x, y)/0.3, the region's outward normal on the hole
        ux, uy = exact(x), np.pi * np.exp(x[:, 0:1]) * np.cos(np.pi * x[:, 1:2])
        return -(x[:, 0:1] * ux + x[:, 1:2] * uy) / 0.3

    on_outer = lambda x, on_boundary: on_boundary and outer.on_boundary(x)  # noqa: E731
    on_hole = lambda x, on_boundary: on_boundary and hole.on_boundary(x)  # noqa: E731
    bcs = [dde.icbc.DirichletBC(geom, exact, on_outer), dde.icbc.NeumannBC(geom, hole_flux, on_hole)]
    data = dde.data.PDE(geom, pde, bcs, num_domain=1200, num_boundary=120, train_distribution="pseudo")
    net = dde.nn.FNN([2] + [50] * 4 + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3)  # then model.train(iterations=...), model.compile("L-BFGS"), model.train()
    return model


DEEPXDE = {"lshape": deepxde_lshape, "disk_hole": deepxde_disk_hole}


def user_lines(text: str, without: tuple[str, ...] = ()) -> int:
    """Non-blank lines that are not only a comment (YAML and Python alike); ``without``: top-level YAML keys whose lines
    are left out."""
    count, skipping = 0, False
    for line in text.splitlines():
        if not line.strip() or line.strip().startswith("#"):
            continue
        if not line[0].isspace():
            skipping = line.split(":")[0] in without
        count += not skipping
    return count


NOT_IN_DEEPXDE = ("description", "reference", "evaluate")  # what our file states and DeepXDE's user code does not


def deepxde_lines(fn: Callable) -> int:
    """The body of the model-building function, plus ``import deepxde as dde`` and the training calls
    ``model.train(iterations=...)``, ``model.compile("L-BFGS")``, ``model.train()``."""
    body = inspect.getsource(fn).splitlines()[1:]  # without the def line
    return user_lines("\n".join(body).replace("return model", "")) + 4


# ----------------------------------------------------------------------------- runners
def ours(path: Path, seed: int, lbfgs_iterations: int = 1):
    from pdesolve.config import load_run_config
    from pdesolve.optim import make_optimizer
    from pdesolve.solvers.pinn import PINN
    from pdesolve.train import seed_everything

    cfg = load_run_config(path)  # the geometry draws its points pseudo-randomly (DeepXDE's random_points)
    seed_everything(seed)
    solver = PINN(cfg.problem, cfg.solver_options, torch.device("cpu"))
    task = solver.task(lambda: {})
    rules = {"adam": make_optimizer("adam", {"lr": 1e-3}, 0),
             "lbfgs": make_optimizer("lbfgs", {"history_size": 100, "iterations": lbfgs_iterations}, 0)}
    per_step = {"adam": 1, "lbfgs": lbfgs_iterations}  # L-BFGS iterations one training step takes
    for rule in rules.values():
        rule.bind(task)
    state = {"step": 0}

    def train(phase: str, n: int) -> None:
        for _ in range(max(1, n // per_step[phase])):
            task.before_step(state["step"])
            rules[phase].step(state["step"], task)
            state["step"] += 1

    def predict(grid, inside: np.ndarray) -> np.ndarray:
        return solver.predict(grid).numpy().reshape(grid.space_shape)[inside]

    return cfg, train, predict


def deepxde_runner(case: str, seed: int):
    os.environ.setdefault("DDE_BACKEND", "pytorch")
    import deepxde as dde

    dde.config.set_random_seed(seed)
    model = DEEPXDE[case](dde)
    done = {"lbfgs": 0}

    def train(phase: str, n: int) -> None:
        if phase == "adam":
            model.train(iterations=n, display_every=10**9, verbose=0)
            return
        options = dde.optimizers.config.LBFGS_options
        if done["lbfgs"] == 0:  # the user's `model.compile("L-BFGS")`, with n iterations per call
            options["iter_per_step"], options["fun_per_step"] = n, int(1.25 * n)
            model.compile("L-BFGS")
        done["lbfgs"] += n
        options["maxiter"] = done["lbfgs"]  # DeepXDE counts L-BFGS iterations from the first call: one call of n more
        model.train(display_every=10**9, verbose=0)

    def predict(grid, inside: np.ndarray) -> np.ndarray:
        mesh = np.meshgrid(*(a.coords for a in grid.space), indexing="ij")
        pts = np.stack([m[inside] for m in mesh], axis=1)
        return model.predict(pts.astype(np.float32)).ravel()

    return train, predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--adam", type=int, default=1000)
    ap.add_argument("--lbfgs", type=int, default=1000)
    ap.add_argument("--block", type=int, default=250)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--targets", type=float, nargs="+", default=[5e-2, 1e-2])
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    ap.add_argument("--lbfgs-iterations", type=int, default=1,
                    help="our L-BFGS iterations per training step (`lbfgs.iterations`; a divisor of --block)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pdesolve.config import load_run_config
    from pdesolve.metrics import region_mask, relative_l2
    from pdesolve.reference import reference_solution
    from pdesolve.runner import evaluation_grid

    rows = []
    for case in args.cases:
        path = CASES[case]
        grid = evaluation_grid(load_run_config(path))
        t0 = time.perf_counter()
        problem = load_run_config(path).problem
        ref_full = reference_solution(problem, grid)[0]
        ref_time = time.perf_counter() - t0
        inside = region_mask(problem.domain, grid) & ~np.isnan(ref_full)  # the region's points (fd_masked: NaN outside)
        ref = ref_full[inside]
        for seed in args.seeds:
            _, our_train, our_predict = ours(path, seed, args.lbfgs_iterations)
            dde_train, dde_predict = deepxde_runner(case, seed)
            runners = {"pdesolve": (our_train, our_predict), "deepxde": (dde_train, dde_predict)}
            for train, _ in runners.values():
                train("adam", 1)  # warm-up, not timed
            spent = {k: 0.0 for k in runners}
            curve: dict[str, list[tuple[int, float, float]]] = {k: [] for k in runners}
            done = 0
            for phase, steps in (("adam", args.adam), ("lbfgs", args.lbfgs)):
                end = done + steps
                while done < end:
                    n = min(args.block, end - done)
                    for name, (train, predict) in runners.items():
                        t1 = time.perf_counter()
                        train(phase, n)
                        spent[name] += time.perf_counter() - t1
                        curve[name].append((done + n, spent[name], relative_l2(predict(grid, inside), ref)))
                    done += n
            text = path.read_text()
            lines = {"pdesolve": f"{user_lines(text)} ({user_lines(text, NOT_IN_DEEPXDE)})", "deepxde": str(deepxde_lines(DEEPXDE[case]))}
            for name in runners:
                to_target = {f"{t:g}": next((s for _, s, e in curve[name] if e <= t), None) for t in args.targets}
                rows.append({"case": case, "seed": seed, "solver": name, "rel_l2": curve[name][-1][2],
                             "best_rel_l2": min(e for _, _, e in curve[name]), "train_s": spent[name],
                             "ms_per_step": 1000 * spent[name] / (args.adam + args.lbfgs), "time_to": to_target, "lines": lines[name],
                             "reference_s": ref_time, "curve": curve[name]})
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 torch thread",
            "torch": torch.__version__, "adam": args.adam, "lbfgs": args.lbfgs, "block": args.block,
            "lbfgs_iterations": args.lbfgs_iterations, "date": time.strftime("%Y-%m-%d")}
    if args.out is not None:
        from pdesolve.io import write_json

        write_json(args.out, {"meta": meta, "rows": rows})
    print(meta)
    heads = ["case", "seed", "solver", "rel L2", "best", "s", "ms/step"] + [f"s to {t:g}" for t in args.targets] + ["lines"]
    print(" | ".join(heads))
    print(" | ".join("---" for _ in heads))
    for r in rows:
        times = [f"{r['time_to'][f'{t:g}']:.1f}" if r["time_to"][f"{t:g}"] is not None else "-" for t in args.targets]
        print(" | ".join([r["case"], str(r["seed"]), r["solver"], f"{r['rel_l2']:.2e}", f"{r['best_rel_l2']:.2e}", f"{r['train_s']:.1f}",
                          f"{r['ms_per_step']:.2f}", *times, r["lines"]]))


if __name__ == "__main__":
    main()
