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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import pdesolve as ps
from pdesolve.config import RunConfig, load_run_config
from pdesolve.io import write_json
from pdesolve.optim import AdamLBFGSOptions

ROOT = Path(__file__).resolve().parents[1]

# method -> (whether the problem's settings use it, the override that switches it off); only methods in use are ablated
ABLATIONS: dict[str, tuple[Callable[[RunConfig], bool], Callable[[RunConfig], str]]] = {
    "time_marching": (lambda c: c.solver_options.time_marching is not None, lambda c: "solvers.pinn.time_marching=null"),
    "causal": (lambda c: c.solver_options.causal is not None, lambda c: "solvers.pinn.causal=null"),
    "periodic_modes": (lambda c: c.solver_options.periodic_modes > 1, lambda c: "solvers.pinn.periodic_modes=1"),
    "fourier_features": (lambda c: c.solver_options.fourier_features is not None, lambda c: "solvers.pinn.fourier_features=null"),
    "weight_factorization": (lambda c: c.solver_options.weight_factorization is not None,
                             lambda c: "solvers.pinn.weight_factorization=null"),
    "adaptive_weights": (lambda c: c.solver_options.adaptive_weights is not None, lambda c: "solvers.pinn.adaptive_weights=null"),
    "curriculum": (lambda c: c.solver_options.curriculum is not None, lambda c: "solvers.pinn.curriculum=null"),
    # L-BFGS in every window off: Adam alone at the same learning rate, the same steps and points
    "lbfgs_cycles": (lambda c: isinstance(c.optimizer_options, AdamLBFGSOptions) and c.optimizer_options.cycle is not None,
                     lambda c: f"solvers.pinn.train.optimizer={{name: adam, lr: {c.optimizer_options.lr}}}"),
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
    ap.add_argument("--only-ablations", action="store_true", help="the ablation rows only (the all-on rows measured already)")
    ap.add_argument("--methods", nargs="+", help="ablate only these methods (default: every one the settings use)")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--set", nargs="*", default=[], help="extra key=value overrides for every run")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_pinn_hard.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    for problem in args.problems:
        cfg = load_run_config(ROOT / "problems" / f"{problem}.yaml", ["solver=pinn"])
        variants = [("all on", [])] if not args.only_ablations else []
        if args.ablate or args.only_ablations:
            variants += [(f"without {m}", [off(cfg)]) for m, (used, off) in ABLATIONS.items()
                         if used(cfg) and (args.methods is None or m in args.methods)]
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
