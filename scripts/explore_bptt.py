"""Exploration: full vs truncated backprop through time vs truncation plus synthetic gradients on a rollout loss.

``--problem advect`` (the development problem): smooth random periodic 1D fields (6 Fourier modes, 64 cells)
advected exactly at 0.37 cells per frame, a small residual convolutional stepper (two circular convolutions,
kernel 5, width 8, history 1), 32 training trajectories, 16 held-out ones from their own stream; scored by the
mean relative L2 of ``--unroll``-step rollouts from the held-out initial frames. Errors compound here (a small
phase or amplitude error per step grows along the rollout), so the gradient through the state matters.

``--problem ns2d``: a one-wave SineNet (a U-Net stepper, history 1) on NS2D vorticity at 32x32 (problems/ns2d.yaml's initial-condition
family, simulated here), trained on ``--unroll``-step windows with the ``bptt`` rule. Scored on held-out
trajectories (their own random stream): the mean relative L2 over ``--unroll``-step rollouts from several start
frames. Also reports the bytes autograd saves for backward in one step (peak held at once,
pdesolve.optim.memory) and the synthesizer's cosine to its bootstrapped target.

    python scripts/explore_bptt.py --unroll 32 --configs full t4 t4sg --seeds 1 2 3 --steps 300 --out /tmp/bptt.json
    python scripts/explore_bptt.py --problem ns2d --unroll 16 --configs full t4 --seeds 0 --steps 300
    python scripts/explore_bptt.py --configs 't4sg:{"synth_scale": 0.5}' --seeds 0

A config is ``full``, ``t<k>`` or ``t<k>sg``, optionally followed by ``:`` and JSON options for the rule.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_rules import ns2d_trajectories  # noqa: E402  (scripts/ is the script's own folder)

from pdesolve.config import load_run_config  # noqa: E402
from pdesolve.optim import make_optimizer  # noqa: E402
from pdesolve.optim.memory import saved_tensor_bytes  # noqa: E402
from pdesolve.rollout import Trajectories, relative_l2_frames, rollout  # noqa: E402
from pdesolve.solvers.sinenet import SineNetSolver  # noqa: E402
from pdesolve.task import RolloutTask  # noqa: E402
from pdesolve.train import TrainSettings, seed_everything, train  # noqa: E402


def advected(n: int, frames: int, seed: int, cells: int = 64, speed: float = 0.37) -> Tensor:
    """``[n, frames, 1, cells]``: 6 random Fourier modes (amplitude ~ 1/k), moved ``speed`` cells per frame, exactly."""
    g = torch.Generator().manual_seed(seed)
    k = torch.arange(1, 7, dtype=torch.float64)
    a = torch.randn(n, 6, generator=g, dtype=torch.float64) / k
    phase = torch.rand(n, 6, generator=g, dtype=torch.float64) * 2 * torch.pi
    x = torch.arange(cells, dtype=torch.float64) * 2 * torch.pi / cells
    dx = 2 * torch.pi / cells
    out = [(a[:, :, None] * torch.sin(k[None, :, None] * (x - speed * t * dx) + phase[:, :, None])).sum(1)[:, None] for t in range(frames)]
    return torch.stack(out, 1).float()


class Stepper(nn.Module):
    """A small residual convolutional stepper ``[B, 1, 1, n] -> [B, 1, n]``."""

    def __init__(self, width: int = 8, kernel: int = 5):
        super().__init__()
        self.a = nn.Conv1d(1, width, kernel, padding=kernel // 2, padding_mode="circular")
        self.b = nn.Conv1d(width, 1, kernel, padding=kernel // 2, padding_mode="circular")

    def forward(self, frames: Tensor) -> Tensor:
        x = frames[:, -1]
        return x + self.b(torch.tanh(self.a(x)))


class AdvectRollout(RolloutTask):
    """Random windows of 1 + ``unroll`` frames from 32 advected trajectories."""

    owner = "the advection exploration"
    history, periodic = 1, (True,)

    def __init__(self, seed: int, unroll: int, batch: int):
        seed_everything(seed)
        self.unroll, self.batch = unroll, batch
        self.model = Stepper()
        self.frames = advected(32, unroll + 16, seed)
        self.test = advected(16, unroll + 1, 1000 + seed)
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.w: Tensor | None = None

    def before_step(self, step: int) -> None:
        span = self.history + self.unroll
        starts = self.frames.shape[1] - span + 1
        pick = torch.randint(0, len(self.frames) * starts, (self.batch,), generator=self.gen)
        self.w = self.frames[(pick // starts)[:, None], (pick % starts)[:, None] + torch.arange(span)]

    def window(self) -> Tensor:
        assert self.w is not None
        return self.w

    def criterion(self, prediction: Tensor, target: Tensor) -> Tensor:
        return relative_l2_frames(prediction, target, 1).mean()

    def error(self) -> float:
        with torch.no_grad():
            pred = rollout(self.model, self.test[:, :1], self.unroll)
        return float(relative_l2_frames(pred, self.test[:, 1:], 1).mean())

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])


def parse(config: str) -> tuple[str, dict[str, Any]]:
    name, _, extra = config.partition(":")
    options: dict[str, Any] = json.loads(extra) if extra else {}
    if name != "full":
        base = name[1:].removesuffix("sg")
        options = {"truncation": int(base), **({"synthetic": True} if name.endswith("sg") else {}), **options}
    return name, options


def run(args: argparse.Namespace, data: Trajectories | None, test: Tensor | None, config: str, seed: int) -> dict[str, Any]:
    name, options = parse(config)
    if args.problem == "advect":
        task = AdvectRollout(seed, args.unroll, args.batch_size)
        return measure(args, task, task.error, config, name, options, seed)
    assert data is not None and test is not None
    cfg = load_run_config(ROOT / "problems" / "ns2d.yaml", [
        "solver=sinenet", "solvers.sinenet.waves=1", f"solvers.sinenet.width={args.width}", "solvers.sinenet.history=1",
        "solvers.sinenet.channel_mults=[1, 2]", f"solvers.sinenet.batch_size={args.batch_size}",
        f"solvers.sinenet.train_unroll={args.unroll}"])
    seed_everything(seed)
    solver = SineNetSolver(cfg.problem, cfg.solver_options, torch.device("cpu"))
    task = solver.data_task(data, lambda: {})

    @torch.no_grad()
    def error() -> float:
        starts = range(0, test.shape[1] - args.unroll, args.test_stride)
        errs = []
        for s in starts:
            state = test[:, s : s + 1]
            for k in range(1, args.unroll + 1):
                nxt = solver.model(state)
                errs.append(relative_l2_frames(nxt, test[:, s + k], 2).mean())
                state = nxt[:, None]
        return float(torch.stack(errs).mean())

    return measure(args, task, error, config, name, options, seed)


def measure(args: argparse.Namespace, task: RolloutTask, error: Callable[[], float], config: str, name: str, options: dict[str, Any],
            seed: int) -> dict[str, Any]:
    """Train with the ``bptt`` rule, score, and measure one more step's saved-tensor bytes."""
    rule = make_optimizer("bptt", {"lr": args.lr, **options}, args.steps)
    t0 = time.perf_counter()
    result = train(task, rule, TrainSettings(steps=args.steps, log_every=max(args.steps // 10, 1), checkpoint_every=0, quiet=True))
    seconds = time.perf_counter() - t0
    err = error() if result.status.ok else float("nan")
    task.before_step(args.steps)
    _, saved = saved_tensor_bytes(lambda: rule.step(args.steps, task))
    hist = result.history
    cos = [r["synthetic_cos"] for r in hist[-max(len(hist) // 5, 1):] if "synthetic_cos" in r]
    return {"config": config, "name": name, "options": options, "seed": seed, "error": err, "status": result.status.kind,
            "final_loss": statistics.fmean(r["loss"] for r in hist[-max(len(hist) // 10, 1):]),
            "synthetic_cos": statistics.fmean(cos) if cos else None, "saved_peak_bytes": saved.peak,
            "aux_parameters": rule.parameter_count(), "s_per_step": seconds / args.steps}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problem", choices=["advect", "ns2d"], default="advect")
    p.add_argument("--configs", nargs="+", default=["full", "t4", "t4sg"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--unroll", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--trajectories", type=int, default=24)
    p.add_argument("--test-trajectories", type=int, default=8)
    p.add_argument("--test-stride", type=int, default=8)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = ns2d_trajectories(args, args.trajectories, 0x5452) if args.problem == "ns2d" else None
    test = ns2d_trajectories(args, args.test_trajectories, 0x5445).frames.float() if args.problem == "ns2d" else None
    runs = []
    for config in args.configs:
        for seed in args.seeds:
            runs.append(run(args, data, test, config, seed))
            print(json.dumps(runs[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"settings": vars(args), "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
