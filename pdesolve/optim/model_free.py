"""Model-free training of block models that contain black boxes (physical systems, simulator steps).

Paper: Ali Momeni, Babak Rahmani, Matthieu Mallejac, Philipp del Hougne, Romain Fleury, "Backpropagation-free
training of deep physical neural networks", Science 382 (2023), physical local learning (PhyLL).

PhyLL trains digital weights placed *after* each physical layer with a local, contrastive loss: the input is
overlaid with the correct label (positive) or a wrong one (negative), and each layer raises the cosine
"goodness" of positive outputs over negative ones, so no gradient ever passes through a physical layer and
no model of it is needed. The contrastive part does not transfer to regression (a continuous target has no
wrong label to overlay, and goodness separates classes, not field values), and a local loss would train the
blocks before a black box without regard to what the black box does with their output. This rule keeps
PhyLL's contract (the black box is only ever run forward, never modelled nor differentiated) and trains
every parameter on the task's own loss:

- parameters whose path to the output crosses no black box (after the last one, or past one through a kept
  skip tensor) get their ordinary gradient;
- at each black box ``f`` the gradient of the loss with respect to its output, ``g``, is known (from the
  blocks after it); the vector-Jacobian product ``J_f^T g`` it would pass back is *estimated from forward
  calls only*: for ``K`` random orthonormal directions ``v_k`` of each sample's input (drawn from a generator
  the rule checkpoints), ``J^T g ~ (D / K) sum_k [g . (f(h + e v_k) - f(h - e v_k)) / (2 e)] v_k`` (central
  differences, ``D`` the input size per sample, ``e = epsilon * rms(h)``); unbiased, exact when ``K = D``.
  The estimate is then passed back through the blocks before the box by ordinary autograd (they are digital).
  Cost: ``2 K`` batched black-box calls per step and box; an activity-perturbation (SPSA-like) estimate whose
  variance grows with ``D / K``, not with the number of parameters.

Regression form: the task's criterion on the model's output; the prediction is the model's forward pass
(its black boxes run forward as in training). Needs ``loss``, ``blocks``, ``inputs``, ``targets``. One Adam
update of all parameters per step. Limits: the black box must map each sample of a batch on its own; a noisy
physical system adds its measurement noise divided by ``e`` to the estimate (raise ``epsilon``); black boxes
are processed from the last to the first, so several of them in a chain work, each with its own estimate.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from ..nn.blocks import Carry
from ..nn.physical import BlackBox
from ..task import BLOCKS, INPUTS, LOSS, TARGETS, SupervisedTask, Task
from .backprop import AdamOptions, scheduled_lr
from .base import Optimizer


class ModelFreeOptions(AdamOptions):
    """Adam's options for all parameters, plus the forward-only estimate through each black box."""

    directions: int = Field(8, ge=1, description="orthonormal perturbation directions per sample (capped at the input size)")
    epsilon: float = Field(1e-3, gt=0, description="perturbation size relative to the rms of the black box's input")
    seed: int = Field(0, description="seed of the generator of the directions")


class ModelFree(Optimizer):
    """Exact gradients where no black box is crossed, forward-only estimates of the black boxes' VJPs."""

    name = "model_free"
    needs = frozenset({LOSS, BLOCKS, INPUTS, TARGETS})

    def __init__(self, options: ModelFreeOptions, total_steps: int):
        self.options = options
        self.total_steps = total_steps
        self.gen = torch.Generator().manual_seed(options.seed)
        self.opt: torch.optim.Optimizer | None = None
        self.calls = 0  # black-box evaluations of the last step (samples counted once per batched call)

    def bind(self, task: Task) -> None:
        self.blocks = list(task.blocks())
        o = self.options
        self.opt = torch.optim.Adam(task.model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)

    def vjp(self, box: BlackBox, h: Tensor, g: Tensor) -> Tensor:
        """The forward-only estimate of ``J^T g`` of ``box`` at ``h`` (``g``: gradient at its output)."""
        n = h.shape[0]
        flat = h.detach().reshape(n, -1)
        d = flat.shape[1]
        k = min(self.options.directions, d)
        gauss = torch.randn((n, d, k), generator=self.gen, dtype=torch.float64)
        frames = torch.linalg.qr(gauss).Q.to(device=h.device, dtype=h.dtype)  # [n, d, k], orthonormal columns
        e = self.options.epsilon * float(flat.square().mean().sqrt().clamp_min(1e-12))
        probes = torch.cat([flat[None] + e * frames.permute(2, 0, 1), flat[None] - e * frames.permute(2, 0, 1)])  # [2k, n, d]
        out = box.evaluate(probes.reshape((2 * k * n,) + tuple(h.shape[1:])))
        self.calls += 1
        out = out.reshape(2, k, n, -1)
        slope = ((out[0] - out[1]) * g.reshape(1, n, -1)).sum(-1) / (2 * e)  # [k, n]: g . J v_k per sample
        est = torch.einsum("kn,ndk->nd", slope, frames) * (d / k)
        return est.reshape(h.shape)

    def step(self, step: int, task: Task) -> dict[str, float]:
        assert self.opt is not None and isinstance(task, SupervisedTask), "bind() the rule to a supervised task first"
        lr = scheduled_lr(self.options, step, self.total_steps)
        for group in self.opt.param_groups:
            group["lr"] = lr
        batch = task.batch()
        self.calls = 0
        crossings: list[tuple[BlackBox, Tensor, Tensor]] = []
        carry = Carry(batch.inputs)
        for block in self.blocks:
            if isinstance(block, BlackBox):
                out = block.evaluate(carry.h).requires_grad_(True)  # a leaf: collects the gradient at its output
                self.calls += 1
                crossings.append((block, carry.h, out))
                carry = carry.with_h(out)
            else:
                carry = block(carry)
        loss = task.criterion(carry.h, batch.targets)
        self.opt.zero_grad(set_to_none=True)
        loss.backward(retain_graph=bool(crossings))
        for box, h, out in reversed(crossings):  # later boxes first: their estimates feed the earlier outputs' grads
            if out.grad is None or not h.requires_grad:
                continue
            torch.autograd.backward(h, self.vjp(box, h, out.grad), retain_graph=True)
        self.opt.step()
        return {"loss": float(loss.detach()), "lr": lr, "black_box_calls": float(self.calls)}

    def parameter_count(self) -> int:
        """Auxiliary parameters the rule owns: none."""
        return 0

    def state_dict(self) -> dict[str, Any]:
        return {"opt": self.opt.state_dict() if self.opt else None, "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.opt is not None and state.get("opt") is not None:
            self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
