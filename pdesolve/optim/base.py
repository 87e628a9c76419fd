"""The training-rule interface: given a task, move the parameters of its model and report metrics.

Backprop with a torch optimizer is one rule; layer-local learning, target projection, forward-only
learning and the other paradigms implement the same methods. A rule receives the task
(:class:`pdesolve.task.Task`) at :meth:`Optimizer.bind` and at every :meth:`Optimizer.step`, and declares
in ``needs`` what it asks of it (``"loss"``, ``"blocks"``, ``"inputs"``, ``"targets"``,
``"input_derivatives"``); the training loop refuses a task that does not provide them before step 0
(:func:`pdesolve.task.check_rule`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..task import LOSS, Rule, Task

LossFn = Callable[[], tuple[Tensor, dict[str, float]]]
"""Computes the loss on the current batch: ``() -> (scalar loss, {term: value})``."""


class Optimizer(Rule):
    """A training rule. ``bind`` once to a task, then ``step`` once per training step."""

    name: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset({LOSS})

    @abc.abstractmethod
    def bind(self, task: Task) -> None:
        """Attach to the parameters of ``task.model`` (creates any internal state)."""

    @abc.abstractmethod
    def step(self, step: int, task: Task) -> dict[str, float]:
        """One training step on ``task``'s current batch; returns at least ``{"loss": value}`` (before the update)."""

    def parameter_count(self) -> int:
        """Trainable parameters the rule adds to the model's (auxiliary heads, feedback networks, synthesizers)."""
        return 0

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def backward_closure(opt: torch.optim.Optimizer, loss_fn: LossFn, record: dict[str, float]) -> Callable[[], Tensor]:
    """The closure torch optimizers call: zero grads, loss, backward; the first call's terms are kept."""

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss, terms = loss_fn()
        loss.backward()
        if not record:
            record.update(terms)
            record["loss"] = float(loss.detach())
        return loss

    return closure
