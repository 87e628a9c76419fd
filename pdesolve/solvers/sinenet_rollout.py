"""SineNet trained on unrolled windows: ``solvers.sinenet.train_unroll > 1``.

The batch is a window of ``history + train_unroll`` frames from the training trajectories; the loss is the
mean relative L2 error (per frame and field, as in one-step training) over ``train_unroll`` autoregressive
steps of the stepper applied to its own outputs. It provides ``rollout`` (:class:`pdesolve.task.RolloutTask`):
plain backprop rules (``adam``) backpropagate the whole unrolled loss, the ``bptt`` rule can truncate the
backward through time and bridge the cuts with synthetic gradients.

With ``unroll_executor`` other than ``sequential`` the window is solved for all frames at once
(:class:`pdesolve.parallel_time.ParallelRollout`: Picard, quasi-Newton or Newton iterations, one batched call of the
stepper per iteration) and its gradient is the implicit (adjoint) one, equal to backpropagation through the
sequential unroll within the executor's tolerance. Such a task provides ``loss`` only: a rule that cuts the
backward through time (``bptt``) needs the sequential unroll.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..nn import sparsity
from ..parallel_time import ParallelRollout
from ..rollout import Trajectories, relative_l2_frames
from ..task import ROLLOUT, RolloutTask
from .sinenet import SineNetSettings, SineNetStepper, TrajectoryWindows


class SineNetRolloutTask(RolloutTask):
    """Random (trajectory, start) windows of ``history + unroll`` frames; the loss is the unrolled one."""

    owner = "solver 'sinenet'"

    def __init__(self, model: SineNetStepper, data: Trajectories, settings: SineNetSettings, device: torch.device,
                 dtype: torch.dtype, evaluate: Callable[[], dict[str, float]]) -> None:
        self.model, self.settings, self._evaluate = model, settings, evaluate
        self.history, self.unroll = settings.history, settings.train_unroll
        self.periodic = model.periodic
        self.windows = TrajectoryWindows(model, data, settings, device, dtype, self.unroll)
        self.space_dims = self.windows.space_dims
        self.w: Tensor | None = None
        executor = settings.unroll_executor
        self.executor = None if executor.method == "sequential" else ParallelRollout(executor)
        if self.executor is not None:
            self.owner = f"solver 'sinenet' with unroll_executor {executor.method!r} (a window solved in parallel over time)"

    def before_step(self, step: int) -> None:
        """Draw the step's windows ``[batch, history + unroll, channel, *space]`` (noise on the first ``history`` frames)."""
        sparsity.before_step(self.model, step)  # N:M masks on their schedule (nothing without sparsity)
        self.w = self.windows.draw()

    def window(self) -> Tensor:
        assert self.w is not None, "before_step draws the batch"
        return self.w

    def criterion(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Relative L2 per frame and field, averaged (as in one-step training)."""
        return relative_l2_frames(prediction, target, self.space_dims).mean()

    def frame_scale(self) -> Tensor:
        return self.windows.scale

    def loss(self) -> tuple[Tensor, dict[str, float]]:
        """The unrolled loss; with a parallel executor, over the window it solves (and its iterations)."""
        if self.executor is None:
            return super().loss()
        w = self.window()
        frames, report = self.executor.unroll(self.model, w[:, : self.history], self.unroll)
        self.executor.reports.clear()  # one report per step is enough: the returned one
        value = self.criterion(frames, w[:, self.history:])  # the mean over frames and fields, as unrolled_loss sums it
        return value, {"rel_l2_unrolled": float(value.detach()), "executor_iterations": float(report.iterations)}

    @property
    def provides(self) -> frozenset[str]:
        return super().provides - {ROLLOUT} if self.executor is not None else super().provides

    def evaluate(self) -> dict[str, float]:
        return self._evaluate()

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.windows.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.windows.generator.set_state(state["generator"])
