"""Training rules see the task: a rule written here plugs into the training loop with no change to the library,
and a rule whose needs a task does not provide is refused before step 0 with a message that names what is missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import BaseModel, ConfigDict

import pdesolve as ps
from pdesolve.config import ConfigError, load_run_config
from pdesolve.grid import Grid, GridAxis
from pdesolve.nn.blocks import compose
from pdesolve.optim import OPTIMIZERS, Optimizer, make_optimizer
from pdesolve.rollout import Trajectories
from pdesolve.solvers.pinn import PINN
from pdesolve.solvers.sinenet import SineNetSolver
from pdesolve.task import BLOCKS, INPUTS, LOSS, TARGETS, RuleMismatch, SupervisedTask, Task
from pdesolve.train import TrainSettings, seed_everything, train

PROBLEMS = Path(__file__).resolve().parents[1] / "problems"


class BlockSignSGD(Optimizer):
    """Per-block sign-SGD that runs the model block by block itself: each block's parameters move by
    ``lr * sign(gradient)``, with the step of block ``b`` scaled by ``decay ** b``."""

    name = "block_sign_sgd"
    needs = frozenset({LOSS, BLOCKS, INPUTS, TARGETS})

    def __init__(self, lr: float = 1e-3, decay: float = 0.9):
        self.lr, self.decay = lr, decay
        self.moved: list[float] = []

    def bind(self, task: Task) -> None:
        assert isinstance(task, SupervisedTask)  # the needs check guarantees it
        self.blocks = list(task.blocks())
        self.params = [list(b.parameters()) for b in self.blocks]

    def step(self, step: int, task: Task) -> dict[str, float]:
        assert isinstance(task, SupervisedTask)
        batch = task.batch()
        loss = task.criterion(compose(self.blocks, batch.inputs), batch.targets)
        flat = [p for ps_ in self.params for p in ps_]
        grads = iter(torch.autograd.grad(loss, flat))
        self.moved = []
        with torch.no_grad():
            for b, params in enumerate(self.params):
                size = 0.0
                for p in params:
                    update = self.lr * self.decay**b * torch.sign(next(grads))
                    p -= update
                    size += float(update.abs().sum())
                self.moved.append(size)
        return {"loss": float(loss.detach())}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class NeedsTargets(Optimizer):
    """A stand-in for a target-based rule (target projection, local learning): it only declares its needs."""

    name = "needs_targets"
    needs = frozenset({LOSS, TARGETS})

    def __init__(self, *_args):
        pass

    def bind(self, task: Task) -> None:
        raise AssertionError("a refused rule is never bound")

    def step(self, step: int, task: Task) -> dict[str, float]:
        raise AssertionError("a refused rule never steps")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _advection_task():
    """SineNet's data task on trajectories that move by one cell per frame (a periodic 1D problem)."""
    cfg = load_run_config(PROBLEMS / "convection.yaml", [
        "solver=sinenet", "solvers.sinenet.width=4", "solvers.sinenet.waves=2", "solvers.sinenet.history=1",
        "solvers.sinenet.channel_mults=[1, 2]", "solvers.sinenet.batch_size=8"])
    seed_everything(0)
    solver = SineNetSolver(cfg.problem, cfg.solver_options, torch.device("cpu"))
    f0 = np.random.default_rng(0).standard_normal((6, 1, 32))
    frames = np.stack([np.roll(f0, k, axis=-1) for k in range(10)], axis=1)
    a = cfg.problem.domain.space[0]
    grid = Grid((GridAxis(a.name, a.lo, a.hi, 32, True),), GridAxis("t", 0.0, 0.9, 10))
    data = Trajectories(torch.as_tensor(frames, dtype=torch.float32), grid, ("u",), tuple(range(6)))
    return solver, solver.data_task(data, lambda: {})


def test_a_rule_written_here_trains_block_by_block_through_the_loop(tmp_path):
    solver, task = _advection_task()
    assert task.provides >= {LOSS, BLOCKS, INPUTS, TARGETS}
    task.before_step(0)
    batch = task.batch()
    assert torch.equal(compose(task.blocks(), batch.inputs), solver.model(batch.inputs))  # blocks compose to forward
    before = float(task.loss()[0])
    rule = BlockSignSGD(lr=2e-3)
    result = train(task, rule, TrainSettings(steps=60, log_every=1, quiet=True), checkpoint=tmp_path / "c.pt")
    assert result.status.ok
    losses = [row["loss"] for row in result.history]
    assert np.mean(losses[-10:]) < 0.7 * before, (before, losses[-10:])
    assert len(rule.moved) == len(task.blocks())
    for b, (moved, params) in enumerate(zip(rule.moved, rule.params)):  # each block by its own step size
        numel = sum(p.numel() for p in params)
        assert 0 < moved <= 2e-3 * 0.9**b * numel * (1 + 1e-6) if numel else moved == 0


def test_a_rule_that_needs_targets_is_refused_on_a_pinn_before_step_0(tmp_path):
    cfg = load_run_config(PROBLEMS / "heat.yaml", ["solvers.pinn.points.interior=16"])
    solver = PINN(cfg.problem, cfg.solver_options, torch.device("cpu"))
    task = solver.task(lambda: {})
    with pytest.raises(RuleMismatch) as err:
        train(task, NeedsTargets(), TrainSettings(steps=5, quiet=True), checkpoint=tmp_path / "c.pt")
    assert str(err.value).startswith("training rule 'needs_targets' needs targets, which solver 'pinn' does not provide")
    assert "input_derivatives" in str(err.value)  # what it does provide
    assert not (tmp_path / "c.pt").exists()


def test_the_runner_refuses_the_pairing_before_the_run_folder_exists(tmp_path, monkeypatch):
    monkeypatch.setitem(OPTIMIZERS, "needs_targets", (NeedsTargets, NoOptions))
    # refused by the run's preflight (pdesolve/preflight.py, the checks `pdesolve validate` makes) as a ConfigError
    with pytest.raises(ConfigError, match="train.optimizer: training rule 'needs_targets' needs targets, which solver 'pinn' does"):
        ps.solve(PROBLEMS / "heat.yaml", "pinn", settings={"train": {"steps": 3, "optimizer": {"name": "needs_targets"}}},
                 out=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_backprop_rules_see_only_the_loss():
    for name in ("adam", "adamw", "lbfgs"):
        assert make_optimizer(name, {}, 10).needs == {LOSS}
    assert make_optimizer("adam_lbfgs", {"adam_steps": 5}, 10).needs == {LOSS}
