"""The hard PINN benchmarks with the shipped settings, and each training method's contribution (issue 17).

For each problem (its file's `solvers.pinn` and `train` settings, the shipped ones), each seed: the relative L2
against the problem's reference every `--eval-every` steps, the wall time to reach 1e-2 (and 1e-3), and the final
error; then one ablation row per method the settings use (the same run with that method switched off).

    python scripts/bench_pinn_hard.py --problems allen_cahn kdv convection_beta50 --seeds 0 1 2
    python scripts/bench_pinn_hard.py --problems allen_cahn --ablate --seeds 0

Writes docs/bench_pinn_hard.json (atomically; rows are added to what is there). Pin one thread: on the 2-core
machine the figures are CPU minutes at 1 thread.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import pdesolve as ps
from pdesolve.config import load_run_config
from pdesolve.io import write_json

ROOT = Path(__file__).resolve().parents[1]

# method -> the override that switches it off (only methods the problem's settings turn on are ablated)
ABLATIONS = {
    "time_marching": "solvers.pinn.time_marching=null",
    "causal": "solvers.pinn.causal=null",
    "fourier_features": "solvers.pinn.fourier_features=null",
    "weight_factorization": "solvers.pinn.weight_factorization=null",
    "adaptive_weights": "solvers.pinn.adaptive_weights=null",
    "curriculum": "solvers.pinn.curriculum=null",
}


def first_below(history: list[dict[str, float]], level: float) -> dict[str, float] | None:
    """The first evaluated row whose error is at most ``level`` (its step and wall time), or None."""
    for row in history:
        if "rel_l2" in row and row["rel_l2"] <= level:
            return {"step": row["step"], "time": row["time"]}
    return None


def run(problem: str, seed: int, overrides: list[str], eval_every: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = ps.solve(ROOT / "problems" / f"{problem}.yaml", "pinn", seed=seed, quiet=True, device="cpu",
                          overrides=[f"train.eval_every={eval_every}", *overrides], out=Path(tmp) / "run")
        wall = time.perf_counter() - t0
    curve = [(row["step"], row["time"], row["rel_l2"]) for row in result.history if "rel_l2" in row]
    return {"problem": problem, "seed": seed, "overrides": overrides, "rel_l2": result.metrics["rel_l2"], "wall_s": wall,
            "to_1e-2": first_below(result.history, 1e-2), "to_1e-3": first_below(result.history, 1e-3), "curve": curve,
            "status": result.status.kind}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=["allen_cahn", "kdv", "convection_beta50"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--ablate", action="store_true", help="also one run per method switched off")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--set", nargs="*", default=[], help="extra key=value overrides for every run")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_pinn_hard.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    for problem in args.problems:
        options = load_run_config(ROOT / "problems" / f"{problem}.yaml", ["solver=pinn"]).solver_options
        variants = [("all on", [])]
        if args.ablate:
            variants += [(f"without {m}", [off]) for m, off in ABLATIONS.items() if getattr(options, m) is not None]
        for label, extra in variants:
            for seed in args.seeds:
                row = run(problem, seed, [*args.set, *extra], args.eval_every)
                row["variant"] = label
                rows.append(row)
                print(f"{problem:18s} {label:28s} seed {seed}: rel L2 {row['rel_l2']:.3e}  wall {row['wall_s']:.0f} s  "
                      f"to 1e-2: {row['to_1e-2']}", flush=True)
                write_json(args.out, {"machine": "2-core AMD EPYC, CPU only, torch 2.13 CPU, 1 thread", "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
