"""The task protocol: what the training loop trains, and what a training rule may ask of it.

Every solver hands :func:`pdesolve.train.train` a :class:`Task`: its model, the loss on the current batch,
and what else it *provides*, by name:

- ``loss``: every task (the closure backprop rules call);
- ``blocks``: the model is a :class:`~pdesolve.nn.blocks.BlockModel` whose blocks compose exactly to its
  forward pass (layer-local rules, forward-only rules, synthetic gradients);
- ``inputs`` and ``targets``: a :class:`SupervisedTask` (surrogates, grid time steppers trained on data)
  exposes the current batch and the criterion that scores a prediction against its targets;
- ``input_derivatives``: a :class:`ResidualTask` (PINNs) exposes its collocation points and the jet of the
  model's output (value and derivatives in the inputs) there, and the loss of such a jet;
- ``rollout``: a task whose batch is a window of frames a grid stepper is unrolled over (the model applied
  to its own outputs), for rules that cut or bridge the backward pass through time;
- ``denoising_blocks``: the model is a chain of denoisers of the target (NoProp), each trainable on its own.

A training rule declares ``needs`` (:class:`pdesolve.optim.Optimizer`); :func:`check_rule` refuses a rule
whose needs the task does not provide, before step 0, naming the rule, the task's owner and what is missing.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

from .errors import UserError
from .nn.blocks import Block, BlockModel
from .nn.noprop import DenoisingModel

if TYPE_CHECKING:
    from .nn.jet import Jet

LOSS = "loss"
BLOCKS = "blocks"
INPUTS = "inputs"
TARGETS = "targets"
INPUT_DERIVATIVES = "input_derivatives"
ROLLOUT = "rollout"
DENOISING_BLOCKS = "denoising_blocks"
CAPABILITIES = frozenset({LOSS, BLOCKS, INPUTS, TARGETS, INPUT_DERIVATIVES, ROLLOUT, DENOISING_BLOCKS})


class RuleMismatch(UserError):
    """A training rule paired with a task that does not provide what the rule needs."""


class Task(abc.ABC):
    """What the loop trains: a model, the loss on the current batch, an evaluation, and its own state.

    ``owner`` names who made the task in messages (``"solver 'pinn'"``). ``before_step`` draws the step's
    batch (points, windows, records); ``state_dict`` holds what exact resume needs beyond the model and the
    rule (generators, point sets).
    """

    owner: str
    model: nn.Module

    @abc.abstractmethod
    def loss(self) -> tuple[Tensor, dict[str, float]]:
        """The scalar loss on the current batch and its named terms (floats, for the history)."""

    def before_step(self, step: int) -> None:  # noqa: B027 - optional: most tasks draw nothing per step
        """Prepare step ``step`` (draw its batch); called once before the rule's step."""

    def evaluate(self) -> dict[str, float]:
        """Metrics against a reference (empty when there is none)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - the default task keeps nothing
        """Restore :meth:`state_dict`."""

    @property
    def provides(self) -> frozenset[str]:
        """What a rule may ask of this task (see the module docstring)."""
        base = frozenset({LOSS, BLOCKS} if isinstance(self.model, BlockModel) else {LOSS})
        return (base | {DENOISING_BLOCKS}) if isinstance(self.model, DenoisingModel) else base

    def blocks(self) -> Sequence[Block]:
        """The model's blocks (only when ``blocks`` is provided)."""
        if not isinstance(self.model, BlockModel):
            raise RuleMismatch(f"{self.owner}: its model {type(self.model).__name__} does not provide blocks")
        return self.model.blocks()


@dataclass(frozen=True)
class Batch:
    """One step's supervised batch: the model's ``inputs`` and the ``targets`` its output is scored against."""

    inputs: Tensor
    targets: Tensor


class SupervisedTask(Task):
    """A task with inputs and targets: ``loss() == criterion(model(batch().inputs), batch().targets)``."""

    @abc.abstractmethod
    def batch(self) -> Batch:
        """The current step's batch (drawn by :meth:`before_step`)."""

    @abc.abstractmethod
    def criterion(self, prediction: Tensor, targets: Tensor) -> Tensor:
        """The task's loss of a prediction (the model's output, or an auxiliary head's) against targets."""

    def loss(self) -> tuple[Tensor, dict[str, float]]:
        b = self.batch()
        value = self.criterion(self.model(b.inputs), b.targets)
        return value, {}

    @property
    def provides(self) -> frozenset[str]:
        return super().provides | {INPUTS, TARGETS}


class ResidualTask(Task):
    """A task whose loss is a PDE residual of the model's output at collocation points (no targets).

    ``loss_of(jet(points()))`` is the loss (up to the soft-condition terms a task may add).
    """

    @abc.abstractmethod
    def points(self) -> Tensor:
        """The current collocation points ``[N, d]`` (the model's inputs)."""

    @abc.abstractmethod
    def jet(self, points: Tensor) -> Jet:
        """The model's output at ``points`` with its derivatives in the inputs, as the residual needs them."""

    @property
    def provides(self) -> frozenset[str]:
        return super().provides | {INPUTS, INPUT_DERIVATIVES}


class Rule(abc.ABC):
    """The part of a training rule the compatibility check reads (see :class:`pdesolve.optim.Optimizer`)."""

    name: ClassVar[str]
    needs: ClassVar[frozenset[str]]


def check_rule(rule: Rule, task: Task) -> None:
    """Raise :class:`RuleMismatch` unless ``task`` provides everything ``rule`` needs."""
    unknown = rule.needs - CAPABILITIES
    if unknown:
        raise RuleMismatch(f"training rule {rule.name!r} declares unknown needs {sorted(unknown)}; known: {sorted(CAPABILITIES)}")
    missing = rule.needs - task.provides
    if missing:
        raise RuleMismatch(
            f"training rule {rule.name!r} needs {', '.join(sorted(missing))}, which {task.owner} does not provide "
            f"(it provides {', '.join(sorted(task.provides))}); choose another train.optimizer.name or another solver"
        )
