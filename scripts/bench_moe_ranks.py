"""Benchmark of ``moe_hc`` with its solves spread over torch.distributed ranks: 1 rank against 2 (or more).

Diffusion-sorption in the family setting (the shipped ``solvers.moe_hc``: 4 time slabs, Levenberg-Marquardt
solves; ``--batch`` initial conditions per step, so each slab's ``batch`` solves split over the ranks), run
through the CLI under ``torchrun`` with ``distributed: true``. Reported per rank count: seconds per training
step (from the run's history, first logged step excluded), wall time of the whole command, and the relative
L2 errors (problem's own initial condition and held-out ones), which must not depend on the rank count.
Rank counts alternate (1, 2, 1, 2, ...) so both see the same machine load; compare the ratio.

Usage: nice -n 10 python scripts/bench_moe_ranks.py [--steps 60] [--repeats 2] [--ranks 1 2]
       [--json docs/bench_moe_ranks.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = ROOT / "problems" / "diffusion_sorption.yaml"


def command(ranks: int, out: Path, args: argparse.Namespace) -> list[str]:
    family = (f"{{train: 16, test: {args.test}, batch: {args.batch}, sensors: 16, parameters: {{initial.u: [0, 0.2]}}}}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", "-m", "pdesolve", "solve",
            str(PROBLEM), "--solver", "moe_hc", "--threads", "1", "--quiet", "--steps", str(args.steps), "--out", str(out),
            "--set", "solvers.moe_hc.distributed=true", "--set", f"solvers.moe_hc.family={family}",
            "--set", "evaluate.grid={t: 26, x: 128}", "--set", "train.log_every=5",
            "--set", f"solvers.moe_hc.points={{solve: {args.solve_points}, loss: {args.loss_points}}}"] + (
            ["--set", f"solvers.moe_hc.tikhonov={args.tikhonov}"] if args.tikhonov is not None else [])


def one(ranks: int, args: argparse.Namespace, folder: Path) -> dict:
    out = folder / f"ranks{ranks}-{time.monotonic_ns()}"
    t0 = time.perf_counter()
    proc = subprocess.run(command(ranks, out, args), capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{ranks} ranks failed:\n{proc.stderr[-3000:]}")
    history = list(csv.DictReader((out / "history.csv").open()))
    steps = np.array([float(h["step"]) for h in history])
    times = np.array([float(h["time"]) for h in history])
    metrics = json.loads((out / "metrics.json").read_text())
    return {"ranks": ranks, "s_per_step": float((times[-1] - times[0]) / (steps[-1] - steps[0])), "wall_s": wall,
            "train_s": metrics["wall_time_s"], "rel_l2": metrics["rel_l2"], "test_rel_l2": metrics.get("family", {}).get("test_rel_l2")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, default=4, help="initial conditions per step (solves per time slab)")
    p.add_argument("--test", type=int, default=4)
    p.add_argument("--solve-points", type=int, default=128, help="solve points per expert (the shipped 128 by default)")
    p.add_argument("--loss-points", type=int, default=64, help="loss points per expert and step")
    p.add_argument("--tikhonov", type=float, default=None, help="the solves' Tikhonov weight (default: the problem file's)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for ranks in args.ranks:
                row = one(ranks, args, Path(tmp))
                row["repeat"] = rep
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = {}
    for ranks in args.ranks:
        mine = [r for r in rows if r["ranks"] == ranks]
        summary[ranks] = {k: float(np.median([r[k] for r in mine])) for k in ("s_per_step", "wall_s", "train_s", "rel_l2")}
    base = summary[args.ranks[0]]["s_per_step"]
    print("\n| ranks | s / step (median) | speed-up | command wall s | rel. L2 (own IC) | held-out rel. L2 |")
    print("|---|---|---|---|---|---|")
    for ranks in args.ranks:
        s = summary[ranks]
        test = [r["test_rel_l2"] for r in rows if r["ranks"] == ranks]
        print(f"| {ranks} | {s['s_per_step']:.3f} | {base / s['s_per_step']:.2f}x | {s['wall_s']:.1f} | {s['rel_l2']:.4f} | "
              f"{np.median(test):.4f} |")
    if args.json is not None:
        meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(), "settings": vars(args) | {"json": str(args.json)}}
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
