"""NeuralStagger on 2D Navier-Stokes: decompositions (s_h, s_w, s_t) against the plain physics-constrained solver.

Every configuration trains with no data (the Crank-Nicolson residual of the fine grid, a pool of states from the
problem's initial-condition family) for the same number of steps, from ``problems/ns2d.yaml``'s ``stagger``
section, and is scored on the same held-out initial conditions against the pseudo-spectral simulator:

- relative L2 of the rollout at 20 / 80 / 160 fine steps; the time until the vorticity correlation with the
  simulator falls below 0.9; the residual of the model's own rollout (dt |r| / std); the energy at the highest
  wave numbers (|k| > n/3, where a checkerboard between pieces would show) relative to the simulator's;
- cost: training wall time, sequential network calls and multiply-adds per simulated time unit, and inference
  seconds per time unit at batch 1 and 16 (fastest of a few repeats, alternated with the simulator).

"just coarsen" is the same network trained at 32 x 32 on the coarse grid's residual (s = 1), scored on every
other point of the fine reference.

    python scripts/bench_stagger.py --steps 600 --seeds 0 1 2          # the table in docs/benchmarks.md
    python scripts/bench_stagger.py --steps 20 --seeds 0 --quick       # a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = ROOT / "problems" / "ns2d.yaml"
CONFIGS = {  # name -> (s_h, s_w, s_t, fine resolution)
    "1-1-1": (1, 1, 1, 64),
    "2-2-1": (2, 2, 1, 64),
    "4-4-1": (4, 4, 1, 64),
    "1-1-2": (1, 1, 2, 64),
    "2-2-2": (2, 2, 2, 64),
    "1-1-4": (1, 1, 4, 64),
    "coarsen": (1, 1, 1, 32),
}
HORIZONS = (20, 80, 160)


def steps_of(args: argparse.Namespace, name: str) -> int:
    """The configuration's training steps: ``--steps``, or its own from ``--steps-per-config`` (equal wall time)."""
    own = dict(item.split("=") for item in args.steps_per_config.split(",")) if args.steps_per_config else {}
    return int(own.get(name, args.steps))


def overrides(args: argparse.Namespace, name: str, seed: int) -> list[str]:
    s_h, s_w, s_t, n = CONFIGS[name]
    steps = steps_of(args, name)
    return ["solver=stagger", f"seed={seed}", "device=cpu", f"solvers.stagger.s_h={s_h}", f"solvers.stagger.s_w={s_w}",
            f"solvers.stagger.s_t={s_t}", f"solvers.stagger.simulate.resolution={n}", f"train.steps={steps}",
            "train.log_every=10", f"train.checkpoint_every={steps}", "solvers.stagger.eval_trajectories=1",
            "solvers.stagger.simulate.trajectories=10"]


def train_one(job: tuple[argparse.Namespace, str, int]) -> dict:
    """Train one configuration in its own single-threaded process; returns where its run folder is."""
    args, name, seed = job
    torch.set_num_threads(1)
    from pdesolve.config import load_run_config
    from pdesolve.grid_runner import train_grid

    cfg = load_run_config(PROBLEM, overrides(args, name, seed))
    out = Path(args.work) / "runs" / f"{name}-s{seed}-{steps_of(args, name)}"
    result = train_grid(cfg, None, out, quiet=True, overwrite=True)
    return {"config": name, "seed": seed, "run": str(out), "train_s": result.metrics["wall_time_s"],
            "parameters": result.metrics["parameters"], "final_residual": result.history[-1].get("residual_rms")}


def solver_of(run: str) -> object:
    from pdesolve.config import load_run_config
    from pdesolve.runner import build_solver

    cfg = load_run_config(Path(run) / "config.yaml")
    solver = build_solver(cfg, torch.device("cpu"))
    solver.model.load_state_dict(torch.load(Path(run) / "checkpoint.pt", map_location="cpu", weights_only=False)["model"])
    return solver


