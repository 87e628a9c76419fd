"""Magnitude invariant vs naive hypernetwork PINNs on parametric families: steps to a held-out error level.

For each family (convection beta in [1, 30], heat nu in [0.01, 0.1]), each encoding (``mip``, ``naive``) and each
seed, the hyper_pinn solver trains with Adam and is scored every ``--eval-every`` steps on the held-out members of
the problem file (the mean over members of each member's relative L2 against its exact solution). Reported: the
steps each run needs to reach ``--level`` (default 1e-2), the MIP / naive ratio of the mean steps, and the
divergence count (a non-finite loss, or a held-out error that grows above 10x its running minimum). When a level
is not reached by every run, the table also gives the lowest level every run of the family reaches, and the
steps to it. Writes the curves and the summary as JSON (``--out``, default ``docs/bench_hypernet.json``).

    python scripts/bench_hypernet.py            # the table of docs/benchmarks.md (12 runs of 2000 steps: 15 to 25 minutes at 1 thread)
    python scripts/bench_hypernet.py --quick    # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pdesolve.config import load_run_config  # noqa: E402
from pdesolve.io import write_json  # noqa: E402
from pdesolve.optim import make_optimizer  # noqa: E402
from pdesolve.parametric import HeldOut  # noqa: E402
from pdesolve.solvers.hyper_pinn import HyperPINN  # noqa: E402
from pdesolve.train import TrainSettings, train  # noqa: E402

FAMILIES = {"convection": ROOT / "problems" / "convection_parametric.yaml", "heat": ROOT / "problems" / "heat_parametric.yaml"}
ENCODINGS = ("mip", "naive")
DIVERGED_FACTOR = 10.0
LEVELS = (0.8, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01)  # the steps each run needs to reach each of these, for the curves' table


def run_one(path: Path, encoding: str, seed: int, steps: int, eval_every: int, overrides: list[str]) -> dict[str, Any]:
    """Train one hyper_pinn run; its held-out error curve, loss curve, status and wall time."""
    cfg = load_run_config(path, [f"solvers.hyper_pinn.encoding={encoding}", f"seed={seed}", f"train.steps={steps}", *overrides])
    torch.manual_seed(cfg.seed)
    solver = HyperPINN(cfg.problem, cfg.solver_options, torch.device("cpu"))  # type: ignore[arg-type]
    held = HeldOut.of(cfg.problem, cfg.eval_params, cfg.problem.domain.grid(cfg.eval_grid), str(path))
    task = solver.task(lambda: HeldOut.scalars(held.metrics(held.predict(solver).numpy())))
    rule = make_optimizer(cfg.train.optimizer.name, cfg.optimizer_options, steps)  # type: ignore[arg-type]
    start = time.perf_counter()
    result = train(task, rule, TrainSettings(steps=steps, eval_every=eval_every, log_every=eval_every, checkpoint_every=0, quiet=True))
    wall = time.perf_counter() - start
    rows = [r for r in result.history if "rel_l2" in r]
    return {
        "encoding": encoding, "seed": seed, "status": result.status.kind, "wall_s": round(wall, 2),
        "steps": [int(r["step"]) + 1 for r in rows],  # updates taken when the error was measured
        "rel_l2": [r["rel_l2"] for r in rows],
        "loss": [r["loss"] for r in rows],
        "final_rel_l2_per_member": held.metrics(held.predict(solver).numpy())["held_out"]["rel_l2"] if result.status.ok else None,
    }


def steps_to(run: dict[str, Any], level: float) -> int | None:
    """The first measured step at which the held-out error is at or below ``level`` (None: never)."""
    return next((s for s, e in zip(run["steps"], run["rel_l2"]) if e <= level), None)


def diverged(run: dict[str, Any]) -> bool:
    """A non-finite loss, or a held-out error above 10x its running minimum."""
    if run["status"] == "diverged" or not all(math.isfinite(x) for x in run["loss"] + run["rel_l2"]):
        return True
    best = math.inf
    for e in run["rel_l2"]:
        best = min(best, e)
        if e > DIVERGED_FACTOR * best:
            return True
    return False


def summarise(runs: list[dict[str, Any]], level: float, budget: int) -> dict[str, Any]:
    """Steps to ``level`` per encoding, their ratio, divergences, and the lowest level every run reaches."""
    common = max(min(r["rel_l2"]) for r in runs)  # the lowest level every run of the family reaches
    out: dict[str, Any] = {"level": level, "lowest_common_level": common}
    for name, lev in (("at_level", level), ("at_common_level", common)):
        part: dict[str, Any] = {}
        for enc in ENCODINGS:
            mine = [r for r in runs if r["encoding"] == enc]
            steps = [steps_to(r, lev) for r in mine]
            reached = [s for s in steps if s is not None]
            part[enc] = {"steps": steps, "reached": len(reached), "runs": len(mine),
                         "mean_steps": sum(s if s is not None else budget for s in steps) / len(steps),
                         "mean_is_lower_bound": len(reached) < len(steps)}
        part["ratio_mip_over_naive"] = part["mip"]["mean_steps"] / part["naive"]["mean_steps"]
        out[name] = part
    out["steps_at_levels"] = {f"{lev:g}": {enc: [steps_to(r, lev) for r in runs if r["encoding"] == enc] for enc in ENCODINGS}
                              for lev in LEVELS}
    for enc in ENCODINGS:
        mine = [r for r in runs if r["encoding"] == enc]
        out[f"{enc}_diverged"] = sum(diverged(r) for r in mine)
        out[f"{enc}_best_rel_l2"] = [min(r["rel_l2"]) for r in mine]
        out[f"{enc}_final_rel_l2"] = [r["rel_l2"][-1] for r in mine]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: few steps, one seed, a small network")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--level", type=float, default=1e-2, help="the held-out mean relative L2 to reach")
    ap.add_argument("--set", action="append", default=[], help="extra key=value overrides of the problem files")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench_hypernet.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    overrides = list(args.set)
    steps, seeds, every = args.steps, args.seeds, args.eval_every
    if args.quick:
        steps, seeds, every = 40, 1, 20
        overrides += ["solvers.hyper_pinn.width=16", "solvers.hyper_pinn.samples=4", "solvers.hyper_pinn.points=64"]
    report: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
        "command": "python scripts/bench_hypernet.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "steps": steps, "seeds": seeds, "eval_every": every, "overrides": overrides, "families": {},
    }
    for fam in args.families:
        runs = []
        for seed in range(seeds):
            for enc in ENCODINGS:
                run = run_one(FAMILIES[fam], enc, seed, steps, every, overrides)
                runs.append(run)
                print(f"{fam:10s} {enc:5s} seed {seed}: best {min(run['rel_l2']):.3e} final {run['rel_l2'][-1]:.3e} "
                      f"steps to {args.level:g}: {steps_to(run, args.level)} ({run['wall_s']:.0f} s)", flush=True)
        summary = summarise(runs, args.level, steps)
        report["families"][fam] = {"summary": summary, "runs": runs}
        a, c = summary["at_level"], summary["at_common_level"]
        print(f"{fam}: steps to {args.level:g}: mip {a['mip']['steps']} naive {a['naive']['steps']} "
              f"ratio {a['ratio_mip_over_naive']:.2f}; "
              f"lowest common level {summary['lowest_common_level']:.3e}: mip {c['mip']['steps']} naive {c['naive']['steps']} "
              f"ratio {c['ratio_mip_over_naive']:.2f}; diverged mip {summary['mip_diverged']} "
              f"naive {summary['naive_diverged']}", flush=True)
    write_json(Path(args.out), report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
