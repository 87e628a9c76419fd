"""Backpropagation rules: Adam, AdamW, L-BFGS and the Adam-then-L-BFGS schedule of PINN practice."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..task import Task
from .base import Optimizer, backward_closure


class AdamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    warmup: int = Field(0, ge=0, description="linear warm-up steps")
    schedule: Literal["constant", "cosine", "cosine_restarts"] = "constant"
    min_lr: float = Field(0.0, ge=0)
    steps: int | None = Field(None, gt=0, description="steps of the cosine schedule, or of each cycle of cosine_restarts "
                                                      "(default: the run's steps)")


class LBFGSOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lr: float = Field(1.0, gt=0)
    history_size: int = Field(50, gt=0)
    line_search: Literal["strong_wolfe", "none"] = "strong_wolfe"
    max_evals: int = Field(25, gt=1, description="loss evaluations allowed per iteration (line search)")
    iterations: int = Field(1, ge=1, description="L-BFGS iterations per training step: each step evaluates the loss once "
                                                 "at its start, so k iterations per step save up to k - 1 evaluations")
    tolerance_grad: float = Field(1e-9, ge=0)
    tolerance_change: float = Field(1e-12, ge=0)


class AdamLBFGSOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    adam_steps: int = Field(..., gt=0, description="Adam steps before switching to L-BFGS (in each cycle when cycle is set)")
    lr: float = Field(1e-3, gt=0)
    lbfgs: LBFGSOptions = LBFGSOptions()
    cycle: int | None = Field(None, gt=0, description="start Adam-then-L-BFGS again every N steps, with fresh Adam moments and "
                              "L-BFGS memory: N = solvers.pinn.time_marching.steps runs both in every time window")

    @model_validator(mode="after")
    def _adam_within_cycle(self) -> AdamLBFGSOptions:
        if self.cycle is not None and self.adam_steps >= self.cycle:
            raise ValueError(f"adam_steps ({self.adam_steps}) must be below cycle ({self.cycle}), or no cycle reaches L-BFGS")
        return self


def scheduled_lr(o: AdamOptions, step: int, total_steps: int) -> float:
    """Linear warm-up over ``o.warmup`` steps, then constant or cosine decay to ``o.min_lr``; ``cosine_restarts``
    (SGDR, Loshchilov and Hutter 2017) decays over each cycle of ``o.steps`` steps and starts again, e.g. once per
    time window of a marching PINN."""
    if o.warmup and step < o.warmup:
        return o.lr * (step + 1) / o.warmup
    if o.schedule == "cosine_restarts":
        n = o.steps or total_steps
        frac = ((step - o.warmup) % n) / n
        return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + math.cos(math.pi * frac))
    if o.schedule == "cosine":
        n = (o.steps or total_steps) - o.warmup
        frac = min(1.0, (step - o.warmup) / max(n, 1))
        return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + math.cos(math.pi * frac))
    return o.lr


class _TorchRule(Optimizer):
    """A rule backed by one torch optimizer with an optional warm-up / cosine learning-rate schedule."""

    def __init__(self, options: Any, total_steps: int):
        self.options = options
        self.total_steps = total_steps
        self.opt: torch.optim.Optimizer | None = None

    def _lr(self, step: int) -> float:
        """The learning rate of ``step`` (L-BFGS: constant; Adam/AdamW: :func:`scheduled_lr`)."""
        o = self.options
        return scheduled_lr(o, step, self.total_steps) if isinstance(o, AdamOptions) else o.lr

    def step(self, step: int, task: Task) -> dict[str, float]:
        assert self.opt is not None, "bind() the rule to a task first"
        lr = self._lr(step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        record: dict[str, float] = {}
        self.opt.step(backward_closure(self.opt, task.loss, record))
        record["lr"] = lr
        return record

    def state_dict(self) -> dict[str, Any]:
        return {"opt": self.opt.state_dict() if self.opt else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.opt is not None and state.get("opt") is not None:
            self.opt.load_state_dict(state["opt"])


def _one_kernel(params: list[torch.Tensor]) -> dict[str, bool]:
    """Adam's implementation flags: ``fused`` (the whole update of all tensors in one kernel) where torch has it for
    these tensors (floating point on CPU or CUDA), else ``foreach`` (one kernel per update term). On a small PINN on
    CPU, fused took 0.17 ms per step against foreach's 0.65 (3 x 20 MLP, measured side by side), and agreed with it
    to 1.2e-7 after 50 steps (float32 round-off: it evaluates the same update in another order)."""
    fusable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return {"fused": True} if fusable else {"foreach": True}


class Adam(_TorchRule):
    name = "adam"

    def bind(self, task: Task) -> None:
        o = self.options
        params = list(task.model.parameters())
        self.opt = torch.optim.Adam(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay, **_one_kernel(params))


class AdamW(_TorchRule):
    name = "adamw"

    def bind(self, task: Task) -> None:
        o = self.options
        params = list(task.model.parameters())
        self.opt = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay, **_one_kernel(params))


class LBFGS(_TorchRule):
    """``iterations`` L-BFGS iterations per training step (default one; each line search may evaluate the loss a few
    times). torch's L-BFGS evaluates the loss at the start of every call, where the last line search already did: a
    training step of several iterations shares that evaluation (DeepXDE runs its L-BFGS in calls of many iterations)."""

    name = "lbfgs"

    def bind(self, task: Task) -> None:
        o = self.options
        self.opt = torch.optim.LBFGS(
            task.model.parameters(),
            lr=o.lr,
            max_iter=o.iterations,
            # torch caps the line search at max_eval - 1 evaluations; its default (1 for max_iter=1) would
            # leave no room to shrink a rejected step and stall the run
            max_eval=o.max_evals * o.iterations,
            history_size=o.history_size,
            tolerance_grad=o.tolerance_grad,
            tolerance_change=o.tolerance_change,
            line_search_fn=None if o.line_search == "none" else o.line_search,
        )


class AdamLBFGS(Optimizer):
    """Adam for ``adam_steps`` steps, then L-BFGS for the rest of the run; with ``cycle``, the same in every cycle of
    that many steps, each from fresh optimizer state (a marching PINN's next window is a new problem: the last
    window's curvature pairs and moments describe another network)."""

    name = "adam_lbfgs"

    def __init__(self, options: AdamLBFGSOptions, total_steps: int):
        self.options = options
        self.adam = Adam(AdamOptions(lr=options.lr), total_steps)
        self.lbfgs = LBFGS(options.lbfgs, total_steps)

    def bind(self, task: Task) -> None:
        self.adam.bind(task)
        self.lbfgs.bind(task)

    def step(self, step: int, task: Task) -> dict[str, float]:
        o = self.options
        within = step if o.cycle is None else step % o.cycle
        if o.cycle is not None and within == 0 and step:
            for rule in (self.adam, self.lbfgs):
                rule.opt.state.clear()  # type: ignore[union-attr]
        if within < o.adam_steps:
            return self.adam.step(step, task)
        return self.lbfgs.step(step, task)

    def state_dict(self) -> dict[str, Any]:
        return {"adam": self.adam.state_dict(), "lbfgs": self.lbfgs.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.adam.load_state_dict(state["adam"])
        self.lbfgs.load_state_dict(state["lbfgs"])
