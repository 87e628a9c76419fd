"""NoProp-DT trains each denoising block of a NoPropNet on its own noise level; no gradient crosses blocks."""

from __future__ import annotations

import pytest
import torch
from rule_harness import FieldRegression, pinn_task, resume_is_exact, train_steps

from pdesolve.nn.noprop import NoPropNet, cosine_schedule, posterior_coefficients
from pdesolve.optim import make_optimizer
from pdesolve.task import DENOISING_BLOCKS, RuleMismatch, check_rule
from pdesolve.train import TrainSettings, train


class DenoisingRegression(FieldRegression):
    """FieldRegression with a NoPropNet (T blocks of two hidden layers of 32 units) instead of the FieldMLP."""

    owner = "the denoising-regression test task"

    def __init__(self, seed: int = 0, T: int = 5):  # noqa: N803
        super().__init__(seed=seed)
        torch.manual_seed(seed)
        self.model = NoPropNet(2, (1, 32), T=T, width=32, depth=2, act="tanh")
        self.model.set_scale(self.train_out.mean().reshape(1), self.train_out.std().reshape(1))


def _run(rule_name: str, steps: int) -> tuple[float, float]:
    task = DenoisingRegression()
    start = task.error()
    result = train(task, make_optimizer(rule_name, {"lr": 3e-3}, steps), TrainSettings(steps=steps, quiet=True, log_every=50))
    assert result.status.ok
    return start, task.error()


def test_noprop_lowers_the_held_out_error():
    start, noprop = _run("noprop", 300)
    _, adam = _run("adam", 300)  # the same NoPropNet trained end to end through its inference chain
    print(f"NoPropNet T=5, 300 steps: start {start:.3f}, noprop {noprop:.4f}, adam end-to-end {adam:.4f}")
    assert noprop < 0.4 * start
    assert adam < 0.1  # the architecture itself can fit the field


def test_the_schedule_and_the_deterministic_forward():
    ab = cosine_schedule(10)
    assert ab[0] < 1e-3 and ab[-1] == pytest.approx(0.999) and bool((ab[1:] > ab[:-1]).all())
    a, b, c = posterior_coefficients(ab)
    assert bool((a > 0).all() and (b >= 0).all() and (c > 0).all())
    # the posterior mean is exact when the denoiser is: z_{t-1} = sqrt(ab) u gives z_t = sqrt(ab_t) u
    u = torch.randn(3, dtype=torch.float64)
    assert torch.allclose(a * u[:, None] + b * ab[:-1].sqrt() * u[:, None], ab[1:].sqrt() * u[:, None])
    task = DenoisingRegression()
    assert torch.equal(task.model(task.test_in), task.model(task.test_in))
    seeded = NoPropNet(2, 32, T=3, noise_seed=7)
    x = torch.randn(4, 2)
    assert seeded(x).shape == (4, 32) and torch.equal(seeded(x), seeded(x))


def test_each_block_gradient_stays_in_its_block():
    task = DenoisingRegression()
    rule = make_optimizer("noprop", {}, 1)
    check_rule(rule, task)
    rule.bind(task)
    task.before_step(0)
    batch = task.batch()
    terms, readout, _ = rule.losses(batch.inputs, batch.targets, task.criterion)
    groups = [list(b.parameters()) for b in task.model.denoisers()] + [list(task.model.head().parameters())]
    flat = [p for g in groups for p in g]
    for own, loss in enumerate([*terms, readout]):
        grads = torch.autograd.grad(loss, flat, allow_unused=True, retain_graph=True)
        k = 0
        for g, params in enumerate(groups):
            for _ in params:
                reached = grads[k] is not None and bool(grads[k].abs().sum() > 0)
                assert reached == (g == own), f"loss of block {own} reached group {g}: {reached}"
                k += 1


def test_resume_is_exact(tmp_path):
    resume_is_exact(lambda: (DenoisingRegression(T=3), make_optimizer("noprop", {"lr": 3e-3}, 12)), tmp_path)


def test_refused_without_a_denoising_model(tmp_path):
    field = FieldRegression()
    assert DENOISING_BLOCKS not in field.provides and DENOISING_BLOCKS in DenoisingRegression().provides
    with pytest.raises(RuleMismatch, match="training rule 'noprop' needs denoising_blocks, which the field-regression"):
        train_steps(field, make_optimizer("noprop", {}, 3), 3, tmp_path / "a.pt")
    with pytest.raises(RuleMismatch, match="training rule 'noprop' needs denoising_blocks, targets, which solver 'pinn'"):
        train_steps(pinn_task(), make_optimizer("noprop", {}, 3), 3, tmp_path / "b.pt")
