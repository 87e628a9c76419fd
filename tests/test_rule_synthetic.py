"""Synthetic gradients (Jaderberg et al., ICML 2017): block-wise decoupled updates (``synthetic_gradients``) and
backprop through time, full, truncated, or truncated with synthetic gradients at the cuts (``bptt``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rule_harness import PROBLEMS, FieldRegression, pinn_task, resume_is_exact, stepper_task, train_steps
from torch import Tensor, nn

from pdesolve.config import load_run_config
from pdesolve.grid import Grid, GridAxis
from pdesolve.optim import make_optimizer
from pdesolve.optim.memory import saved_tensor_bytes
from pdesolve.rollout import Trajectories, relative_l2_frames, rollout
from pdesolve.solvers.sinenet import SineNetSolver
from pdesolve.solvers.sinenet_rollout import SineNetRolloutTask
from pdesolve.task import ROLLOUT, RolloutTask, RuleMismatch
from pdesolve.train import TrainSettings, seed_everything, train


# ----------------------------------------------------------------------------------------------- block-wise
def test_block_wise_synthetic_gradients_lower_the_field_error(tmp_path):
    steps = 300
    adam_task = FieldRegression()
    start = adam_task.error()
    train_steps(adam_task, make_optimizer("adam", {"lr": 3e-3}, steps), steps, tmp_path / "adam.pt")
    task = FieldRegression()
    rule = make_optimizer("synthetic_gradients", {"lr": 3e-3}, steps)
    result = train_steps(task, rule, steps, tmp_path / "sg.pt")
    assert result.status.ok
    adam, sg = adam_task.error(), task.error()
    print(f"field regression, {steps} steps: start {start:.3f}, adam {adam:.4f}, synthetic_gradients {sg:.4f}")
    assert sg < 0.25 * start  # measured: start 0.717, adam 0.055, synthetic gradients 0.091
    assert sg < 3 * adam
    assert rule.parameter_count() > 0
    last = result.history[-1]
    assert last["synthetic_cos_0"] > 0  # the synthesizers point along the true gradient


def test_stages_update_on_predicted_gradients_only(tmp_path):
    """No gradient crosses a boundary: at step 0 the synthesizers are zero, so only the last stage moves; and no
    loss gradient reaches the first stage's parameters."""
    task = FieldRegression()
    rule = make_optimizer("synthetic_gradients", {"lr": 1e-2}, 1)
    rule.bind(task)
    before = [[p.detach().clone() for p in s.parameters()] for s in rule.stages]
    task.before_step(0)
    seen: list[Tensor] = []
    first = next(rule.stages[0].parameters())
    first.register_hook(lambda g: seen.append(g.clone()))
    rule.step(0, task)
    moved = [any(not torch.equal(p, q) for p, q in zip(s.parameters(), b)) for s, b in zip(rule.stages, before)]
    assert moved == [False] * (len(rule.stages) - 1) + [True]
    assert seen and all(float(g.abs().max()) == 0 for g in seen)  # only the (zero) synthetic gradient arrived


def test_block_wise_trains_the_sinenet_stepper_with_its_skips(tmp_path):
    _, task = stepper_task()
    task.before_step(0)
    before = float(task.loss()[0].detach())
    rule = make_optimizer("synthetic_gradients", {"lr": 3e-3}, 40)
    result = train_steps(task, rule, 40, tmp_path / "s.pt")
    losses = [r["loss"] for r in result.history]
    assert np.mean(losses[-5:]) < 0.8 * before, (before, losses[-5:])
    # the U-Net's skips cross stage boundaries: they get synthesizers of their own
    assert any(len(d) > 1 for d in rule.synth)


def test_block_wise_resume_is_exact(tmp_path):
    resume_is_exact(lambda: (FieldRegression(), make_optimizer("synthetic_gradients", {"lr": 3e-3, "hidden": 8}, 12)), tmp_path)


def test_refused_on_a_pinn():
    for name, options in (("synthetic_gradients", {}), ("bptt", {"truncation": 2, "synthetic": True})):
        with pytest.raises(RuleMismatch, match=f"training rule '{name}' needs"):
            train(pinn_task(), make_optimizer(name, options, 3), TrainSettings(steps=3, quiet=True))


def test_bptt_is_refused_on_the_one_step_task():
    _, task = stepper_task()
    with pytest.raises(RuleMismatch, match="needs rollout"):
        train(task, make_optimizer("bptt", {}, 3), TrainSettings(steps=3, quiet=True))


