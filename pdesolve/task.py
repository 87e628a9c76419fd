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
- ``jet_blocks``: a :class:`JetBlockTask` (PINNs) runs its model block by block on jets (the features' value and
  input derivatives, :mod:`pdesolve.nn.jet_blocks`) and scores any output jet with its own loss.

A training rule declares ``needs`` (:class:`pdesolve.optim.Optimizer`); :func:`check_rule` refuses a rule
whose needs the task does not provide, before step 0, naming the rule, the task's owner and what is missing.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from .errors import UserError
from .nn.blocks import Block, BlockModel, DenoisingModel

if TYPE_CHECKING:
    from .nn.jet import Jet
    from .nn.jet_blocks import JetCarry

LOSS = "loss"
BLOCKS = "blocks"
INPUTS = "inputs"
TARGETS = "targets"
INPUT_DERIVATIVES = "input_derivatives"
ROLLOUT = "rollout"
DENOISING_BLOCKS = "denoising_blocks"
JET_BLOCKS = "jet_blocks"
CAPABILITIES = frozenset({LOSS, BLOCKS, INPUTS, TARGETS, INPUT_DERIVATIVES, ROLLOUT, DENOISING_BLOCKS, JET_BLOCKS})


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


class JetBlockTask(ResidualTask):
    """A residual task whose model runs block by block on jets, and whose loss scores any output jet.

    Composing :meth:`jet_blocks` from :meth:`jet_input` gives the model's output jet at the current step's loss
    points, and ``loss_of`` of that jet is :meth:`loss` (to round-off).
    """

    @abc.abstractmethod
    def jet_blocks(self) -> Sequence[nn.Module]:
        """The model as ``JetCarry -> JetCarry`` modules; trailing parameter-free ones are its output transform."""

    @abc.abstractmethod
    def jet_input(self) -> JetCarry:
        """The carry entering the first jet block: the current loss points' coordinates as a jet, and what the
        output transform needs there."""

    @abc.abstractmethod
    def loss_of(self, out: Jet) -> tuple[Tensor, dict[str, float]]:
        """The loss (and its named terms) of an output jet at the points of :meth:`jet_input`."""

    @property
    def provides(self) -> frozenset[str]:
        return super().provides | {JET_BLOCKS}


class RolloutTask(Task):
    """A task whose batch is a window of frames a stepper ``[B, history, C, *space] -> [B, C, *space]`` is unrolled over.

    ``loss()`` is :func:`unrolled_loss` over the whole window: the mean of ``criterion`` over ``unroll`` steps of
    the model applied to its own outputs. Rules that cut or bridge the backward through time read the window,
    the criterion and :meth:`advance` (how a predicted frame enters the state).
    """

    history: int
    unroll: int
    periodic: tuple[bool, ...] = ()  # boundary kind of every space axis (synthesizers pad circularly when all are)

    @abc.abstractmethod
    def window(self) -> Tensor:
        """The current batch ``[B, history + unroll, C, *space]`` (drawn by ``before_step``)."""

    @abc.abstractmethod
    def criterion(self, prediction: Tensor, target: Tensor) -> Tensor:
        """The scalar loss of one predicted frame ``[B, C, *space]`` against the true one."""

    def advance(self, state: Tensor, frame: Tensor) -> Tensor:
        """The next state: the last ``history - 1`` frames of ``state`` and the predicted ``frame``."""
        return torch.cat([state[:, 1:], frame[:, None]], dim=1)

    def frame_scale(self) -> Tensor | None:
        """Per-channel scale ``[C, 1, ...]`` of the frames (synthesizers read frames in these units), or None."""
        return None

    def loss(self) -> tuple[Tensor, dict[str, float]]:
        w = self.window()
        _, value = unrolled_loss(self, w[:, : self.history], w, 0, self.unroll)
        return value, {"rel_l2_unrolled": float(value.detach())}

    @property
    def provides(self) -> frozenset[str]:
        return super().provides | {ROLLOUT}


def unrolled_loss(task: RolloutTask, state: Tensor, window: Tensor, first: int, count: int) -> tuple[Tensor, Tensor]:
    """Run steps ``first .. first + count - 1`` from ``state``: the final state and ``sum(criterion) / task.unroll``."""
    total = window.new_zeros(())
    for t in range(first, first + count):
        frame = task.model(state)
        total = total + task.criterion(frame, window[:, task.history + t])
        state = task.advance(state, frame)
    return state, total / task.unroll


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
