"""Benchmark of the hard-constraint solvers on 1D diffusion-sorption: soft vs hc vs moe_hc (K experts).

1. Accuracy, family setting: one backbone over the initial condition (constant u0 drawn in [0, 0.2] as in
   the problem's ``simulate:`` section), trained on ``--train`` drawn ICs and evaluated on ``--test``
   held-out ones against the finite-volume simulator on a 128 x 26 (x, t) grid: mean relative L2 per seed.
   Every solver has the same backbone (MLP width/depth, N basis functions), points and Adam steps. "soft"
   is the same backbone with trained output weights and the residual + condition penalties
   (``solvers.hc.soft``); "hc" is one global solve; "moe_hc K" splits t into K slabs, solved in order
   (each slab starts from the previous one's solution).
2. Cost against the total number m of solve points (m / K per expert), single problem: seconds per
   training step (solve + loss + backward) and per inference (solve + evaluation on the grid), and the
   process's peak resident memory above its resident memory before the first step.
Each configuration runs in its own process (one at a time), so peak memory is its own.

Usage: nice -n 10 python scripts/bench_moe.py [--steps 200] [--seeds 3] [--ms 100 1000 10000]
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
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

PROBLEM = Path(__file__).resolve().parents[1] / "problems" / "diffusion_sorption.yaml"
GRID = {"t": 26, "x": 128}
SOLVERS = ("soft", "hc", "moe_hc K=2", "moe_hc K=4", "moe_hc K=8")


def options(name: str, m_total: int, args: argparse.Namespace, family: bool) -> tuple[str, dict]:
    """Solver name and options: the same backbone and points for every solver; K experts along t."""
    K = int(name.split("K=")[1]) if "K=" in name else 1
    per = max(m_total // K, 8)
    opts: dict = {"width": args.width, "depth": args.depth, "basis": args.basis, "constraint_weight": args.rho, "tikhonov": args.tikhonov,
                  "points": {"solve": per, "loss": max(args.loss_points // K, 8)},
                  "nonlinear": {"u_floor": 1.0e-3, "max_iter": args.max_iter, "tol": 1.0e-6}}
    if name == "soft":
        opts["soft"] = True
    if family:
        opts["family"] = {"train": args.train, "test": args.test, "batch": args.batch, "sensors": 16,
                          "parameters": {"initial.u": [0.0, 0.2]}}
    return ("moe_hc", {**opts, "experts": {"t": K}}) if K > 1 else ("hc", opts)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(spec: dict, args: argparse.Namespace) -> dict:
    """One configuration in this process; returns its numbers."""
    torch.set_num_threads(1)
    from pdesolve.config import load_run_config
    from pdesolve.optim import make_optimizer
    from pdesolve.solvers import get_solver
    from pdesolve.train import TrainSettings, seed_everything, train

    family = spec["mode"] == "accuracy"
    solver, opts = options(spec["name"], spec["m"], args, family)
    cfg = load_run_config(PROBLEM, [f"solver={solver}"])
    grid = cfg.problem.domain.grid(GRID)
    seed_everything(spec["seed"])
    cls = get_solver(solver)
    model = cls(cfg.problem, cls.Options(**opts), torch.device("cpu"))
    task = model.task(lambda: {})
    if family:
        before = model.family_metrics(grid)["test_rel_l2"]  # also computes (and caches) the held-out references
        t0 = time.perf_counter()
        rule = {"lr": args.lr} | ({"schedule": "cosine", "min_lr": args.lr / 100} if args.schedule == "cosine" else {})
        result = train(task, make_optimizer("adam", rule, spec["steps"]), TrainSettings(steps=spec["steps"], quiet=True))
        wall = time.perf_counter() - t0
        after = model.family_metrics(grid)
        last = result.history[-1] if result.history else {}
        return {"test_rel_l2": after["test_rel_l2"], "test_rel_l2_max": after["test_rel_l2_max"], "untrained_rel_l2": before,
                "status": result.status.kind, "s_per_step": wall / max(result.status.step, 1),
                "lm_converged": last.get("lm_converged"), "violation_max": last.get("constraint_violation_max")}
    base = rss_mib()
    opt = torch.optim.Adam(model.model.parameters(), args.lr)
    steps = []
    for _ in range(args.repeats + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        loss, _ = task.loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps.append(time.perf_counter() - t0)
    infer = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model.predict(grid)
        infer.append(time.perf_counter() - t0)
    return {"s_per_step": min(steps[1:]), "s_per_inference": min(infer), "peak_rss_mib": rss_mib(), "rss_before_mib": base,
            "peak_above_start_mib": rss_mib() - base}


def run_child(spec: dict, argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *argv, "--one", json.dumps(spec)], capture_output=True, text=True)
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--m-accuracy", type=int, default=512, help="solve points in total (m / K per expert)")
    ap.add_argument("--loss-points", type=int, default=256, help="fresh loss points per step in total")
    ap.add_argument("--train", type=int, default=32)
    ap.add_argument("--test", type=int, default=8)
    ap.add_argument("--batch", type=int, default=2, help="initial conditions per step")
    ap.add_argument("--ms", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--basis", type=int, default=48)
    ap.add_argument("--rho", type=float, default=10.0, help="constraint_weight of the condition rows")
    ap.add_argument("--max-iter", type=int, default=10)
    ap.add_argument("--tikhonov", type=float, default=1e-9, help="the solves' Tikhonov weight (relative), as solvers.hc.tikhonov")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--schedule", choices=["constant", "cosine"], default="constant", help="cosine: from lr down to lr / 100")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-cost", action="store_true")
    ap.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=SOLVERS, metavar="NAME", help=f"among {list(SOLVERS)}")
    ap.add_argument("--json", default="runs/bench_moe.json")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one), args)))
        return 0
    from pdesolve.io import write_json

    forward = [a for a in sys.argv[1:] if a not in ("--skip-accuracy", "--skip-cost")]
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="minutes"), "machine": platform.processor() or platform.machine(),
            "platform": platform.platform(), "torch": torch.__version__, "threads": 1, "command": " ".join(sys.argv),
            "settings": {k: v for k, v in vars(args).items() if k not in ("one", "json")}}
    rows: list[dict] = []

    def save() -> None:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, {"meta": meta, "rows": rows})

    if not args.skip_accuracy:
        print(f"accuracy (family): {args.steps} Adam steps (lr {args.lr}), {args.train} training ICs, {args.test} held out, "
              f"{args.batch} per step, m = {args.m_accuracy} solve points in total, 128 x 26 grid")
        print(f"{'solver':<12}{'seed':>5}{'untrained':>11}{'test L2':>10}{'worst':>8}{'s/step':>8}{'LM conv':>9}")
        for seed in range(args.seeds):
            for name in args.solvers:
                spec = {"mode": "accuracy", "name": name, "m": args.m_accuracy, "seed": seed, "steps": args.steps}
                r = {**spec, **run_child(spec, forward)}
                rows.append(r)
                save()
                conv = r.get("lm_converged")
                print(f"{name:<12}{seed:>5}{r.get('untrained_rel_l2', np.nan):>11.4f}{r.get('test_rel_l2', np.nan):>10.4f}"
                      f"{r.get('test_rel_l2_max', np.nan):>8.4f}{r.get('s_per_step', np.nan):>8.3f}"
                      f"{'' if conv is None else f'{conv:.2f}':>9}  {r.get('error', '')}", flush=True)
        for name in args.solvers:
            errs = [r["test_rel_l2"] for r in rows if r.get("name") == name and "test_rel_l2" in r]
            if errs:
                print(f"{name:<12} mean {np.mean(errs):.4f} +- {np.std(errs):.4f} over {len(errs)} seeds")
    print("\ncost against m (total solve points, m / K per expert), single problem")
    print(f"{'solver':<12}{'m':>7}{'s/step':>9}{'s/infer':>9}{'peak MiB':>10}{'+MiB':>8}")
    for m in [] if args.skip_cost else args.ms:
        for name in args.solvers:
            spec = {"mode": "cost", "name": name, "m": m, "seed": 0}
            r = {**spec, **run_child(spec, forward)}
            rows.append(r)
            save()
            print(f"{name:<12}{m:>7}{r.get('s_per_step', np.nan):>9.3f}{r.get('s_per_inference', np.nan):>9.3f}"
                  f"{r.get('peak_rss_mib', np.nan):>10.0f}{r.get('peak_above_start_mib', np.nan):>8.0f}  {r.get('error', '')}", flush=True)
    meta["finished"] = datetime.now(timezone.utc).isoformat(timespec="minutes")
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
