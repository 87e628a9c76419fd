"""Our PINN against DeepXDE's PINN (pytorch backend), side by side in one process, on viscous Burgers.

Same network (3 hidden layers of 20, tanh, Glorot normal), same point counts (2540 interior, 80 boundary,
160 initial), same Adam settings (lr 1e-3), then L-BFGS. Adam iterations are timed in interleaved blocks
(ours, DeepXDE, ours, ...) so that a busy machine slows both alike; the reported ratio is DeepXDE's time
per iteration over ours. Errors are relative L2 on a 256 x 100 grid against the Cole-Hopf reference.

Our variants: ``hard`` / ``soft`` (exact transform or penalty for the IC and walls), ``-generic`` (the generic jet
pass instead of the fused MLP of nn/fused_mlp.py, which a plain MLP gets by default), ``-compiled`` (torch.compile).
Our L-BFGS also runs in interleaved blocks, and the training time at which each runner first reaches ``--target``
(checked after every block, evaluation not timed) is recorded. DeepXDE's L-BFGS restarts on every ``train`` call, so
it runs in one call after ours, checked by a callback every ``--block`` iterations (DeepXDE's ``iter_per_step``; the
callback's evaluation is not timed).

    python scripts/bench_pinn.py --adam 5000 --lbfgs 3000 --out docs/bench_pinn.json
"""

from __future__ import annotations

import argparse
import os

# one thread throughout: torch.compile's C++ kernels otherwise open an OpenMP team per core, which on a shared
# machine made the compiled step 5x slower than the eager one (measured); set before torch starts its pool
os.environ.setdefault("OMP_NUM_THREADS", "1")
import platform
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from pdesolve.io import write_json
from pdesolve.sampling import SAMPLERS

ROOT = Path(__file__).resolve().parents[1]


def ours(variant: str, seed: int, sampler: str):
    from pdesolve.config import load_run_config
    from pdesolve.optim import make_optimizer
    from pdesolve.solvers.pinn import PINN
    from pdesolve.train import seed_everything

    hard = variant.startswith("hard")
    compiled = variant.endswith("compiled")
    generic = "-generic" in variant
    overrides = [f"solvers.pinn.hard_constraints={str(hard).lower()}", f"solvers.pinn.compile={str(compiled).lower()}",
                 "solvers.pinn.points.interior=2540", "solvers.pinn.points.boundary=80", "solvers.pinn.points.initial=160",
                 f"solvers.pinn.points.sampler={sampler}"]
    cfg = load_run_config(ROOT / "problems" / "burgers.yaml", overrides)
    seed_everything(seed)
    solver = PINN(cfg.problem, cfg.solver_options, torch.device("cpu"))
    solver.model.fused = solver.model.fused and not generic
    task = solver.task(lambda: {})
    state = {"step": 0}

    def run(n: int, rule) -> None:
        for _ in range(n):
            task.before_step(state["step"])
            rule.step(state["step"], task)
            state["step"] += 1

    adam = make_optimizer("adam", {"lr": 1e-3}, 0)
    adam.bind(task)
    lbfgs_rule = make_optimizer("lbfgs", {"history_size": 100}, 0)

    def predict(grid):
        return solver.predict(grid).numpy()[0, :, 0]

    def lbfgs(n: int) -> None:
        if lbfgs_rule.opt is None:
            lbfgs_rule.bind(task)
        run(n, lbfgs_rule)

    return cfg, (lambda n: run(n, adam)), lbfgs, predict


