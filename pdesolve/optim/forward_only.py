"""Forward-only layer-wise learning: every stage learns from its own read-out, in one forward pass.

Paper: N. Park, X. Wang, A. Simoulin, S. Yang, G. Yang, R. Rossi, P. Trivedi, N. Ahmed, "Forward Learning of
Graph Neural Networks" (ForwardGNN), ICLR 2024, its single-forward ("SF") variant; the reference point is
G. Hinton, "The Forward-Forward Algorithm: Some Preliminary Investigations", 2022. Forward-forward trains each
layer on a local "goodness" of positive against negative inputs (two forward passes); SF drops the negative
pass: each layer is trained on a local supervised objective of its own output, its input detached, so no
error is ever propagated from one layer to an earlier one.

Regression form used here. The model's blocks are grouped into stages (:func:`pdesolve.optim.local.stages`).
In one forward pass, stage ``i`` takes the previous stage's output *detached* (:func:`~pdesolve.optim.local.cut`)
and is trained on

    L_i = criterion(tail(head_i(h_i)), targets)            (hidden stages, head_i a linear / 1x1-conv read-out)
    L_n = criterion(tail(h_n), targets)                    (the last stage: the model's own output)

with ``criterion`` the task's own loss and ``tail`` the model's trailing parameter-free blocks (its units and
residual connection), so every local prediction is in the targets' units. Each stage's loss is
back-propagated at once, inside that stage and its head only, and its graph freed before the next stage runs;
one Adam step then moves all stages. ``order="greedy"`` trains the stages one after another instead (stage
``k`` during the ``k``-th of ``n`` equal parts of the run), the layer-by-layer schedule of the paper's code.

Prediction: the model's own output (``task.model(x)``), which is the last stage trained on the targets directly.
The paper classifies with the *sum of the per-layer class scores*; a sum of read-outs is not the model's forward
pass, so this adaptation drops it and the hidden read-outs serve training only. The paper's graph-specific parts
(virtual label nodes, the layer-normalized inputs of its GNN layers, the top-down "SF-Top-To-Input/Loss"
variants) have no counterpart here.

This module also holds :class:`StagewiseRule`, the scaffolding shared with the counter-current and
target-projection rules: stages, tail, lazily built auxiliary networks (their shapes come from the first batch,
:class:`~pdesolve.optim.local.Probe`), one Adam over stages and auxiliaries, and an exact ``state_dict``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from ..nn.blocks import Block, Carry
from ..task import BLOCKS, INPUTS, LOSS, TARGETS, Batch, RuleMismatch, SupervisedTask, Task
from .backprop import scheduled_lr
from .base import Optimizer
from .local import Probe, Stage, StagewiseOptions, Tail, cut, readout, stages, tail_length


class ForwardOnlyOptions(StagewiseOptions):
    order: Literal["simultaneous", "greedy"] = Field(
        "simultaneous", description="all stages every step, or one stage after another over equal parts of the run")


class TargetScale(nn.Module):
    """Standardizes targets with one mean and standard deviation, fitted on the first batch it sees (then fixed)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def forward(self, targets: Tensor) -> Tensor:
        if not bool(self.fitted):
            with torch.no_grad():
                self.mean.copy_(targets.mean())
                self.std.copy_(targets.std(correction=0).clamp_min(1e-12))
                self.fitted.fill_(True)
        return (targets - self.mean) / self.std


