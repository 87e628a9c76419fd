"""Where a hard-constraint training step spends its time at m solve points: hc against moe_hc (K time slabs).

Diffusion-sorption, single problem, the bench_moe.py backbone (width 64, depth 3, N = 48, weighted rows,
Levenberg-Marquardt with 10 iterations), untrained. Per solver, the faster of 2 repeats: the basis features
(values and derivatives at the m points) forward and backward, and the whole solve (features plus every
expert's Levenberg-Marquardt) forward and backward (the implicit-function backward). Shows which parts grow
with m and whether splitting m among K experts changes them.

Usage: nice -n 10 python scripts/bench_moe_breakdown.py [--m 10000] [--ks 1 4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

PROBLEM = Path(__file__).resolve().parents[1] / "problems" / "diffusion_sorption.yaml"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--m", type=int, default=10000, help="solve points in total (m / K per expert)")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 4])
    args = p.parse_args()
    torch.set_num_threads(1)
    from pdesolve.config import load_run_config
    from pdesolve.solvers.hc import HC, MoEHC

    problem = load_run_config(PROBLEM, ["solver=hc"]).problem
    print(f"m = {args.m}; seconds, the faster of 2 repeats")
    print("| solver | features fwd | features bwd | solve fwd (features + LM) | solve bwd |")
    print("|---|---:|---:|---:|---:|")
    for K in args.ks:
        cls = HC if K == 1 else MoEHC
        opts = dict(width=64, depth=3, basis=48, constraint_weight=10.0, points={"solve": args.m // K, "loss": 8},
                    nonlinear={"u_floor": 1e-3, "max_iter": 10, "tol": 1e-6}) | ({"experts": {"t": K}} if K > 1 else {})
        torch.manual_seed(0)
        solver = cls(problem, cls.Options(**opts), torch.device("cpu"))
        pts = solver.model.solve_points
        best = [float("inf")] * 4
        for _ in range(2):
            t = [time.perf_counter()]
            f = solver.model.basis.features(pts.reshape(-1, pts.shape[-1]))
            t.append(time.perf_counter())
            f.sum().backward()
            t.append(time.perf_counter())
            w, _, _ = solver.solve_with_conditions(pts)
            t.append(time.perf_counter())
            w.sum().backward()
            t.append(time.perf_counter())
            solver.model.zero_grad()
            best = [min(b, t1 - t0) for b, t0, t1 in zip(best, t, t[1:])]
        name = "hc" if K == 1 else f"moe_hc K = {K}"
        print(f"| {name} | " + " | ".join(f"{b:.3f}" for b in best) + " |")


if __name__ == "__main__":
    main()
