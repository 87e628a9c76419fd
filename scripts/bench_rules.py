"""Training rules against backprop (issue 15): same model, same budget, learning rate tuned per rule, 3 seeds.

Tasks:

- ``heat``: the online study's surrogate (problems/heat2d_online.yaml: 5 parameters and t -> the 32x32 field,
  a FieldMLP), trained offline on ``--trajectories`` simulations, scored on the study's held-out simulations;
- ``unet``: a U-Net one-step stepper (SineNet with one wave) on NS2D at 32x32, trained on simulated
  trajectories, scored by the one-step relative L2 on held-out trajectories.

The rollout comparison (full backprop through time, truncation 4, truncation 4 plus synthetic gradients on a
32-step rollout loss) is ``scripts/explore_bptt.py``: the NS2D U-Net unrolled 32 steps runs at over a second
per step on this CPU, and at 16 steps showed no gap between full and truncated backprop to recover.

For each rule: every learning rate of ``--lrs`` on the first seed (the best by final error is kept), then every
seed at that rate. Reported per rule: the final error (mean, min, max over seeds), its ratio to backprop's
(``adam``), the bytes autograd saves for backward in one step (peak held at once, and total:
pdesolve.optim.memory), the auxiliary parameters the rule adds (heads, feedback networks, synthesizers), and
the seconds per step.

    python scripts/bench_rules.py --task heat --steps 1500 --seeds 0 1 2 --out docs/bench_rules_heat.json
    python scripts/bench_rules.py --task unet --steps 600 --seeds 0 1 2 --out docs/bench_rules_unet.json
    python scripts/bench_rules.py --task heat --steps 30 --seeds 0 --lrs 1e-3 --quick     # a smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pdesolve.optim import OPTIMIZERS, make_optimizer  # noqa: E402
from pdesolve.optim.memory import saved_tensor_bytes  # noqa: E402
from pdesolve.task import DENOISING_BLOCKS, Task, check_rule  # noqa: E402
from pdesolve.train import TrainSettings, seed_everything, train  # noqa: E402

TaskFactory = Callable[[int, str], tuple[Task, Callable[[], float]]]
"""``(seed, rule name) -> (task, held-out error)``: the model may depend on the rule (NoProp trains its own kind)."""


# ---------------------------------------------------------------------------------------------- tasks
def heat_factory(args: argparse.Namespace) -> TaskFactory:
    """The heat2d surrogate: records simulated once, a fresh FieldMLP per seed."""
    from online_training.entry import _plan, _surrogate, held_out
    from online_training.monitor import Monitor
    from online_training.simulation import TRAIN
    from online_training.study import load_study
    from online_training.trainer import EpochSampler, SurrogateTask

    sets = [f"simulate.resolution={args.resolution}", f"train.batch_size={args.batch_size}",
            f"surrogate.width={args.width}", f"surrogate.depth={args.depth}"]
    study = load_study(ROOT / "problems" / "heat2d_online.yaml", sets)
    plan = _plan(study)
    surrogate = _surrogate(study, plan)
    # NoProp trains a chain of denoisers (surrogate.kind noprop), the same records and width
    noprop = _surrogate(load_study(ROOT / "problems" / "heat2d_online.yaml", [*sets, "surrogate.kind=noprop"]), plan)
    values = plan.design(args.trajectories, TRAIN, study.simulate.sampler)
    frames = plan.trajectories(values, TRAIN)
    records = surrogate.records_of(plan.scaled(values).astype(np.float32), plan.scaled_times(), frames)
    validation = held_out(study, plan, surrogate)
    folder = Path(args.scratch) / "heat-monitor"

    def make(seed: int, rule: str) -> tuple[Task, Callable[[], float]]:
        seed_everything(seed)
        sampler = EpochSampler(records, study.train.batch_size, [seed, 0x4F46])
        kind = noprop if DENOISING_BLOCKS in OPTIMIZERS[rule][0].needs else surrogate
        task = SurrogateTask(kind, torch.device("cpu"), seed, sampler, Monitor(folder, 0), validation=validation)
        return task, lambda: float(task.score(validation))

    return make


def ns2d_trajectories(args: argparse.Namespace, n: int, stream: int):
    """``n`` NS2D trajectories of the problem's initial-condition family (its own stream) at ``--resolution``."""
    from pdesolve.config import load_run_config
    from pdesolve.rollout import Trajectories
    from pdesolve.simulate.family import InitialConditionFamily

    cfg = load_run_config(ROOT / "problems" / "ns2d.yaml", [f"simulate.resolution={args.resolution}", f"simulate.steps={args.frames}"])
    assert cfg.simulate is not None
    family = InitialConditionFamily.from_settings(cfg.problem, cfg.simulate, cfg.seed)
    grid = cfg.problem.domain.grid(cfg.simulate.shape(cfg.problem.domain.space_names))
    sol = family.simulate(n, grid, stream, cfg.simulate.numerics())
    return Trajectories(torch.as_tensor(sol.numpy(), dtype=torch.float32), sol.grid, tuple(cfg.problem.equation.fields), tuple(range(n)))


