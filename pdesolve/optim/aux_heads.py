"""Shared parts of the stage-wise supervised local rules with auxiliary networks (AugLocal, MAN).

Both rules split a :class:`~pdesolve.nn.blocks.BlockModel` into gradient-isolated stages
(:func:`pdesolve.optim.local.stages`) and train every stage but the last on the task's criterion of an
*auxiliary prediction*: the stage's output carried through a small auxiliary network, then through the
model's own tail (:class:`~pdesolve.optim.local.Tail`), so that the prediction is in the targets' units.
The last stage trains on the task's criterion of the model's own output. What differs is the auxiliary
network; this module holds what they share:

- :func:`signatures`: the shape of ``h`` and of every kept tensor (batch dimension left out) entering and
  leaving each stage, found by one pass without gradients;
- :class:`Adapt`: a ``Carry -> Carry`` bridge from one signature to another, for auxiliary networks whose
  pieces do not compose as they are (a U-Net stage that pops a skip the auxiliary path never pushed): the
  kept tensors the two signatures share at the bottom of the stack are passed on, ``h`` goes through a
  :func:`~pdesolve.optim.local.readout` head when its shape differs, and each missing kept tensor is made
  from ``h`` by a read-out head of its own (the identity where the shapes agree);
- :func:`fresh_copy` and :func:`frozen_copy`: a stage's copy with freshly initialised parameters, or with the
  same values and no gradient (an EMA target);
- :class:`StagewiseRule`: the training step. Stage ``j`` runs on the detached output of stage ``j - 1``,
  its auxiliary loss is backpropagated at once (freeing its graph before stage ``j + 1`` runs: the memory
  saving), one Adam moves the model and the auxiliary networks at the end of the step.

The auxiliary networks need the shapes of a batch, which a task only has after ``before_step``: they are
built at the first step, under a private random state (``seed``) so that building them leaves the global
generators as they were and a resumed run builds the same networks.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..nn.blocks import Block, Carry
from ..task import BLOCKS, INPUTS, LOSS, TARGETS, SupervisedTask, Task
from .backprop import scheduled_lr
from .base import Optimizer
from .local import Readout, Stage, StagewiseOptions, Tail, cut, readout, stages, tail_length

Shape = tuple[int, ...]
Signature = tuple[Shape, tuple[Shape, ...]]
"""``(h shape, kept shapes oldest first)``, each without the batch dimension."""


def signature(carry: Carry) -> Signature:
    return tuple(carry.h.shape[1:]), tuple(tuple(k.shape[1:]) for k in carry.kept)


def signatures(stage_list: Sequence[Stage], x: Tensor) -> list[Signature]:
    """``sig[0]`` enters stage 0, ``sig[j + 1]`` leaves stage ``j`` (one pass without gradients)."""
    out = []
    with torch.no_grad():
        carry = Carry(x)
        out.append(signature(carry))
        for stage in stage_list:
            carry = stage(carry)
            out.append(signature(carry))
    return out


def _head(source: Shape, target: Shape) -> nn.Module:
    if source == target:
        return nn.Identity()
    return readout(torch.Size((1, *source)), torch.Size((1, *target)))


class Adapt(Block):
    """Turns a carry of signature ``source`` into one of signature ``target`` (see the module docstring).

    ``force`` puts a read-out head on ``h`` even where the shapes agree (a head that must learn a map).
    """

    def __init__(self, source: Signature, target: Signature, force: bool = False):
        super().__init__()
        (h_src, kept_src), (h_dst, kept_dst) = source, target
        shared = 0
        while shared < min(len(kept_src), len(kept_dst)) and kept_src[shared] == kept_dst[shared]:
            shared += 1
        self.shared = shared
        self.h_map = readout(torch.Size((1, *h_src)), torch.Size((1, *h_dst))) if force else _head(h_src, h_dst)
        self.fills = nn.ModuleList(_head(h_src, k) for k in kept_dst[shared:])

    @staticmethod
    def needed(source: Signature, target: Signature) -> bool:
        return source != target

    def forward(self, carry: Carry) -> Carry:
        h = carry.h
        return Carry(self.h_map(h), carry.kept[: self.shared] + tuple(fill(h) for fill in self.fills))


def _copy(module: nn.Module, model: nn.Module) -> nn.Module:
    """A deep copy of ``module`` that shares nothing with ``model`` but its parameter-free methods.

    A parameter-free block may hold a bound method of the model (the stepper's normalization): the memo maps
    the model to itself so that copying the block does not copy the whole model.
    """
    twin = copy.deepcopy(module, memo={id(model): model})
    own = {id(p) for p in model.parameters()}
    if any(id(p) in own for p in twin.parameters()):
        raise ValueError(f"a copy of {type(module).__name__} shares parameters with the model: it holds the model as a submodule")
    return twin


def fresh_copy(module: nn.Module, model: nn.Module) -> nn.Module:
    """A copy of ``module`` with every layer re-initialised by its own ``reset_parameters``."""
    twin = _copy(module, model)
    for m in twin.modules():
        reset = getattr(m, "reset_parameters", None)  # torch layers' own initialisation (Linear, Conv, norms)
        if callable(reset):
            reset()
    return twin


def frozen_copy(module: nn.Module, model: nn.Module) -> nn.Module:
    """A copy of ``module`` with the same values and no gradient (an exponential-moving-average target)."""
    twin = _copy(module, model)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


class StagewiseRule(Optimizer):
    """A gradient-isolated stage-wise rule: stage ``j < K - 1`` learns from its auxiliary prediction, the last
    stage from the model's output; one Adam over the model and the auxiliary networks."""

    needs = frozenset({LOSS, BLOCKS, INPUTS, TARGETS})

    def __init__(self, options: StagewiseOptions, total_steps: int):
        self.options = options
        self.total_steps = total_steps
        self.aux = nn.ModuleList()
        self.opt: torch.optim.Optimizer | None = None
        self._pending: dict[str, Any] | None = None

    # -- binding and building ------------------------------------------------------------------------------

    def bind(self, task: Task) -> None:
        blocks = list(task.blocks())
        tail = tail_length(blocks)
        self.model = task.model
        self.stage_list = stages(blocks, count=self.options.stages, tail=tail)
        self.tail_blocks = blocks[len(blocks) - tail :]
        self.aux = nn.ModuleList()
        self.opt = None

    @property
    def built(self) -> bool:
        return self.opt is not None

    def _build(self, x: Tensor) -> None:
        sigs = signatures(self.stage_list, x)
        final = sigs[-1]
        tail_kept = len(final[1]) if self.tail_blocks else 0
        self.tail = Tail(self.tail_blocks, tail_kept)
        param = next(self.model.parameters())
        cuda = [param.device] if param.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.options.seed)
            self.aux = nn.ModuleList(self._aux_network(j, sigs) for j in range(len(self.stage_list) - 1))
        self.aux.to(device=param.device, dtype=param.dtype)
        trainable = [*self.model.parameters(), *(p for p in self.aux.parameters() if p.requires_grad)]
        o = self.options
        self.opt = torch.optim.Adam(trainable, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        if self._pending is not None:
            self._load(self._pending)
            self._pending = None

    @abc.abstractmethod
    def _aux_network(self, j: int, sigs: list[Signature]) -> nn.Module:
        """Stage ``j``'s auxiliary network: ``Carry`` (stage ``j``'s output) -> ``Carry`` of signature ``sigs[-1]``."""

    def _after_update(self) -> None:  # noqa: B027 - optional: MAN moves its EMA copies here
        """Called after every parameter update."""

    # -- one step ------------------------------------------------------------------------------------------

    def step(self, step: int, task: Task) -> dict[str, float]:
        assert isinstance(task, SupervisedTask)  # the needs check guarantees it
        batch = task.batch()
        if not self.built:
            self._build(batch.inputs)
        assert self.opt is not None
        lr = scheduled_lr(self.options, step, self.total_steps)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        record: dict[str, float] = {}
        carry = Carry(batch.inputs)
        last = len(self.stage_list) - 1
        for j, stage in enumerate(self.stage_list):
            out = stage(cut(carry))
            if j < last:
                aux = self.aux[j](out)
                local = task.criterion(self.tail(aux.h, aux), batch.targets)
                local.backward()  # frees this stage's graph before the next stage runs
                record[f"local_{j}"] = float(local.detach())
                carry = out
            else:
                loss = task.criterion(self.tail(out.h, out), batch.targets)
                loss.backward()
                record["loss"] = float(loss.detach())
        self.opt.step()
        self._after_update()
        record["lr"] = lr
        return record

    def parameter_count(self) -> int:
        """Parameters of the auxiliary networks (0 before the first step builds them)."""
        return sum(p.numel() for p in self.aux.parameters())

    # -- state -----------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        if not self.built:
            return self._pending or {"built": False}
        assert self.opt is not None
        return {"built": True, "aux": self.aux.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state.get("built"):
            return
        if self.built:
            self._load(state)
        else:
            self._pending = state  # applied when the first step builds the auxiliary networks

    def _load(self, state: dict[str, Any]) -> None:
        assert self.opt is not None
        self.aux.load_state_dict(state["aux"])
        self.opt.load_state_dict(state["opt"])


class Chain(Block):
    """Carry-to-carry modules one after another (an auxiliary network)."""

    def __init__(self, parts: Sequence[nn.Module]):
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, carry: Carry) -> Carry:
        for part in self.parts:
            carry = part(carry)
        return carry


__all__ = ["Adapt", "Chain", "Readout", "Signature", "StagewiseRule", "fresh_copy", "frozen_copy", "signatures"]