# ----------------------------------------------------------------------------------------------- through time
def _shifting(n: int, frames: int, seed: int, cells: int = 32) -> Tensor:
    """``[n, frames, 1, cells]``: smooth random periodic fields moving one cell per frame."""
    g = torch.Generator().manual_seed(seed)
    k = torch.arange(1, 5, dtype=torch.float32)
    x = torch.arange(cells) * 2 * torch.pi / cells
    a, phase = torch.randn(n, 4, generator=g) / k, torch.rand(n, 4, generator=g) * 2 * torch.pi
    f0 = (a[:, :, None] * torch.sin(k[None, :, None] * x + phase[:, :, None])).sum(1)[:, None]
    return torch.stack([torch.roll(f0, s, dims=-1) for s in range(frames)], dim=1)


def _advected(n: int, frames: int, seed: int, speed: float, cells: int = 64) -> Tensor:
    """``[n, frames, 1, cells]``: 6 random Fourier modes moved ``speed`` cells per frame (exactly, a non-integer shift)."""
    g = torch.Generator().manual_seed(seed)
    k = torch.arange(1, 7, dtype=torch.float64)
    a, phase = torch.randn(n, 6, generator=g, dtype=torch.float64) / k, torch.rand(n, 6, generator=g, dtype=torch.float64) * 2 * torch.pi
    x = torch.arange(cells, dtype=torch.float64) * 2 * torch.pi / cells
    out = [(a[:, :, None] * torch.sin(k[None, :, None] * (x - speed * t * x[1]) + phase[:, :, None])).sum(1)[:, None]
           for t in range(frames)]
    return torch.stack(out, 1).float()


