"""The model_free rule trains digital blocks around a black box (an explicit heat step of the project's
Laplacian followed by a saturation, run in NumPy) that autograd cannot pass through."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rule_harness import FieldRegression, pinn_task, resume_is_exact, train_steps
from torch import Tensor, nn

from pdesolve.grid import Grid, GridAxis
from pdesolve.nn.blocks import Block, Carry, Lambda, compose
from pdesolve.nn.physical import BlackBox, Chain, NotDifferentiable
from pdesolve.optim import make_optimizer
from pdesolve.simulate.heat import laplacian
from pdesolve.task import RuleMismatch
from pdesolve.train import TrainSettings, train

LAP = laplacian(Grid((GridAxis("x", 0.0, 1.0, 32, True),))).toarray()
R = 0.2 / 32**2  # diffusion number 0.2 of one explicit step


def heat_numpy(u: np.ndarray) -> np.ndarray:
    """One explicit heat step on a periodic 32-point grid, then tanh: the 'physical system'."""
    return np.tanh(u + R * u @ LAP.T)


def heat_torch(u: Tensor) -> Tensor:
    """The same map in torch (differentiable): the backprop baseline's version of the system."""
    return torch.tanh(u + R * u @ torch.as_tensor(LAP.T, dtype=u.dtype))


class _HeatTorch(nn.Module):
    def forward(self, u: Tensor) -> Tensor:
        return heat_torch(u)


class _Physical(Block):
    def __init__(self, mean: Tensor, std: Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, carry: Carry) -> Carry:
        return carry.with_h(carry.h[:, None, :] * self.std + self.mean)


class HybridRegression(FieldRegression):
    """FieldRegression with digital -> heat step -> digital (the box in NumPy, or in torch with ``differentiable``)."""

    owner = "the hybrid-regression test task"

    def __init__(self, differentiable: bool = False, seed: int = 0):
        super().__init__(seed=seed)
        torch.manual_seed(seed)
        box: Block = Lambda(_HeatTorch()) if differentiable else BlackBox(heat_numpy, "heat step")
        self.model = Chain(
            Lambda(nn.Linear(2, 32), nn.Tanh()), Lambda(nn.Linear(32, 32)), box,
            Lambda(nn.Linear(32, 32), nn.Tanh()), Lambda(nn.Linear(32, 32)),
            _Physical(self.train_out.mean(), self.train_out.std()),
        )


def _run(rule_name: str, options: dict, steps: int, differentiable: bool = False) -> tuple[float, float]:
    task = HybridRegression(differentiable)
    start = task.error()
    result = train(task, make_optimizer(rule_name, options, steps), TrainSettings(steps=steps, quiet=True, log_every=50))
    assert result.status.ok
    return start, task.error()


def test_model_free_trains_through_the_black_box_close_to_backprop_through_its_torch_twin():
    start, mf = _run("model_free", {"lr": 3e-3, "directions": 8}, 300)
    _, bp = _run("adam", {"lr": 3e-3}, 300, differentiable=True)
    print(f"hybrid regression, 300 steps: start {start:.3f}, model_free {mf:.4f}, adam through the torch twin {bp:.4f}")
    assert mf < 0.25 * start
    assert mf < 3 * bp + 0.05  # the forward-only estimate costs some accuracy, not the order of magnitude


def test_the_estimate_is_the_true_vector_jacobian_product_with_a_full_frame():
    task = HybridRegression()
    rule = make_optimizer("model_free", {"directions": 32, "epsilon": 1e-4}, 1)
    rule.bind(task)
    h = torch.randn(5, 32, dtype=torch.float64)
    g = torch.randn(5, 32, dtype=torch.float64)
    box = task.model.blocks()[2]
    exact = torch.autograd.functional.vjp(heat_torch, h, g)[1]
    assert torch.allclose(rule.vjp(box, h, g), exact, rtol=1e-5, atol=1e-6)


def test_autograd_through_the_black_box_fails_while_the_rule_trains_the_blocks_before_it():
    task = HybridRegression()
    task.before_step(0)
    batch = task.batch()
    with pytest.raises(NotDifferentiable, match="heat step"):
        task.loss()[0].backward()
    with pytest.raises(NotDifferentiable):
        train(HybridRegression(), make_optimizer("adam", {}, 3), TrainSettings(steps=3, quiet=True))
    with torch.no_grad():
        out = compose(task.blocks(), batch.inputs)
    assert out.grad_fn is None and torch.equal(out, task.model(batch.inputs).detach())
    first = task.model.blocks()[0].body[0].weight
    before = first.detach().clone()
    rule = make_optimizer("model_free", {"lr": 1e-3}, 2)
    train(task, rule, TrainSettings(steps=2, quiet=True))
    assert not torch.equal(first.detach(), before)  # the block before the box moved


def test_resume_is_exact(tmp_path):
    resume_is_exact(lambda: (HybridRegression(), make_optimizer("model_free", {"lr": 3e-3, "directions": 4}, 12)), tmp_path)


def test_refused_on_a_pinn(tmp_path):
    with pytest.raises(RuleMismatch, match="training rule 'model_free' needs blocks, targets, which solver 'pinn'"):
        train_steps(pinn_task(), make_optimizer("model_free", {}, 3), 3, tmp_path / "c.pt")
