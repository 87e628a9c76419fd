"""The shared training loop: exact resume, the divergence guard, interruption."""

from pathlib import Path

import torch

from pdesolve.config import load_run_config
from pdesolve.optim import make_optimizer
from pdesolve.solvers.pinn import PINN
from pdesolve.task import Task
from pdesolve.train import TrainSettings, seed_everything, train

HEAT = Path(__file__).resolve().parents[1] / "problems" / "heat.yaml"
OVERRIDES = [
    "solvers.pinn.points.interior=64",
    "solvers.pinn.rar.every=7",
    "solvers.pinn.rar.add=5",
    "solvers.pinn.rar.candidates=500",
    "solvers.pinn.points.resample_every=11",
]


def _run(steps, ckpt, resume=False):
    cfg = load_run_config(HEAT, OVERRIDES)
    seed_everything(3)
    solver = PINN(cfg.problem, cfg.solver_options, torch.device("cpu"))
    task = solver.task(lambda: {})
    opt = make_optimizer("adam_lbfgs", {"adam_steps": 25, "lr": 1e-2}, 40)
    settings = TrainSettings(steps=steps, checkpoint_every=10, log_every=1, quiet=True)
    return train(task, opt, settings, checkpoint=ckpt, resume=resume)


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    full = _run(40, tmp_path / "full.pt")
    first = _run(20, tmp_path / "part.pt")
    second = _run(40, tmp_path / "part.pt", resume=True)
    assert second.resumed_from == 20
    losses_full = [row["loss"] for row in full.history]
    losses_resumed = [row["loss"] for row in second.history]
    assert len(losses_full) == 40 and losses_resumed[:20] == [row["loss"] for row in first.history]
    assert losses_resumed == losses_full  # bit-for-bit, across the Adam -> L-BFGS switch and refinements


class _Exploding(Task):
    """A task whose loss becomes NaN at step 5."""

    owner = "a test"

    def __init__(self):
        self.model = torch.nn.Linear(2, 1)
        self.step = 0

    def loss(self):
        out = self.model(torch.ones(4, 2)).pow(2).mean()
        if self.step >= 5:
            out = out * float("nan")
        return out, {}

    def before_step(self, step):
        self.step = step


def test_divergence_guard_names_the_step_and_a_remedy(tmp_path):
    task = _Exploding()
    result = train(
        task, make_optimizer("adam", {}, 20), TrainSettings(steps=20, checkpoint_every=3, quiet=True), checkpoint=tmp_path / "c.pt"
    )
    assert result.status.kind == "diverged" and result.status.step == 5
    assert "step 5" in result.status.message and "learning rate" in result.status.message
    assert "restored" in result.status.message
    assert all(torch.isfinite(p).all() for p in task.model.parameters())


class _NaNFromTheStart(_Exploding):
    """A task whose loss is NaN before any update (a non-finite input)."""

    def loss(self):
        out, terms = super().loss()
        return out * float("nan"), terms


def test_a_loss_that_is_not_finite_before_any_update_blames_the_inputs_not_the_learning_rate():
    result = train(_NaNFromTheStart(), make_optimizer("adam", {}, 5), TrainSettings(steps=5, quiet=True))
    assert result.status.kind == "diverged" and result.status.step == 0
    assert "before any update: an input" in result.status.message and "learning rate is not the cause" in result.status.message


class _Quadratic(Task):
    """An ill-conditioned quadratic in 6 parameters: L-BFGS's own playground, counting its loss evaluations."""

    owner = "quadratic"

    def __init__(self):
        self.model = torch.nn.Linear(6, 1, bias=False).double()
        torch.nn.init.ones_(self.model.weight)
        self.scales = torch.logspace(0, 3, 6, dtype=torch.float64)
        self.evaluations = 0

    def loss(self):
        self.evaluations += 1
        w = self.model.weight[0]
        return (self.scales * (w - 0.5) ** 2).sum() + (w[0] * w[1]) ** 2, {}

    def evaluate(self):
        return {}


def test_lbfgs_iterations_per_step_follow_the_same_path_with_fewer_loss_evaluations():
    """k iterations in one step are k steps of one iteration (torch's L-BFGS keeps its history between calls), minus the
    evaluation each call makes at its start, where the last line search already evaluated."""
    runs = {}
    for k, steps in ((1, 6), (6, 1)):
        task = _Quadratic()
        rule = make_optimizer("lbfgs", {"iterations": k}, steps)
        rule.bind(task)
        for s in range(steps):
            rule.step(s, task)
        runs[k] = (task.model.weight.detach().clone(), task.evaluations)
    torch.testing.assert_close(runs[6][0], runs[1][0], rtol=1e-12, atol=1e-12)
    assert runs[6][1] <= runs[1][1] - 5



def test_adam_lbfgs_cycles_start_each_cycle_from_fresh_state_and_resume_exactly(tmp_path):
    import pydantic
    import pytest

    from pdesolve.optim.backprop import AdamLBFGSOptions

    with pytest.raises(pydantic.ValidationError, match="must be below cycle"):
        AdamLBFGSOptions(adam_steps=10, cycle=10)

    def run(steps, ckpt, resume=False):
        cfg = load_run_config(HEAT, OVERRIDES)
        seed_everything(3)
        task = PINN(cfg.problem, cfg.solver_options, torch.device("cpu")).task(lambda: {})
        opt = make_optimizer("adam_lbfgs", {"adam_steps": 8, "lr": 1e-2, "cycle": 15}, 30)
        return train(task, opt, TrainSettings(steps=steps, checkpoint_every=10, log_every=1, quiet=True), checkpoint=ckpt,
                     resume=resume), opt

    full, opt = run(30, tmp_path / "full.pt")
    adam_steps = {int(s["step"]) for s in opt.adam.opt.state.values()}
    assert adam_steps == {8}  # the second cycle's Adam counted from 1 again (steps 15-22), not on from the first's 8
    assert [row["lr"] for row in full.history] == [1e-2] * 8 + [1.0] * 7 + [1e-2] * 8 + [1.0] * 7
    run(20, tmp_path / "part.pt")  # stopped inside the second cycle, resumed
    resumed, _ = run(30, tmp_path / "part.pt", resume=True)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