def deepxde_model(seed: int, block: int):
    os.environ.setdefault("DDE_BACKEND", "pytorch")
    import deepxde as dde

    dde.config.set_random_seed(seed)
    geom = dde.geometry.GeometryXTime(dde.geometry.Interval(-1, 1), dde.geometry.TimeDomain(0, 1))

    def pde(x, y):
        dy_x = dde.grad.jacobian(y, x, i=0, j=0)
        dy_t = dde.grad.jacobian(y, x, i=0, j=1)
        dy_xx = dde.grad.hessian(y, x, i=0, j=0)
        return dy_t + y * dy_x - 0.01 / np.pi * dy_xx

    bc = dde.icbc.DirichletBC(geom, lambda x: 0, lambda _, on_boundary: on_boundary)
    ic = dde.icbc.IC(geom, lambda x: -np.sin(np.pi * x[:, 0:1]), lambda _, on_initial: on_initial)
    data = dde.data.TimePDE(geom, pde, [bc, ic], num_domain=2540, num_boundary=80, num_initial=160)
    net = dde.nn.FNN([2] + [20] * 3 + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3)

    def adam(n: int) -> None:
        model.train(iterations=n, display_every=10**9, verbose=0)

    class EveryBlock(dde.callbacks.Callback):
        """Calls ``check(iteration, untimed)`` after every DeepXDE L-BFGS step of ``block`` iterations, ``untimed``
        the seconds the earlier checks took (to leave out of the training time)."""

        def __init__(self, check):
            super().__init__()
            self.check, self.untimed = check, 0.0

        def on_epoch_end(self):
            t0 = time.perf_counter()
            self.check(self.model.train_state.iteration, self.untimed)
            self.untimed += time.perf_counter() - t0

    def lbfgs(n: int, check=None) -> float:
        """n L-BFGS iterations in one call, ``check(iteration, untimed)`` after every block; returns the seconds the
        checks took."""
        dde.optimizers.set_LBFGS_options(maxiter=n)
        # DeepXDE computes its per-call iteration cap at import time; keep it consistent with maxiter
        dde.optimizers.config.LBFGS_options["iter_per_step"] = min(block, n)
        dde.optimizers.config.LBFGS_options["fun_per_step"] = int(min(block, n) * 1.25)
        model.compile("L-BFGS")
        callback = EveryBlock(check or (lambda *_: None))
        model.train(display_every=10**9, verbose=0, callbacks=[callback])
        return callback.untimed

    def predict(grid):
        m = grid.mesh()
        xt = np.stack([m["x"].ravel(), m["t"].ravel()], axis=1)
        return model.predict(xt).reshape(m["t"].shape)

    return adam, lbfgs, predict


def below(predict, grid, ref: np.ndarray, target: float) -> bool:
    """Whether ``predict``'s relative L2 error on ``grid`` is at most ``target``."""
    from pdesolve.metrics import relative_l2

    return relative_l2(predict(grid), ref) <= target