def correlation_time(pred: np.ndarray, ref: np.ndarray, dt: float) -> float:
    """Time until the mean correlation of predicted and true vorticity falls below 0.9."""
    p, r = pred.reshape(pred.shape[0], pred.shape[1], -1), ref.reshape(ref.shape[0], ref.shape[1], -1)
    p, r = p - p.mean(-1, keepdims=True), r - r.mean(-1, keepdims=True)
    corr = (p * r).sum(-1) / np.sqrt((p * p).sum(-1) * (r * r).sum(-1))  # [batch, time]
    below = np.nonzero(corr.mean(0) < 0.9)[0]
    return float((below[0] if len(below) else corr.shape[1]) * dt)


def high_energy(u: np.ndarray) -> float:
    """Share of the spectral energy at |k| > n/3 on either axis, mean over frames (u [..., x, y])."""
    spec = np.abs(np.fft.fft2(u)) ** 2
    n = u.shape[-1]
    k = np.abs(np.fft.fftfreq(n, 1 / n))
    high = (k[:, None] > n / 3) | (k[None, :] > n / 3)
    return float((spec * high).sum() / spec.sum())


def score(args: argparse.Namespace, runs: list[dict]) -> dict:
    """Roll every trained model out from the held-out initial conditions and compare with the simulator."""
    from torch.utils.flop_counter import FlopCounterMode

    from pdesolve.config import load_run_config
    from pdesolve.grid import Grid, GridAxis
    from pdesolve.grid_runner import step_residuals
    from pdesolve.rollout import rollout
    from pdesolve.simulate import Numerics, simulate
    from pdesolve.simulate.family import InitialConditionFamily

    torch.set_num_threads(1)
    cfg = load_run_config(PROBLEM, overrides(args, "1-1-1", 0))
    steps = max(HORIZONS)
    dt = 5.0 / 200  # the fine step the models trained on (ns2d.yaml's stagger section: t in [0, 5], 200 steps)
    space = cfg.problem.domain.grid({"x": 64, "y": 64, "t": 2}).space
    fine = Grid(space, GridAxis("t", 0.0, dt * steps, steps + 1))
    family = InitialConditionFamily.from_settings(cfg.problem, cfg.simulate, cfg.seed)
    ref = family.simulate(args.test, fine, 0x4245, Numerics(cfl=0.5)).values.float()  # [n, T, 1, 64, 64]
    sim_s = {}
    for batch in (1, 16):
        u0 = ref[:1, 0].double().repeat(batch, 1, 1, 1)
        best = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            simulate(cfg.problem, Grid(space), [0.0, 1.0], u0=u0)
            best.append(time.perf_counter() - t0)
        sim_s[batch] = min(best)
    out: dict = {"simulator_s_per_time_unit": sim_s, "test_trajectories": args.test, "dt": dt, "models": {}}
    for name in (c for c in CONFIGS if c in args.configs):
        for r in (x for x in runs if x["config"] == name):
            solver = solver_of(r["run"])
            stride = 64 // CONFIGS[name][3]
            truth = ref[..., ::stride, ::stride]  # [n, T, 1, x, y] on the model's grid
            k = solver.history
            start = truth[:, :k].double()
            pred = torch.cat([start, rollout(lambda w, s=solver: s.step(w).double(), start, steps + 1 - k)], dim=1)
            err = (pred - truth.double()).flatten(2).norm(dim=-1) / truth.double().flatten(2).norm(dim=-1)  # [n, T]
            grid = Grid(Grid(space).coarsen(stride).space, fine.time)
            res = step_residuals(solver, grid, pred.numpy())
            entry = r | {f"rel_l2_{h}": float(err[:, h].mean()) for h in HORIZONS}
            entry["correlation_time"] = correlation_time(pred[:, :, 0].numpy(), truth[:, :, 0].double().numpy(), dt)
            entry["rollout_residual_rms"] = float(np.sqrt((res**2).mean()))
            entry["high_k_energy_ratio"] = high_energy(pred[:, -40:, 0].numpy()) / high_energy(truth[:, -40:, 0].double().numpy())
            calls = 1.0 / (dt * solver.frames_per_step)  # sequential network calls per simulated time unit
            frames = truth[:1, :k].float()
            with FlopCounterMode(display=False) as counter:
                solver.step(frames)
            entry["calls_per_time_unit"] = calls
            entry["macs_per_time_unit_batch1"] = counter.get_total_flops() / 2 * calls
            for batch in (1, 16):
                x = frames.repeat(batch, *([1] * (frames.dim() - 1)))
                best = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    for _ in range(int(round(calls))):
                        x = _advance(solver, x)
                    best.append(time.perf_counter() - t0)
                entry[f"infer_s_per_time_unit_batch{batch}"] = min(best)
            out["models"].setdefault(name, []).append(entry)
            print(f"{name:>8} seed {r['seed']}: rel L2 @20/80/160 {entry['rel_l2_20']:.3f} / {entry['rel_l2_80']:.3f} / "
                  f"{entry['rel_l2_160']:.3f}, corr>0.9 for {entry['correlation_time']:.2f}, residual {entry['rollout_residual_rms']:.2e}, "
                  f"train {r['train_s']:.0f} s", flush=True)
    return out


