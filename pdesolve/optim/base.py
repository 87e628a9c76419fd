"""The training-rule interface: given a model and a loss, move the parameters and report metrics.

Backprop with a torch optimizer is one rule; layer-local learning, target projection, forward-only
learning and the other paradigms implement the same three methods. A rule declares what it needs
(``"targets"``, ``"blocks"``, ``"input_derivatives"``...) in ``needs``; the trainer checks that the
solver provides it before a run starts.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

LossFn = Callable[[], tuple[Tensor, dict[str, float]]]
"""Computes the loss on the current batch: ``() -> (scalar loss, {term: value})``."""


class Optimizer(abc.ABC):
    """A training rule. ``bind`` once to a model, then ``step`` once per training step."""

    name: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    def bind(self, model: nn.Module) -> None:
        """Attach to the parameters of ``model`` (creates any internal state)."""

    @abc.abstractmethod
    def step(self, step: int, loss_fn: LossFn) -> dict[str, float]:
        """One training step; returns at least ``{"loss": value}`` (the loss before the update)."""

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