def lbfgs_to_target(lbfgs, reached, n: int) -> tuple[float, tuple[float, int] | None]:
    """DeepXDE's ``n`` L-BFGS iterations in one call: the training seconds (checks left out) and, if ``reached()``
    held after some block, the training seconds and iteration count at the first such block."""
    start, hit = time.perf_counter(), None

    def check(iteration: int, untimed: float) -> None:
        nonlocal hit
        elapsed = time.perf_counter() - start - untimed
        if hit is None and reached():
            hit = (elapsed, iteration)

    untimed = lbfgs(n, check)
    return time.perf_counter() - start - untimed, hit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adam", type=int, default=5000)
    ap.add_argument("--lbfgs", type=int, default=3000)
    ap.add_argument("--block", type=int, default=250, help="Adam iterations per interleaved timing block")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--variants", nargs="+", default=["hard", "hard-generic", "soft", "soft-generic", "hard-compiled", "soft-compiled"],
                    choices=[f"{c}{g}{k}" for c in ("hard", "soft") for g in ("", "-generic") for k in ("", "-compiled")],
                    help="hard/soft: exact transform or penalty for IC and walls; -generic: the generic jet pass, not the fused "
                         "MLP; -compiled: with torch.compile")
    ap.add_argument("--target", type=float, default=1e-2, help="relative L2 error whose training time is recorded")
    ap.add_argument("--samplers", nargs="+", default=["lhs"], choices=list(SAMPLERS),
                    help="collocation samplers of our variants (DeepXDE always uses its default, Hammersley)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_pinn.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pdesolve.metrics import relative_l2
    from pdesolve.reference import reference_solution

    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 torch thread",
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "adam": args.adam, "lbfgs": args.lbfgs,
            "samplers": args.samplers, "target": args.target}
    rows = []
    for seed in args.seeds:
        runners = {}
        compile_time = {}
        for v in args.variants:
            for sampler in args.samplers:
                name = f"pdesolve-{v}" + (f"-{sampler}" if len(args.samplers) > 1 else "")
                cfg, adam, lbfgs, predict = ours(v, seed, sampler)
                t0 = time.perf_counter()
                adam(1)  # warm-up (and compilation for the compiled variants), not timed below
                compile_time[name] = time.perf_counter() - t0
                runners[name] = (adam, lbfgs, predict)
        runners["deepxde"] = deepxde_model(seed, args.block)
        runners["deepxde"][0](1)
        compile_time["deepxde"] = 0.0
        grid = cfg.problem.domain.grid({"t": 100, "x": 256})
        ref = reference_solution(cfg.problem, grid)[:, 0]
        adam_time = {k: 0.0 for k in runners}
        trained = {k: 0.0 for k in runners}
        reached: dict[str, tuple[float, int] | None] = {k: None for k in runners}

        done = 0
        while done < args.adam:
            n = min(args.block, args.adam - done)
            for name, (adam, _, _) in runners.items():
                t0 = time.perf_counter()
                adam(n)
                elapsed = time.perf_counter() - t0
                adam_time[name] += elapsed
                trained[name] += elapsed
                if reached[name] is None and relative_l2(runners[name][2](grid), ref) <= args.target:
                    reached[name] = (trained[name], done + n)
            done += n
        after_adam = {k: relative_l2(r[2](grid), ref) for k, r in runners.items()}
        lbfgs_time = {k: 0.0 for k in runners}
        done = 0
        while done < args.lbfgs:
            n = min(args.block, args.lbfgs - done)
            for name, (_, lbfgs, _) in runners.items():
                if name == "deepxde":
                    continue
                t0 = time.perf_counter()
                lbfgs(n)
                elapsed = time.perf_counter() - t0
                lbfgs_time[name] += elapsed
                trained[name] += elapsed
                if reached[name] is None and relative_l2(runners[name][2](grid), ref) <= args.target:
                    reached[name] = (trained[name], args.adam + done + n)
            done += n
        # DeepXDE's L-BFGS in one call (it restarts on every call), checked after every block by a callback
        _, dde_lbfgs, dde_predict = runners["deepxde"]
        elapsed, hit = lbfgs_to_target(dde_lbfgs, partial(below, dde_predict, grid, ref, args.target), args.lbfgs)
        lbfgs_time["deepxde"] += elapsed
        if reached["deepxde"] is None and hit is not None:
            reached["deepxde"] = (trained["deepxde"] + hit[0], hit[1])
        trained["deepxde"] += elapsed
        for name, r in runners.items():
            hit = reached[name]
            rows.append({
                "seed": seed, "solver": name,
                "adam_ms_per_iter": 1000 * adam_time[name] / args.adam,
                "speed_vs_deepxde": adam_time["deepxde"] / adam_time[name],
                "rel_l2_after_adam": after_adam[name],
                "lbfgs_s": lbfgs_time[name],
                "warmup_s": compile_time[name],
                "rel_l2_after_lbfgs": relative_l2(r[2](grid), ref),
                "seconds_to_target": hit[0] if hit else None,
                "steps_to_target": hit[1] if hit else None,
            })
        import deepxde

        meta["deepxde"] = deepxde.__version__
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, {"meta": meta, "rows": rows})  # after every seed, so a long run keeps what it measured
    heads = ("seed", "warm-up s", "Adam ms/it", "speed x", "L2 Adam", "L-BFGS s", "L2 final", "s to target", "steps")
    print(f"{'solver':24s} " + " ".join(f"{h:>11s}" for h in heads))
    for r in rows:
        hit = r["seconds_to_target"]
        to_target = f"{hit:11.1f} {r['steps_to_target']:11d}" if hit is not None else f"{'-':>11s} {'-':>11s}"
        print(f"{r['solver']:24s} {r['seed']:11d} {r['warmup_s']:11.1f} {r['adam_ms_per_iter']:11.2f} {r['speed_vs_deepxde']:11.2f} "
              f"{r['rel_l2_after_adam']:11.2e} {r['lbfgs_s']:11.1f} {r['rel_l2_after_lbfgs']:11.2e} {to_target}")


if __name__ == "__main__":
    main()
