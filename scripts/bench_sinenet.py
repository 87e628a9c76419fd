"""Benchmark: SineNet-K against the U-Net baseline on 2D Navier-Stokes, circular against zero padding.

Every model has the same parameter budget (the width is picked for it), the same training budget (steps,
batch, AdamW with warm-up and cosine decay) and is trained with several seeds on the same trajectories
of ``problems/ns2d.yaml`` (decaying turbulence, simulated by ``pdesolve simulate``). Reported on the
held-out test trajectories: one-step and rollout relative L2 (rollouts of ``rollout_steps`` frames from
``rollout_starts`` start times), and the inference cost per simulated time unit next to the
pseudo-spectral simulator's at the same grid, measured side by side in this process.

    nice -n 10 python scripts/bench_sinenet.py                 # the table in docs/benchmarks_sinenet.md
    python scripts/bench_sinenet.py --steps 20 --seeds 0 --quick  # a smoke test

Runs go to ``--work`` (one run folder each, as ``pdesolve train`` writes them); the table is printed and
written with every number to ``--out`` (JSON) and a figure of the error against the rollout step.
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
MODELS = {  # name -> overrides of solvers.sinenet
    "unet": ["solvers.sinenet.waves=1", "solvers.sinenet.disentangled=false"],
    "sinenet2": ["solvers.sinenet.waves=2", "solvers.sinenet.disentangled=true"],
    "sinenet4": ["solvers.sinenet.waves=4", "solvers.sinenet.disentangled=true"],
}
PADDINGS = {"circular": "grid", "zero": "zero"}


def overrides(args: argparse.Namespace, model: str, padding: str, seed: int) -> list[str]:
    return [
        "solver=sinenet", f"seed={seed}", "device=cpu",
        "solvers.sinenet.width=null", f"solvers.sinenet.parameters={args.parameters}",
        f"solvers.sinenet.channel_mults={args.channel_mults}", f"solvers.sinenet.history={args.history}",
        f"solvers.sinenet.batch_size={args.batch_size}", f"solvers.sinenet.padding={PADDINGS[padding]}",
        "solvers.sinenet.split=[0.75, 0.0625, 0.1875]",
        f"solvers.sinenet.rollout_steps={args.rollout_steps}", f"solvers.sinenet.rollout_starts={args.rollout_starts}",
        f"train.steps={args.steps}", "train.eval_every=0", f"train.checkpoint_every={args.steps}", "train.log_every=10",
        f"train.optimizer={{name: adamw, lr: {args.lr}, weight_decay: 1.0e-4, warmup: {max(args.steps // 20, 1)}, schedule: cosine}}",
        *MODELS[model],
    ]


def train_one(job: tuple[argparse.Namespace, str, str, int, str]) -> dict:
    """Train one (model, padding, seed) in its own process, single-threaded; returns its test metrics."""
    args, model, padding, seed, data = job
    torch.set_num_threads(1)
    from pdesolve.config import load_run_config
    from pdesolve.grid_runner import train_grid

    cfg = load_run_config(PROBLEM, overrides(args, model, padding, seed))
    out = Path(args.work) / "runs" / f"{model}-{padding}-s{seed}"
    result = train_grid(cfg, data, out, quiet=True, overwrite=True)
    m = result.metrics
    return {"model": model, "padding": padding, "seed": seed, "run": str(out), "parameters": m["parameters"],
            "width": m["network"]["width"], "one_step": m["one_step_rel_l2"], "rollout": m["rollout_rel_l2"],
            "error_vs_step": m["error_vs_step"], "train_s": m["wall_time_s"], "status": m["status"]}


def timing(args: argparse.Namespace, data: str, runs: list[dict]) -> dict:
    """Seconds per simulated time unit for each network and for the simulator, alternated in this process."""
    from pdesolve.config import load_run_config
    from pdesolve.data import TrajectoryFile, split_trajectories
    from pdesolve.grid import Grid
    from pdesolve.rollout import load_trajectories
    from pdesolve.runner import build_solver
    from pdesolve.simulate import simulate

    torch.set_num_threads(1)
    cfg = load_run_config(PROBLEM, overrides(args, "unet", "circular", 0))
    file = TrajectoryFile(data)
    test = load_trajectories(cfg.problem, file, split_trajectories(file.n_trajectories, (0.75, 0.0625, 0.1875), 0)["test"])
    frames = test.frames[:, : args.history]  # [batch, history, channel, *space]
    space = Grid(test.grid.space)
    t0 = test.grid.time.lo
    unit = round(1.0 / test.dt)  # network steps per time unit
    steppers = {}
    for model in args.models:
        for padding in args.paddings:
            run = next(r for r in runs if r["model"] == model and r["padding"] == padding)
            c = load_run_config(Path(run["run"]) / "config.yaml")
            solver = build_solver(c, torch.device("cpu"))
            state = torch.load(Path(run["run"]) / "checkpoint.pt", map_location="cpu", weights_only=False)
            solver.model.load_state_dict(state["model"])
            steppers[f"{model}-{padding}"] = solver

    def net(solver) -> float:
        start = time.perf_counter()
        w = frames
        for _ in range(unit):
            w = torch.cat([w[:, 1:], solver.step(w).unsqueeze(1)], dim=1)
        return time.perf_counter() - start

    def sim() -> float:
        u0 = test.frames[:, 0].double()
        start = time.perf_counter()
        simulate(cfg.problem, space, [t0, t0 + 1.0], u0=u0)
        return time.perf_counter() - start

    samples: dict[str, list[float]] = {"simulator": [], **{k: [] for k in steppers}}
    for _ in range(args.repeats):  # alternate, so that load changes on the machine hit all alike
        samples["simulator"].append(sim())
        for k, s in steppers.items():
            samples[k].append(net(s))
    best = {k: min(v) for k, v in samples.items()}
    return {"batch": int(frames.shape[0]), "network_steps_per_time_unit": unit, "seconds_per_time_unit": best,
            "ratio_to_simulator": {k: best[k] / best["simulator"] for k in steppers}}


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key in sorted({(r["model"], r["padding"]) for r in runs}):
        curves = np.array([r["error_vs_step"] for r in runs if (r["model"], r["padding"]) == key])
        ax.semilogy(np.arange(1, curves.shape[1] + 1), curves.mean(0), "-" if key[1] == "circular" else "--",
                    label=f"{key[0]} ({key[1]})")
    ax.set_xlabel("rollout step")
    ax.set_ylabel("relative L2 (test, mean over seeds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--trajectories", type=int, default=64)
    p.add_argument("--steps", type=int, default=600, help="training steps per run")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--history", type=int, default=2)
    p.add_argument("--parameters", type=int, default=58000, help="parameter budget of every model")
    p.add_argument("--channel-mults", default="[1, 2, 2]")
    p.add_argument("--rollout-steps", type=int, default=20)
    p.add_argument("--rollout-starts", type=int, default=4)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    p.add_argument("--paddings", nargs="+", choices=sorted(PADDINGS), default=["circular", "zero"])
    p.add_argument("--workers", type=int, default=2, help="runs trained at once (one thread each)")
    p.add_argument("--repeats", type=int, default=5, help="timing repeats (the fastest counts)")
    p.add_argument("--work", default="/tmp/bench_sinenet")
    p.add_argument("--out", default=str(ROOT / "docs" / "bench_sinenet.json"))
    p.add_argument("--quick", action="store_true", help="smoke test: 16 trajectories")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        args.trajectories = 16
    from pdesolve.cli import main as cli

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = str(work / f"ns2d_{args.resolution}_{args.trajectories}.h5")
    t = time.perf_counter()
    assert cli(["-q", "simulate", str(PROBLEM), "--n", str(args.trajectories), "--resolution", str(args.resolution),
                "--out", data]) == 0
    simulate_s = time.perf_counter() - t

    jobs = [(args, m, pad, s, data) for s in args.seeds for m in args.models for pad in args.paddings]
    t = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(train_one, jobs))
    train_s = time.perf_counter() - t
    timings = timing(args, data, runs)

    rows = []
    for model in args.models:
        for pad in args.paddings:
            rs = [r for r in runs if r["model"] == model and r["padding"] == pad]
            one, roll = [r["one_step"] for r in rs], [r["rollout"] for r in rs]
            key = f"{model}-{pad}"
            rows.append({
                "model": model, "padding": pad, "parameters": rs[0]["parameters"], "width": rs[0]["width"],
                "one_step_mean": statistics.mean(one), "one_step_std": statistics.pstdev(one),
                "rollout_mean": statistics.mean(roll), "rollout_std": statistics.pstdev(roll),
                "train_s_mean": statistics.mean(r["train_s"] for r in rs),
                "infer_s_per_time_unit": timings["seconds_per_time_unit"][key],
                "ratio_to_simulator": timings["ratio_to_simulator"][key],
            })
    header = (f"{'model':<9} {'padding':<8} {'params':>7} {'width':>5} {'one-step rel L2':>17} {'rollout rel L2':>17} "
              f"{'train s':>8} {'infer s/T':>9} {'/ sim':>6}")
    print(header)
    for r in rows:
        print(f"{r['model']:<9} {r['padding']:<8} {r['parameters']:>7} {r['width']:>5} "
              f"{r['one_step_mean']:>9.4f} ± {r['one_step_std']:.4f} {r['rollout_mean']:>9.4f} ± {r['rollout_std']:.4f} "
              f"{r['train_s_mean']:>8.0f} {r['infer_s_per_time_unit']:>9.4f} {r['ratio_to_simulator']:>6.2f}")
    print(f"simulator: {timings['seconds_per_time_unit']['simulator']:.4f} s per time unit for a batch of {timings['batch']}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(runs, out.with_name(out.stem + "_error_vs_step.png"))
    report = {
        "command": "nice -n 10 python scripts/bench_sinenet.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "torch_threads": 1, "workers": args.workers, "platform": platform.platform(),
                    "processor": platform.processor(), "torch": torch.__version__},
        "settings": {k: v for k, v in vars(args).items() if k not in ("work", "out")},
        "simulate_s": simulate_s, "train_s": train_s, "rows": rows, "timing": timings, "runs": runs,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
