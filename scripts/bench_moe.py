"""Benchmark of the hard-constraint solvers on 1D diffusion-sorption: soft (PINN) vs hc vs moe_hc.

1. Accuracy: every solver trains the same backbone (an MLP of the same width and depth) for the same
   number of Adam steps on problems/diffusion_sorption.yaml, evaluated on a 128 x 26 (x, t) grid against
   the finite-volume reference: relative L2, seconds per step, wall time. The soft baseline is the PINN
   with residual, initial and boundary penalties (hard_constraints: false).
2. Cost against the total number m of solve points (split m / K per expert): seconds per training step
   (solve + loss + backward) and per inference (solve + evaluation on the grid), peak resident memory of
   the process. Each configuration runs in its own process so that peak memory is its own.

Usage: nice -n 10 python scripts/bench_moe.py [--steps 150] [--seeds 1] [--ms 100 1000 10000]
       [--json runs/bench_moe.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch

PROBLEM = Path(__file__).resolve().parents[1] / "problems" / "diffusion_sorption.yaml"
EXPERTS = {1: None, 2: {"t": 1, "x": 2}, 4: {"t": 2, "x": 2}, 8: {"t": 2, "x": 4}}
GRID = "evaluate.grid={t: 26, x: 128}"


def hc_options(K: int, m_total: int, width: int, depth: int) -> tuple[str, dict]:
    opts = {"width": width, "depth": depth, "basis": width - 16, "points": {"solve": max(m_total // K, 8), "loss": max(m_total // K, 8)},
            "nonlinear": {"u_floor": 1.0e-3, "max_iter": 20}}
    if K == 1:
        return "hc", opts
    return "moe_hc", {**opts, "experts": EXPERTS[K]}


def soft_options(m_total: int, width: int, depth: int, hard: bool = False) -> tuple[str, dict]:
    return "pinn", {"width": width, "depth": depth, "hard_constraints": hard, "points": {"interior": m_total}}


def one(spec: dict) -> dict:
    """Run one configuration in this process and return its numbers."""
    torch.set_num_threads(1)
    from pdesolve.config import load_run_config
    from pdesolve.solvers import get_solver

    if spec["K"] <= 0:  # 0: soft penalties; -1: the PINN's exact IC/Dirichlet transform
        solver, opts = soft_options(spec["m"], spec["width"], spec["depth"], hard=spec["K"] == -1)
    else:
        solver, opts = hc_options(spec["K"], spec["m"], spec["width"], spec["depth"])
    overrides = [GRID, f"seed={spec['seed']}", "train.optimizer={name: adam, lr: 1.0e-3}"]
    cfg = load_run_config(PROBLEM, overrides + [f"solver={solver}"])
    if spec["mode"] == "accuracy":  # the training loop and metrics of the runner, without its figures
        from pdesolve.metrics import error_metrics
        from pdesolve.optim import make_optimizer
        from pdesolve.reference import reference_solution
        from pdesolve.train import TrainSettings, seed_everything, train

        seed_everything(spec["seed"])
        model = get_solver(solver)(cfg.problem, get_solver(solver).Options(**opts), torch.device("cpu"))
        grid = cfg.problem.domain.grid(cfg.eval_grid)
        ref = reference_solution(cfg.problem, grid)[None]
        task = model.task(lambda: {})
        result = train(task, make_optimizer("adam", {"lr": 1e-3}, spec["steps"]), TrainSettings(steps=spec["steps"], quiet=True))
        rel = error_metrics(model.predict(grid).numpy(), ref)["rel_l2"]
        last = result.history[-1] if result.history else {}
        return {"rel_l2": rel, "status": result.status.kind, "train_s": result.wall_time,
                "s_per_step": result.wall_time / max(result.status.step, 1), "lm_converged": last.get("lm_converged"),
                "lm_iterations_max": last.get("lm_iterations_max")}
    torch.manual_seed(spec["seed"])
    model = get_solver(solver)(cfg.problem, get_solver(solver).Options(**opts), torch.device("cpu"))
    task = model.task(lambda: {})
    opt = torch.optim.Adam(model.model.parameters(), 1e-3)
    times = []
    for _ in range(spec["repeats"] + 1):  # the first is warm-up
        t0 = time.perf_counter()
        loss, _ = task.loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    grid = cfg.problem.domain.grid(cfg.eval_grid)
    inf = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        model.predict(grid)
        inf.append(time.perf_counter() - t0)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"s_per_step": min(times[1:]), "s_per_inference": min(inf), "peak_rss_mib": peak_mib}


def run_child(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def name_of(K: int) -> str:
    return "soft (pinn)" if K == 0 else "pinn transform" if K == -1 else "hc" if K == 1 else f"moe_hc K={K}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--m-accuracy", type=int, default=1000)
    ap.add_argument("--ms", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--json", default="runs/bench_moe.json")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one))))
        return 0
    meta = {"date": str(date.today()), "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "threads": 1, "command": " ".join(sys.argv), "steps": args.steps, "width": args.width, "depth": args.depth}
    rows = []
    print(f"accuracy: {args.steps} Adam steps (lr 1e-3), m = {args.m_accuracy} solve points in total, 128 x 26 grid")
    print(f"{'solver':<14}{'seed':>5}{'rel L2':>10}{'s/step':>9}{'LM conv.':>10}")
    for K in (0, -1, 1, 2, 4, 8):
        for seed in range(args.seeds):
            spec = {"mode": "accuracy", "K": K, "m": args.m_accuracy, "seed": seed, "steps": args.steps,
                    "width": args.width, "depth": args.depth}
            r = {**spec, **run_child(spec)}
            rows.append(r)
            conv = r.get("lm_converged")
            print(f"{name_of(K):<14}{seed:>5}{r.get('rel_l2') or float('nan'):>10.4f}{r.get('s_per_step', float('nan')):>9.3f}"
                  f"{'' if conv is None else f'{conv:.2f}':>10}  {r.get('status', '')} {r.get('error', '')}", flush=True)
    print("\ncost against m (total solve points; m / K per expert)")
    print(f"{'solver':<14}{'m':>7}{'s/step':>9}{'s/infer':>9}{'peak MiB':>10}")
    for m in args.ms:
        for K in (0, 1, 2, 4, 8):
            spec = {"mode": "cost", "K": K, "m": m, "seed": 0, "repeats": args.repeats, "width": args.width, "depth": args.depth}
            r = {**spec, **run_child(spec)}
            rows.append(r)
            print(f"{name_of(K):<14}{m:>7}{r.get('s_per_step', float('nan')):>9.3f}{r.get('s_per_inference', float('nan')):>9.3f}"
                  f"{r.get('peak_rss_mib', float('nan')):>10.0f}  {r.get('error', '')}", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
