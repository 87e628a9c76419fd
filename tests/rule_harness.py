"""Small tasks and checks shared by the tests of the training rules (tests/test_rule_*.py).

- :class:`FieldRegression`: the online study's setting in miniature: a FieldMLP learns a parametric field
  (two inputs -> 32 values), mini-batches drawn from a fixed training set by a generator the task checkpoints;
  ``evaluate`` gives the relative L2 error on held-out inputs.
- :func:`stepper_task`: SineNet's one-step task on periodic 1D trajectories that move one cell per frame.
- :func:`pinn_task`: the PINN's residual task on the heat problem (no targets).
- :func:`resume_is_exact`: a run cut at ``split`` steps and resumed equals the uninterrupted run, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pdesolve.config import load_run_config
from pdesolve.grid import Grid, GridAxis
from pdesolve.nn.field_mlp import FieldMLP
from pdesolve.optim import Optimizer
from pdesolve.rollout import Trajectories
from pdesolve.solvers.pinn import PINN
from pdesolve.solvers.sinenet import SineNetSolver
from pdesolve.task import Batch, SupervisedTask, Task
from pdesolve.train import TrainSettings, seed_everything, train

PROBLEMS = Path(__file__).resolve().parents[1] / "problems"


def _field(inputs: Tensor, x: Tensor) -> Tensor:
    """u(x; a, t) = sin(pi (1 + a/2) x) exp(-t) + 0.3 a: one channel, 32 points."""
    a, t = inputs[:, :1], inputs[:, 1:]
    return (torch.sin(torch.pi * (1 + 0.5 * a) * x) * torch.exp(-t) + 0.3 * a)[:, None, :]


class FieldRegression(SupervisedTask):
    """A FieldMLP on a fixed set of 256 (a, t) samples; batches of ``batch_size`` drawn with replacement."""

    owner = "the field-regression test task"

    def __init__(self, seed: int = 0, width: int = 32, depth: int = 3, batch_size: int = 32):
        seed_everything(seed)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.linspace(0, 1, 32)
        self.train_in = torch.rand(256, 2, generator=g) * 2 - 1
        self.train_out = _field(self.train_in, self.x)
        self.test_in = torch.rand(64, 2, generator=g) * 2 - 1
        self.test_out = _field(self.test_in, self.x)
        self.model = FieldMLP(2, 1, 32, width=width, depth=depth, act="tanh")
        self.model.set_scale(self.train_out.mean().reshape(1), self.train_out.std().reshape(1))
        self.batch_size = batch_size
        self.gen = torch.Generator().manual_seed(seed + 1)
        self._batch: Batch | None = None

    def before_step(self, step: int) -> None:
        idx = torch.randint(0, 256, (self.batch_size,), generator=self.gen)
        self._batch = Batch(self.train_in[idx], self.train_out[idx])

    def batch(self) -> Batch:
        assert self._batch is not None
        return self._batch

    def criterion(self, prediction: Tensor, targets: Tensor) -> Tensor:
        return (prediction - targets).square().mean()

    def error(self) -> float:
        with torch.no_grad():
            pred = self.model(self.test_in)
        return float((pred - self.test_out).norm() / self.test_out.norm())

    def evaluate(self) -> dict[str, float]:
        return {"rel_l2": self.error()}

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])


def stepper_task(seed: int = 0, width: int = 4) -> tuple[SineNetSolver, Task]:
    """SineNet's data task on trajectories that move by one cell per frame (a periodic 1D problem)."""
    cfg = load_run_config(PROBLEMS / "convection.yaml", [
        "solver=sinenet", f"solvers.sinenet.width={width}", "solvers.sinenet.waves=2", "solvers.sinenet.history=1",
        "solvers.sinenet.channel_mults=[1, 2]", "solvers.sinenet.batch_size=8"])
    seed_everything(seed)
    solver = SineNetSolver(cfg.problem, cfg.solver_options, torch.device("cpu"))
    f0 = np.random.default_rng(seed).standard_normal((6, 1, 32))
    frames = np.stack([np.roll(f0, k, axis=-1) for k in range(10)], axis=1)
    a = cfg.problem.domain.space[0]
    grid = Grid((GridAxis(a.name, a.lo, a.hi, 32, True),), GridAxis("t", 0.0, 0.9, 10))
    data = Trajectories(torch.as_tensor(frames, dtype=torch.float32), grid, ("u",), tuple(range(6)))
    return solver, solver.data_task(data, lambda: {})


def stepper_error(task: Task) -> float:
    """One-step relative L2 of a SineNet task's model on every (frame, next frame) pair of its training trajectories."""
    frames = task.windows.frames  # type: ignore[attr-defined]
    with torch.no_grad():
        x = frames[:, :-1].reshape(-1, 1, *frames.shape[2:])
        y = frames[:, 1:].reshape(-1, *frames.shape[2:])
        return float(task.criterion(task.model(x), y))  # type: ignore[attr-defined]


def pinn_task(points: int = 16) -> Task:
    """The PINN's residual task on the heat problem: provides the loss and input derivatives, no targets."""
    cfg = load_run_config(PROBLEMS / "heat.yaml", [f"solvers.pinn.points.interior={points}"])
    solver = PINN(cfg.problem, cfg.solver_options, torch.device("cpu"))
    return solver.task(lambda: {})


def train_steps(task: Task, rule: Optimizer, steps: int, checkpoint: Path, resume: bool = False, every: int = 1000):
    return train(task, rule, TrainSettings(steps=steps, log_every=1, checkpoint_every=every, quiet=True),
                 checkpoint=checkpoint, resume=resume)


def resume_is_exact(make: Callable[[], tuple[Task, Optimizer]], folder: Path, steps: int = 12, split: int = 5) -> None:
    """Train ``steps`` steps straight, and ``split`` steps then resume to ``steps``: same parameters, same rule state."""
    task, rule = make()
    train_steps(task, rule, steps, folder / "straight.pt")
    straight = {k: v.clone() for k, v in task.model.state_dict().items()}
    straight_rule = rule.state_dict()
    task, rule = make()
    train_steps(task, rule, split, folder / "cut.pt")
    task, rule = make()
    train_steps(task, rule, steps, folder / "cut.pt", resume=True)
    for k, v in task.model.state_dict().items():
        assert torch.equal(v, straight[k]), f"model entry {k} differs after resume"
    _same(rule.state_dict(), straight_rule, "rule state")


def _same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, Tensor):
        assert isinstance(b, Tensor) and torch.equal(a, b), f"{where} differs after resume"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (isinstance(a, float) and np.isnan(a) and np.isnan(b)), f"{where}: {a!r} vs {b!r}"
