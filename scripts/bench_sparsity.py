"""N:M sparse training and parallel-shallow networks (issue 16, items 1 and 3): error against dense, FLOPs, ms/step.

Parts (``--parts``, all by default):

- ``unet``: the U-Net one-step NS2D task of issue 15 (scripts/bench_rules.py's ``unet_factory``, imported), dense
  against 2:4 and 2:8 in both modes (consistent, bdwp); one-step relative L2 on held-out trajectories and the
  theoretical FLOPs of one training step (forward, input gradient, weight gradient) in the Linear/Conv layers;
- ``pinn``: the PINN on problems/heat.yaml (``--pinn-problem``), dense against 2:4 and 2:8 in consistent mode (the
  PINN refuses bdwp), relative L2 against the reference on the problem's evaluation grid, and the jet pass's FLOPs;
- ``shallow``: the PINN with ``network: mlp | residual | parallel`` at the same width and depth (the same parameter
  count, stated), relative L2, and ms/step measured interleaved in one process (rounds of ``--time-steps`` steps
  of each network in turn; the median over rounds).

No sparse kernels run here: on a CPU torch multiplies the masked weights densely, so the savings are the
theoretical FLOPs at density N/M (2:4 semi-structured kernels, ``torch.sparse.to_sparse_semi_structured``, need an
Ampere or newer GPU).

    python scripts/bench_sparsity.py --parts unet --seeds 0                 # ~4 min at 1 thread
    python scripts/bench_sparsity.py --parts pinn shallow --seeds 0 1 2     # ~10 min at 1 thread
    python scripts/bench_sparsity.py --quick          # a smoke run (a few steps of everything)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from pdesolve.config import load_run_config  # noqa: E402
from pdesolve.io import write_text  # noqa: E402
from pdesolve.metrics import relative_l2  # noqa: E402
from pdesolve.nn import sparsity as sp  # noqa: E402
from pdesolve.optim import make_optimizer  # noqa: E402
from pdesolve.runner import evaluation_grid, reference_on  # noqa: E402
from pdesolve.solvers.pinn import PINN  # noqa: E402
from pdesolve.train import TrainSettings, seed_everything, train  # noqa: E402

SETTINGS = [None, (2, 4, "consistent"), (2, 4, "bdwp"), (2, 8, "consistent"), (2, 8, "bdwp")]


def label(setting: tuple[int, int, str] | None) -> str:
    return "dense" if setting is None else f"{setting[0]}:{setting[1]} {setting[2]}"


def options(setting: tuple[int, int, str] | None, refresh: int) -> sp.SparsityOptions | None:
    return None if setting is None else sp.SparsityOptions(n=setting[0], m=setting[1], mode=setting[2], refresh_every=refresh)


def summary(errors: list[float]) -> dict[str, Any]:
    return {"error_mean": statistics.fmean(errors), "error_min": min(errors), "error_max": max(errors), "errors": errors}


# ---------------------------------------------------------------------------------------------- U-Net
def bench_unet(args: argparse.Namespace) -> dict[str, Any]:
    import bench_rules

    ns = argparse.Namespace(resolution=args.resolution, frames=args.frames, trajectories=args.trajectories, width=args.unet_width,
                            batch_size=args.batch_size)
    make = bench_rules.unet_factory(ns)  # the issue-15 task builder: data simulated once, a fresh U-Net per seed
    out: dict[str, Any] = {}
    for setting in SETTINGS:
        opts = options(setting, args.refresh_every)
        errors, seconds, flops = [], [], None
        for seed in args.seeds:
            task, error = make(seed, "adam")
            if opts is not None:
                sp.sparsify(task.model, opts, owner="bench unet")
            rule = make_optimizer("adam", {"lr": args.unet_lr}, args.unet_steps)
            t0 = time.perf_counter()
            result = train(task, rule, TrainSettings(steps=args.unet_steps, log_every=max(args.unet_steps // 10, 1), checkpoint_every=0,
                                                     quiet=True))
            seconds.append((time.perf_counter() - t0) / args.unet_steps)
            errors.append(error() if result.status.ok else float("nan"))
            print(f"  unet {label(setting)} seed {seed}: error {errors[-1]:.4g}, {seconds[-1]:.3f} s/step", flush=True)
            if flops is None:
                task.before_step(args.unet_steps)
                x = task.batch().inputs  # type: ignore[attr-defined]
                flops = sp.training_flops(task.model, lambda x=x, m=task.model: m(x), opts or sp.SparsityOptions())
        row = {**summary(errors), "s_per_step": statistics.fmean(seconds),
               "parameters": sum(p.numel() for p in task.model.parameters()),
               "sparse_layers": len(sp.masks(task.model))}
        if opts is not None and flops is not None:
            row["flops"] = flops.describe()
        elif flops is not None:
            row["flops"] = {"forward": flops.forward, "input_grad": flops.input_grad, "weight_grad": flops.weight_grad}
        out[label(setting)] = row
        print("unet", label(setting), json.dumps({k: v for k, v in row.items() if k != "errors"}), flush=True)
    base = out["dense"]["error_mean"]
    for row in out.values():
        row["error_vs_dense"] = row["error_mean"] / base
    return out


# ---------------------------------------------------------------------------------------------- PINN
def pinn_run(args: argparse.Namespace, sets: list[str], seed: int) -> tuple[float, PINN, Any]:
    cfg = load_run_config(ROOT / "problems" / args.pinn_problem, [
        f"solvers.pinn.width={args.pinn_width}", f"solvers.pinn.depth={args.pinn_depth}", *sets])
    grid = evaluation_grid(cfg)
    ref = reference_on(cfg, grid)
    seed_everything(seed)
    solver = PINN(cfg.problem, cfg.solver_options, torch.device("cpu"))
    task = solver.task(lambda: {})
    rule = make_optimizer("adam", {"lr": args.pinn_lr}, args.pinn_steps)
    result = train(task, rule, TrainSettings(steps=args.pinn_steps, log_every=max(args.pinn_steps // 10, 1), checkpoint_every=0,
                                             quiet=True))
    err = relative_l2(solver.predict(grid).numpy(), ref) if result.status.ok and ref is not None else float("nan")
    return err, solver, task


def bench_pinn(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for setting in [s for s in SETTINGS if s is None or s[2] == "consistent"]:
        opts = options(setting, args.refresh_every)
        sets = [] if opts is None else [f"solvers.pinn.sparsity={json.dumps(opts.model_dump())}"]
        errors = []
        for seed in args.seeds:
            err, solver, task = pinn_run(args, sets, seed)
            errors.append(err)
        names = solver.problem.domain.names
        rows = len(task.points()) * (1 + len(names) + (len(names) - 1) * (task.order - 1))  # value, gradient, pure 2nd (space)
        flops = sp.jet_flops(solver.model.net, rows, opts or sp.SparsityOptions())
        row = {**summary(errors), "parameters": sum(p.numel() for p in solver.model.parameters()),
               "sparse_layers": len(sp.masks(solver.model)), "jet_rows": rows}
        row["flops"] = flops.describe() if opts is not None else {"forward": flops.forward, "input_grad": flops.input_grad,
                                                                   "weight_grad": flops.weight_grad}
        out[label(setting)] = row
        print("pinn", label(setting), json.dumps({k: v for k, v in row.items() if k != "errors"}), flush=True)
    base = out["dense"]["error_mean"]
    for row in out.values():
        row["error_vs_dense"] = row["error_mean"] / base
    return out


# ---------------------------------------------------------------------------------------------- parallel-shallow
def bench_shallow(args: argparse.Namespace) -> dict[str, Any]:
    nets = ["mlp", "residual", "parallel"]
    out: dict[str, Any] = {}
    for net in nets:
        errors = []
        for seed in args.seeds:
            err, solver, _ = pinn_run(args, [f"solvers.pinn.network={net}", f"solvers.pinn.depth={args.shallow_depth}"], seed)
            errors.append(err)
        out[net] = {**summary(errors), "parameters": sum(p.numel() for p in solver.model.parameters())}
    # ms/step, interleaved: rounds of --time-steps steps of each network in turn, the same points and rule
    tasks = {}
    for net in nets:
        cfg = load_run_config(ROOT / "problems" / args.pinn_problem, [
            f"solvers.pinn.width={args.pinn_width}", f"solvers.pinn.depth={args.shallow_depth}", f"solvers.pinn.network={net}"])
        seed_everything(0)
        task = PINN(cfg.problem, cfg.solver_options, torch.device("cpu")).task(lambda: {})
        rule = make_optimizer("adam", {"lr": args.pinn_lr}, 10**6)
        rule.bind(task)
        tasks[net] = (task, rule)
    times: dict[str, list[float]] = {n: [] for n in nets}
    step = 0
    for _ in range(args.time_rounds):
        for net in nets:
            task, rule = tasks[net]
            t0 = time.perf_counter()
            for k in range(args.time_steps):
                task.before_step(step + k)
                rule.step(step + k, task)
            times[net].append(1e3 * (time.perf_counter() - t0) / args.time_steps)
        step += args.time_steps
    for net in nets:
        out[net]["ms_per_step"] = statistics.median(times[net])
        out[net]["ms_per_step_min"] = min(times[net])  # the least disturbed round, on a shared machine
        out[net]["ms_per_step_rounds"] = times[net]
        print("shallow", net, json.dumps({k: v for k, v in out[net].items() if k not in ("errors", "ms_per_step_rounds")}), flush=True)
    base = out["mlp"]
    for row in out.values():
        row["error_vs_mlp"] = row["error_mean"] / base["error_mean"]
        row["time_vs_mlp"] = row["ms_per_step"] / base["ms_per_step"]
    return out


PARTS = {"unet": bench_unet, "pinn": bench_pinn, "shallow": bench_shallow}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=["unet", "pinn", "shallow"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--refresh-every", type=int, default=100)
    p.add_argument("--unet-steps", type=int, default=300)
    p.add_argument("--unet-width", type=int, default=16)
    p.add_argument("--unet-lr", type=float, default=3e-3)
    p.add_argument("--trajectories", type=int, default=16)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--pinn-problem", default="heat.yaml")
    p.add_argument("--pinn-steps", type=int, default=1000)
    p.add_argument("--pinn-width", type=int, default=32)
    p.add_argument("--pinn-depth", type=int, default=3)
    p.add_argument("--pinn-lr", type=float, default=2e-3)
    p.add_argument("--shallow-depth", type=int, default=5)
    p.add_argument("--time-steps", type=int, default=20)
    p.add_argument("--time-rounds", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="a smoke run: a few steps, one seed, small data")
    p.add_argument("--out", default=None, help="JSON results (default docs/bench_sparsity.json; --quick: none)")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.unet_steps, args.pinn_steps, args.trajectories, args.frames = [0], 4, 10, 2, 4
        args.time_steps, args.time_rounds, args.unet_width, args.refresh_every = 2, 2, 8, 2
    torch.set_num_threads(1)
    target = args.out or (None if args.quick else str(ROOT / "docs" / "bench_sparsity.json"))
    # parts run in separate invocations (with their own seeds) accumulate in one file
    out: dict[str, Any] = json.loads(Path(target).read_text()) if target and Path(target).exists() else {}
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "parts")}
    for part in args.parts:
        t0 = time.perf_counter()
        out[part] = {"results": PARTS[part](args), "settings": settings, "wall_s": time.perf_counter() - t0}
    out["machine"] = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(), "torch": torch.__version__,
                      "threads": torch.get_num_threads()}
    if target:
        write_text(Path(target), json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