class _Stepper(nn.Module):
    """A small residual convolutional stepper ``[B, 1, C, n] -> [B, C, n]``."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.a = nn.Conv1d(1, width, 5, padding=2, padding_mode="circular")
        self.b = nn.Conv1d(width, 1, 5, padding=2, padding_mode="circular")

    def forward(self, frames: Tensor) -> Tensor:
        x = frames[:, -1]
        return x + self.b(torch.tanh(self.a(x)))


class ShiftRollout(RolloutTask):
    """Windows of 1 + ``unroll`` frames from shifting trajectories; ``error()``: ``unroll``-step rollouts on held-out ones.

    ``speed`` None: 16 trajectories shifting one cell per frame (32 cells); a number: 32 trajectories advected
    ``speed`` cells per frame (64 cells), where a rollout's errors compound and the gradient through time matters.
    """

    owner = "the shifting rollout test task"
    history, periodic = 1, (True,)

    def __init__(self, seed: int = 0, unroll: int = 16, batch: int = 8, speed: float | None = None):
        seed_everything(seed)
        self.unroll, self.batch = unroll, batch
        self.model = _Stepper()
        if speed is None:
            self.frames, self.test = _shifting(16, 24, seed), _shifting(16, unroll + 1, 1000 + seed)
        else:
            self.frames, self.test = _advected(32, unroll + 16, seed, speed), _advected(16, unroll + 1, 1000 + seed, speed)
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

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])


def test_full_bptt_is_adam_on_the_unrolled_loss(tmp_path):
    a, b = ShiftRollout(), ShiftRollout()
    assert ROLLOUT in a.provides
    ha = train_steps(a, make_optimizer("adam", {"lr": 3e-3}, 5), 5, tmp_path / "a.pt").history
    hb = train_steps(b, make_optimizer("bptt", {"lr": 3e-3}, 5), 5, tmp_path / "b.pt").history
    assert [r["loss"] for r in ha] == pytest.approx([r["loss"] for r in hb], rel=1e-5)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_truncated_bptt_with_and_without_synthetic_gradients(tmp_path):
    """Advection at 0.37 cells per frame, unroll 16, truncation 4. The numbers are reported; the ordering of the three
    variants is NOT asserted (see docs: scripts/explore_bptt.py measures it over seeds and longer runs)."""
    steps, errors = 100, {}
    for label, options in (("full", {}), ("t4", {"truncation": 4}), ("t4+sg", {"truncation": 4, "synthetic": True})):
        task = ShiftRollout(speed=0.37)
        start = task.error()
        result = train_steps(task, make_optimizer("bptt", {"lr": 3e-3, **options}, steps), steps, tmp_path / f"{label}.pt")
        errors[label] = task.error()
        if label == "t4+sg":
            cos = np.mean([r["synthetic_cos"] for r in result.history[-20:]])
    print(f"advection rollout, unroll 16, {steps} steps, 16-step held-out error: start {start:.3f}, "
          + ", ".join(f"{k} {v:.4f}" for k, v in errors.items()) + f"; synthetic cos {cos:.2f}")
    assert errors["full"] < 0.5 * start and errors["t4"] < 0.5 * start
    assert errors["t4+sg"] < 0.5 * start  # it learns with the synthetic gradients injected from step 0
    assert cos > 0.3  # the synthesizer learns the direction of the future gradient


def test_truncation_bounds_the_activation_memory():
    peaks = {}
    for label, options in (("full", {}), ("t4", {"truncation": 4}), ("t4+sg", {"truncation": 4, "synthetic": True})):
        task = ShiftRollout()
        rule = make_optimizer("bptt", options, 2)
        rule.bind(task)
        task.before_step(0)
        _, saved = saved_tensor_bytes(lambda rule=rule, task=task: rule.step(0, task))
        peaks[label] = saved.peak
    print("peak saved-tensor bytes:", peaks)
    assert peaks["t4"] < 0.4 * peaks["full"]
    assert peaks["t4+sg"] < 0.4 * peaks["full"]  # the synthesizer's graph is rebuilt when its target arrives


def test_bptt_resume_is_exact(tmp_path):
    def make():
        return ShiftRollout(unroll=6), make_optimizer("bptt", {"truncation": 2, "synthetic": True, "lr": 3e-3}, 12)

    resume_is_exact(make, tmp_path)


def test_bptt_resume_is_exact_through_the_synthesizer_warmup(tmp_path):
    def make():
        options = {"truncation": 2, "synthetic": True, "lr": 3e-3, "synth_warmup": 6, "synth_scale": 0.5}
        return ShiftRollout(unroll=6), make_optimizer("bptt", options, 12)

    resume_is_exact(make, tmp_path)


def test_warmup_trains_the_synthesizer_without_injecting_it(tmp_path):
    """During the warm-up the model's updates are plain truncation's, bit for bit, while the synthesizer learns."""
    steps = 15
    a, b = ShiftRollout(unroll=8, speed=0.37), ShiftRollout(unroll=8, speed=0.37)
    train_steps(a, make_optimizer("bptt", {"lr": 3e-3, "truncation": 2}, steps), steps, tmp_path / "a.pt")
    rule = make_optimizer("bptt", {"lr": 3e-3, "truncation": 2, "synthetic": True, "synth_warmup": steps}, steps)
    hb = train_steps(b, rule, steps, tmp_path / "b.pt").history
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    assert hb[-1]["synthetic_cos"] > 0.2 and any(float(p.detach().abs().max()) > 0 for p in rule.synth.parameters())


# ----------------------------------------------------------------------------------------------- SineNet, YAML
def _sinenet_rollout(overrides: list[str]) -> tuple[SineNetSolver, SineNetRolloutTask, object]:
    cfg = load_run_config(PROBLEMS / "convection.yaml", [
        "solver=sinenet", "solvers.sinenet.width=4", "solvers.sinenet.waves=1", "solvers.sinenet.history=1",
        "solvers.sinenet.channel_mults=[1, 2]", "solvers.sinenet.batch_size=4", *overrides])
    seed_everything(0)
    solver = SineNetSolver(cfg.problem, cfg.solver_options, torch.device("cpu"))
    f0 = np.random.default_rng(0).standard_normal((4, 1, 32))
    frames = np.stack([np.roll(f0, k, axis=-1) for k in range(12)], axis=1)
    a = cfg.problem.domain.space[0]
    grid = Grid((GridAxis(a.name, a.lo, a.hi, 32, True),), GridAxis("t", 0.0, 1.1, 12))
    data = Trajectories(torch.as_tensor(frames, dtype=torch.float32), grid, ("u",), tuple(range(4)))
    task = solver.data_task(data, lambda: {})
    rule = make_optimizer(cfg.train.optimizer.name, cfg.optimizer_options, 4)
    return solver, task, rule  # type: ignore[return-value]


def test_yaml_selects_the_unrolled_sinenet_task_and_the_rule(tmp_path):
    # convection.yaml's optimizer carries adam_steps: replace the whole mapping
    solver, task, rule = _sinenet_rollout(["solvers.sinenet.train_unroll=8",
                                           "train.optimizer={name: bptt, truncation: 4, synthetic: true}"])
    assert isinstance(task, SineNetRolloutTask) and ROLLOUT in task.provides
    assert rule.name == "bptt" and rule.options.truncation == 4 and rule.options.synthetic
    task.before_step(0)
    assert task.window().shape == (4, 9, 1, 32)
    result = train_steps(task, rule, 4, tmp_path / "c.pt")
    assert result.status.ok and all(np.isfinite(r["loss"]) for r in result.history)
    # plain Adam trains the same task on its full unrolled loss
    _, task, rule = _sinenet_rollout(["solvers.sinenet.train_unroll=8", "train.optimizer={name: adam}"])
    assert rule.name == "adam"
    assert train_steps(task, rule, 2, tmp_path / "a.pt").status.ok


def test_train_unroll_1_keeps_one_step_teacher_forcing():
    _, task, _ = _sinenet_rollout([])
    assert not isinstance(task, SineNetRolloutTask) and ROLLOUT not in task.provides