def _advance(solver: object, x: torch.Tensor) -> torch.Tensor:
    """One network call from the window ``x`` (the last ``history`` frames): the new window."""
    y = solver.step(x)  # type: ignore[attr-defined]
    frames = y if y.dim() == x.dim() else y.unsqueeze(1)
    return torch.cat([x, frames], dim=1)[:, -x.shape[1]:]


def table(results: dict) -> str:
    rows = ["| config | seeds | rel. L2 @20 | @80 | @160 | corr > 0.9 (time units) | residual of own rollout | high-k energy / simulator's "
            "| train s | calls / time unit | MACs / time unit (batch 1) | infer s / time unit, batch 1 | batch 16 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def ms(values: list[float], fmt: str) -> str:
        return (f"{statistics.mean(values):{fmt}} ± {statistics.stdev(values):{fmt}}" if len(values) > 1
                else f"{values[0]:{fmt}}")

    for name, entries in results["models"].items():
        e = entries
        rows.append(f"| {name} | {len(e)} | {ms([x['rel_l2_20'] for x in e], '.3f')} | {ms([x['rel_l2_80'] for x in e], '.3f')} | "
                    f"{ms([x['rel_l2_160'] for x in e], '.3f')} | {ms([x['correlation_time'] for x in e], '.2f')} | "
                    f"{ms([x['rollout_residual_rms'] for x in e], '.2e')} | {ms([x['high_k_energy_ratio'] for x in e], '.2f')} | "
                    f"{statistics.mean(x['train_s'] for x in e):.0f} | {e[0]['calls_per_time_unit']:.0f} | "
                    f"{e[0]['macs_per_time_unit_batch1']:.2e} | {min(x['infer_s_per_time_unit_batch1'] for x in e):.3f} | "
                    f"{min(x['infer_s_per_time_unit_batch16'] for x in e):.3f} |")
    s = results["simulator_s_per_time_unit"]  # keys "1", "16" (read back from JSON)
    rows.append(f"| simulator (64 x 64, RK3/CN, CFL step) | - | 0 | 0 | 0 | - | - | 1 | - | - | - | {s['1']:.3f} | {s['16']:.3f} |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=600, help="training steps of every configuration")
    p.add_argument("--steps-per-config", default="", metavar="NAME=STEPS,...",
                   help="steps of some configurations instead (e.g. equal wall time: steps scaled by each one's time per step)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=[c for c in CONFIGS if c != "1-1-4"])
    p.add_argument("--test", type=int, default=4, help="held-out initial conditions")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--work", default="/tmp/bench_stagger")
    p.add_argument("--out", default=str(ROOT / "docs" / "bench_stagger.json"))
    p.add_argument("--quick", action="store_true", help="smoke test: 2 test trajectories, 1 repeat")
    args = p.parse_args()
    if args.quick:
        args.test, args.repeats = 2, 1
    jobs = [(args, name, seed) for name in args.configs for seed in args.seeds]
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        runs = list(pool.map(train_one, jobs))
    results = score(args, runs)
    results["meta"] = {"command": "python scripts/bench_stagger.py " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d"),
                       "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}",
                       "torch": torch.__version__, "wall_s": round(time.time() - t0, 1), "steps": args.steps}
    Path(args.out).write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(table(json.loads(json.dumps(results, default=float))))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