def unet_factory(args: argparse.Namespace) -> TaskFactory:
    """A one-wave SineNet (a U-Net) stepping NS2D vorticity at 32x32, trained one step at a time."""
    from pdesolve.config import load_run_config
    from pdesolve.rollout import relative_l2_frames
    from pdesolve.solvers.sinenet import SineNetSolver

    train_data = ns2d_trajectories(args, args.trajectories, 0x5452)
    test_data = ns2d_trajectories(args, 4, 0x5445)
    sets = ["solver=sinenet", "solvers.sinenet.waves=1", f"solvers.sinenet.width={args.width}", "solvers.sinenet.history=1",
            "solvers.sinenet.channel_mults=[1, 2]", f"solvers.sinenet.batch_size={args.batch_size}"]
    cfg = load_run_config(ROOT / "problems" / "ns2d.yaml", sets)

    def make(seed: int, rule: str) -> tuple[Task, Callable[[], float]]:
        seed_everything(seed)
        solver = SineNetSolver(cfg.problem, cfg.solver_options, torch.device("cpu"))
        task = solver.data_task(train_data, lambda: {})
        frames = test_data.frames.float()

        @torch.no_grad()
        def error() -> float:
            pred = solver.model(frames[:, :-1].flatten(0, 1)[:, None])
            return float(relative_l2_frames(pred, frames[:, 1:].flatten(0, 1), 2).mean())

        return task, error

    return make


TASKS: dict[str, Callable[[argparse.Namespace], TaskFactory]] = {
    "heat": heat_factory,
    "unet": unet_factory,
}


# ---------------------------------------------------------------------------------------------- one run
def rule_options(name: str, lr: float, extra: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"lr": lr, **extra.get(name, {})}


def run_one(make: TaskFactory, rule_name: str, lr: float, seed: int, args: argparse.Namespace,
            extra: dict[str, dict[str, Any]]) -> dict[str, Any]:
    task, error = make(seed, rule_name)
    rule = make_optimizer(rule_name, rule_options(rule_name, lr, extra), args.steps)
    check_rule(rule, task)
    t0 = time.perf_counter()
    result = train(task, rule, TrainSettings(steps=args.steps, log_every=max(args.steps // 20, 1), checkpoint_every=0, quiet=True))
    seconds = time.perf_counter() - t0
    err = error() if result.status.ok else float("nan")
    # activation memory of one more step, measured (the trained state; not counted in the error)
    task.before_step(args.steps)
    _, saved = saved_tensor_bytes(lambda: rule.step(args.steps, task))
    aux = rule.parameter_count()
    return {"rule": rule_name, "lr": lr, "seed": seed, "error": err, "status": result.status.kind,
            "s_per_step": seconds / max(args.steps, 1), "saved_peak_bytes": saved.peak, "saved_total_bytes": saved.total,
            "model_parameters": sum(p.numel() for p in task.model.parameters()), "aux_parameters": int(aux)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=sorted(TASKS), default="heat")
    p.add_argument("--rules", nargs="+", default=None, help="rule names (default: every registered rule but lbfgs)")
    p.add_argument("--lrs", nargs="+", type=float, default=[1e-3, 3e-3, 1e-2])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--trajectories", type=int, default=24)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--frames", type=int, default=40, help="unet: saved frames per NS2D trajectory")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--options", default="{}", help='JSON: per-rule options, e.g. {"auglocal": {"stages": 3}}')
    p.add_argument("--scratch", default="/tmp/bench_rules")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    extra = json.loads(args.options)
    rules = args.rules or [r for r in OPTIMIZERS if r not in ("lbfgs", "adam_lbfgs", "adamw")]
    make = TASKS[args.task](args)
    warm = argparse.Namespace(**{**vars(args), "steps": 3})
    run_one(make, "adam", args.lrs[0], args.seeds[0], warm, extra)  # first-call costs stay out of the timings
    runs: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for rule in rules:
        tried = []
        for lr in args.lrs:
            try:
                tried.append(run_one(make, rule, lr, args.seeds[0], args, extra))
            except Exception as err:  # noqa: BLE001 - a rule that cannot run on this task is reported, not fatal
                tried.append({"rule": rule, "lr": lr, "seed": args.seeds[0], "error": float("nan"), "status": f"refused: {err}"})
            print(json.dumps(tried[-1]), flush=True)
        finite = [r for r in tried if np.isfinite(r["error"])]
        if not finite:
            summary[rule] = {"status": tried[-1]["status"]}
            runs += tried
            continue
        best = min(finite, key=lambda r: r["error"])
        seeded = [best] + [run_one(make, rule, best["lr"], s, args, extra) for s in args.seeds[1:]]
        for r in seeded[1:]:
            print(json.dumps(r), flush=True)
        runs += tried + seeded[1:]
        errs = [r["error"] for r in seeded]
        summary[rule] = {"lr": best["lr"], "error_mean": statistics.fmean(errs), "error_min": min(errs), "error_max": max(errs),
                         "saved_peak_bytes": best["saved_peak_bytes"], "saved_total_bytes": best["saved_total_bytes"],
                         "aux_parameters": best["aux_parameters"], "model_parameters": best["model_parameters"],
                         "s_per_step": statistics.fmean(r["s_per_step"] for r in seeded)}
    base = summary.get("adam", {})
    for s in summary.values():
        if "error_mean" in s and "error_mean" in base:
            s["error_vs_backprop"] = s["error_mean"] / base["error_mean"]
            s["memory_vs_backprop"] = s["saved_peak_bytes"] / max(base["saved_peak_bytes"], 1)
    out = {"task": args.task, "settings": {k: v for k, v in vars(args).items() if k not in ("out",)}, "summary": summary, "runs": runs,
           "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                       "torch": torch.__version__, "threads": 1}}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