class StagewiseRule(Optimizer):
    """A rule that trains the model's stages on local losses, each stage's input detached.

    Subclasses build their auxiliary networks in :meth:`make_aux` (called at the first step, when the shapes
    are known) and compute the step's local losses in :meth:`local_losses`: an iterator of
    ``(stage index, {name: loss tensor})``; each group's sum is back-propagated as soon as it is yielded.
    The loss of stage ``n - 1`` under the name ``"loss"`` is the model's output scored by the task.
    """

    needs = frozenset({LOSS, BLOCKS, INPUTS, TARGETS})
    options: StagewiseOptions

    def __init__(self, options: StagewiseOptions, total_steps: int):
        self.options = options
        self.total_steps = total_steps
        self.stage_list: list[Stage] = []
        self.tail_blocks: list[Block] = []
        self.tail: Tail | None = None
        self.aux: nn.ModuleDict | None = None
        self.opt: torch.optim.Optimizer | None = None
        self._pending: dict[str, Any] | None = None

    # -- to implement ------------------------------------------------------------------------------
    @abc.abstractmethod
    def make_aux(self, probe: Probe, batch: Batch) -> nn.ModuleDict:
        """The rule's auxiliary networks for stage output shapes ``probe.stage_shapes``."""

    @abc.abstractmethod
    def local_losses(self, step: int, task: SupervisedTask, batch: Batch) -> Iterator[tuple[int, dict[str, Tensor]]]:
        """The step's local losses, stage by stage (graphs limited to one stage and its auxiliaries)."""

    def aux_groups(self) -> list[dict[str, Any]]:
        """Parameter groups of the auxiliary networks: ``{"params": [...], "scale": lr factor}``."""
        assert self.aux is not None
        params = [p for p in self.aux.parameters() if p.requires_grad]
        return [{"params": params, "scale": 1.0}] if params else []

    # -- the rule ----------------------------------------------------------------------------------
    def bind(self, task: Task) -> None:
        if not isinstance(task, SupervisedTask):  # the needs check refuses such a task before; say why if bypassed
            raise RuleMismatch(f"training rule {self.name!r} needs inputs and targets, which {task.owner} does not provide")
        blocks = list(task.blocks())
        n_tail = tail_length(blocks)
        self.stage_list = stages(blocks, self.options.stages, tail=n_tail)
        self.tail_blocks = blocks[len(blocks) - n_tail :]
        first = next(iter(task.model.parameters()))
        self.device, self.dtype = first.device, first.dtype
        self.tail, self.aux, self.opt, self._pending = None, None, None, None

    def build(self, batch: Batch) -> None:
        """Create the auxiliary networks and the optimizer (once, on the first batch); apply a pending state."""
        if self.aux is not None:
            return
        if not self.stage_list:
            raise RuntimeError(f"bind() the {self.name!r} rule to a task first")
        probe = Probe.run(self.stage_list, self.tail_blocks, batch.inputs)
        self.tail = Tail(self.tail_blocks, probe.tail_kept)
        with torch.random.fork_rng(devices=[]):  # seeded, and the run's own random stream is left untouched
            torch.manual_seed(self.options.seed)
            aux = self.make_aux(probe, batch)
        self.aux = aux.to(device=self.device, dtype=self.dtype)
        o = self.options
        groups = [{"params": list(s.parameters()), "scale": 1.0} for s in self.stage_list] + self.aux_groups()
        self.opt = torch.optim.Adam(groups, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        if self._pending is not None:
            state, self._pending = self._pending, None
            self._load(state)

    def step(self, step: int, task: Task) -> dict[str, float]:
        assert isinstance(task, SupervisedTask), "bind() checks the task"
        batch = task.batch()
        self.build(batch)
        assert self.opt is not None
        lr = scheduled_lr(self.options, step, self.total_steps)
        for g in self.opt.param_groups:
            g["lr"] = lr * g["scale"]
        self.opt.zero_grad(set_to_none=True)
        record: dict[str, float] = {}
        for i, losses in self.local_losses(step, task, batch):
            total = sum(losses.values())
            assert isinstance(total, Tensor)
            if total.requires_grad:
                total.backward()
            for name, value in losses.items():
                record[name if name == "loss" else f"{name}_{i}"] = float(value.detach())
        self.opt.step()
        record["lr"] = lr
        return record

    def stage_parameters(self) -> list[list[nn.Parameter]]:
        return [list(s.parameters()) for s in self.stage_list]

    def parameter_count(self) -> int:
        """Trainable parameters of the auxiliary networks (0 before the first step builds them)."""
        return 0 if self.aux is None else sum(p.numel() for p in self.aux.parameters() if p.requires_grad)

    def state_dict(self) -> dict[str, Any]:
        if self.aux is None or self.opt is None:
            return self._pending if self._pending is not None else {"aux": None, "opt": None}
        return {"aux": self.aux.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("aux") is None:
            return
        if self.aux is None:
            self._pending = state  # applied when the first step builds the auxiliary networks
        else:
            self._load(state)

    def _load(self, state: dict[str, Any]) -> None:
        assert self.aux is not None and self.opt is not None
        self.aux.load_state_dict(state["aux"])
        self.opt.load_state_dict(state["opt"])


class ForwardOnly(StagewiseRule):
    """Single-forward layer-wise learning (ForwardGNN-SF): each stage on its read-out's task loss."""

    name = "forward_only"
    options: ForwardOnlyOptions

    def make_aux(self, probe: Probe, batch: Batch) -> nn.ModuleDict:
        shapes = probe.stage_shapes[:-1]
        return nn.ModuleDict({"heads": nn.ModuleList(readout(s, probe.tail_input) for s in shapes)})

    def active(self, step: int) -> int | None:
        """The stage trained at ``step`` under ``order="greedy"`` (None: all of them)."""
        if self.options.order == "simultaneous":
            return None
        n = len(self.stage_list)
        return min(n - 1, step * n // max(self.total_steps, 1))

    def local_losses(self, step: int, task: SupervisedTask, batch: Batch) -> Iterator[tuple[int, dict[str, Tensor]]]:
        assert self.aux is not None and self.tail is not None
        heads: Sequence[nn.Module] = self.aux["heads"]  # type: ignore[assignment]
        only = self.active(step)
        last = len(self.stage_list) - 1
        carry = Carry(batch.inputs)
        for i, stage in enumerate(self.stage_list):
            train = only is None or only == i
            with torch.set_grad_enabled(train and torch.is_grad_enabled()):
                carry = stage(cut(carry))
                if i == last:
                    yield i, {"loss": task.criterion(self.tail(carry.h, carry), batch.targets)}
                elif train:
                    yield i, {"local": task.criterion(self.tail(heads[i](carry.h), carry), batch.targets)}
