"""NoProp-DT: every block of a denoising chain is trained on its own, no gradient crosses blocks.

Paper: Qinyu Li, Yee Whye Teh, Razvan Pascanu, "NoProp: Training Neural Networks without Back-propagation
or Forward-propagation", arXiv 2503.24322 (2025); the discrete-time variant NoProp-DT.

The model is a :class:`~pdesolve.nn.noprop.DenoisingModel` (e.g. :class:`~pdesolve.nn.noprop.NoPropNet`):
``T`` blocks ``u_t(x, z_{t-1})`` and a read-out. For each batch ``(x, y)`` with target embedding ``u = embed(y)``
the rule draws, for every block ``t``, a noised embedding ``z_{t-1} = sqrt(ab_{t-1}) u + sqrt(1 - ab_{t-1}) eps``
from the model's schedule ``ab`` and minimises

    ``eta / 2 * sum_t (SNR(t) - SNR(t-1)) * mean_n || u_t(x, z_{t-1}) - u ||^2``
    ``+ criterion(head(z_T), y)``  with ``z_T`` drawn from ``q(z_T | y)`` as well,

the paper's objective with the expectation over ``t`` taken as a sum over all blocks (every block is
trained every step) and the read-out's log-likelihood replaced by the task's criterion (regression). Block
``t``'s input is a sample, not another block's output, so its loss reaches only its own parameters: no
forward pass through the chain and no gradient between blocks. The KL term of the paper is constant here
(the embedding is the normalized target, not learned) and is left out.

Regression form: the embedding is the normalized, flattened field (:class:`~pdesolve.nn.noprop.NoPropNet`),
so the denoisers regress the field itself; the prediction is the model's forward pass, the inference
iteration from ``z_0 = 0`` with the posterior-mean update, then the read-out (see the model).

Needs ``loss``, ``inputs``, ``targets`` and ``denoising_blocks`` (the model must be a denoising model).
The noise generator is part of :meth:`NoProp.state_dict`, so a resumed run is exact.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from ..nn.blocks import DenoisingModel
from ..nn.noprop import snr
from ..task import DENOISING_BLOCKS, INPUTS, LOSS, TARGETS, SupervisedTask, Task
from .backprop import AdamOptions, scheduled_lr
from .base import Optimizer


class NoPropOptions(AdamOptions):
    """Adam's options (learning rate, warm-up, cosine schedule) for every block, plus NoProp's own."""

    eta: float = Field(0.1, gt=0, description="weight of the denoising terms against the read-out's loss")
    seed: int = Field(0, description="seed of the generator of the training noise")


class NoProp(Optimizer):
    """NoProp-DT on a denoising model: one Adam update per step of every block's own denoising loss."""

    name = "noprop"
    needs = frozenset({LOSS, INPUTS, TARGETS, DENOISING_BLOCKS})

    def __init__(self, options: NoPropOptions, total_steps: int):
        self.options = options
        self.total_steps = total_steps
        self.gen = torch.Generator().manual_seed(options.seed)
        self.opt: torch.optim.Optimizer | None = None

    def bind(self, task: Task) -> None:
        model = task.model
        assert isinstance(model, DenoisingModel), "check_rule guarantees a denoising model"
        self.model = model
        o = self.options
        groups = [{"params": list(block.parameters())} for block in model.denoisers()]
        groups.append({"params": list(model.head().parameters())})
        self.opt = torch.optim.Adam(groups, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)

    def _noise(self, like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=self.gen, dtype=like.dtype).to(like.device)

    def losses(self, x: Tensor, targets: Tensor, criterion) -> tuple[list[Tensor], Tensor, list[float]]:
        """Each block's weighted denoising loss, the read-out's loss, and each block's unweighted MSE.

        Block ``t``'s loss depends on block ``t``'s parameters only; the read-out's on the read-out's only.
        """
        model = self.model
        u = model.embed(targets).detach()
        ab = model.schedule().to(u.dtype)
        ratio = snr(ab)
        terms, mse = [], []
        for t, block in enumerate(model.denoisers(), start=1):
            z = ab[t - 1].sqrt() * u + (1 - ab[t - 1]).sqrt() * self._noise(u)
            err = (block(x, z) - u).square()
            mse.append(float(err.detach().mean()))
            terms.append(0.5 * self.options.eta * (ratio[t] - ratio[t - 1]) * err.sum(-1).mean())
        z_last = ab[-1].sqrt() * u + (1 - ab[-1]).sqrt() * self._noise(u)
        return terms, criterion(model.head()(z_last), targets), mse

    def step(self, step: int, task: Task) -> dict[str, float]:
        assert self.opt is not None and isinstance(task, SupervisedTask), "bind() the rule to a supervised task first"
        lr = scheduled_lr(self.options, step, self.total_steps)
        for g in self.opt.param_groups:
            g["lr"] = lr
        batch = task.batch()
        with torch.no_grad():
            before = float(task.criterion(task.model(batch.inputs), batch.targets))
        terms, readout, mse = self.losses(batch.inputs, batch.targets, task.criterion)
        self.opt.zero_grad(set_to_none=True)
        (sum(terms) + readout).backward()
        self.opt.step()
        return {"loss": before, "denoise": sum(mse) / len(mse), "readout": float(readout.detach()), "lr": lr}

    def parameter_count(self) -> int:
        """Auxiliary parameters the rule owns: none (the read-out is part of the model)."""
        return 0

    def state_dict(self) -> dict[str, Any]:
        return {"opt": self.opt.state_dict() if self.opt else None, "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.opt is not None and state.get("opt") is not None:
            self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
