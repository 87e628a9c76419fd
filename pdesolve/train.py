"""The one training loop: every solver, the grid runner and the online trainer train through :func:`train`.

It drives a :class:`~pdesolve.task.Task` with a training rule (:mod:`pdesolve.optim`): the rule's needs are
checked against what the task provides before step 0; then a progress bar, history, periodic evaluation,
atomic checkpoints, exact resume, and a guard that stops on a non-finite loss with a status saying what
to try. A task may end the run early from :meth:`~pdesolve.task.Task.before_step` by raising
:class:`StopTraining` (a data stream that ran dry, a stop signal). A run ends with a :class:`RunStatus`;
the caller decides whether a failed status is an exception (:meth:`RunStatus.raise_for_status`).
"""

from __future__ import annotations

import abc
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .io import write_with
from .optim import Optimizer
from .task import Task, check_rule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """How long and how observably to train."""

    steps: int
    eval_every: int = 0  # 0: evaluate at the end only
    checkpoint_every: int = 1000
    log_every: int = 10
    quiet: bool = False
    divergence_remedy: str = "lower the learning rate (train.optimizer.lr) or train in float64"

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")


class TrainingFailed(RuntimeError):
    """Raised by :meth:`RunStatus.raise_for_status` for a diverged run."""


class StopTraining(Exception):  # noqa: N818 - a signal from the task, not an error
    """Raised by a task's ``before_step`` to end the run before its budget.

    ``kind``: ``ended`` (the task has nothing more to train on, e.g. a data stream that ran dry: the run
    ends normally, with its final evaluation) or ``interrupted`` (a stop request: the run can be resumed).
    """

    def __init__(self, kind: str, message: str):
        if kind not in ("ended", "interrupted"):
            raise ValueError(f"kind: expected 'ended' or 'interrupted', got {kind!r}")
        super().__init__(message)
        self.kind, self.message = kind, message


@dataclass(frozen=True)
class RunStatus:
    """How a run ended: ``budget`` (all steps done), ``ended`` (the task ended it), ``diverged`` or ``interrupted``."""

    kind: str
    step: int
    message: str

    @property
    def ok(self) -> bool:
        return self.kind in ("budget", "ended")

    def raise_for_status(self) -> None:
        if self.kind == "diverged":
            raise TrainingFailed(self.message)

    def __str__(self) -> str:
        return f"{self.kind} at step {self.step}: {self.message}"


@dataclass
class TrainResult:
    status: RunStatus
    history: list[dict[str, float]] = field(default_factory=list)
    wall_time: float = 0.0
    resumed_from: int | None = None


Callback = Callable[[int, dict[str, float]], None]


class CheckpointStore(abc.ABC):
    """Where :func:`train` keeps its state between runs (written atomically by every implementation)."""

    @abc.abstractmethod
    def exists(self) -> bool: ...

    @abc.abstractmethod
    def load(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def save(self, state: dict[str, Any]) -> None: ...


class CheckpointFile(CheckpointStore):
    """One file, written atomically (``write=False``: read only, as on the non-writing ranks of a distributed
    run). The online trainer's store spans several servers (:mod:`online_training.checkpoint`)."""

    def __init__(self, path: str | Path, write: bool = True):
        self.path, self.write = Path(path), write

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> dict[str, Any]:
        return torch.load(self.path, map_location="cpu", weights_only=False)

    def save(self, state: dict[str, Any]) -> None:
        if self.write:
            write_with(self.path, lambda p: torch.save(state, p))

    def __str__(self) -> str:
        return str(self.path)


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def seed_everything(seed: int) -> None:
    """One seed for every generator the run uses."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(
    task: Task,
    optimizer: Optimizer,
    settings: TrainSettings,
    checkpoint: str | Path | CheckpointStore | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    write_checkpoints: bool = True,
) -> TrainResult:
    """Train ``task.model`` with ``optimizer`` for ``settings.steps`` steps.

    Raises :class:`~pdesolve.task.RuleMismatch` before anything runs when the task does not provide what
    the rule needs. With ``checkpoint`` set, the full state (model, rule, task, random generators,
    history) is saved atomically every ``checkpoint_every`` steps and at the end; with ``resume`` the run
    continues from that checkpoint exactly where it stopped, so its history equals an uninterrupted
    run's. With ``write_checkpoints=False`` a checkpoint path is only read (the other ranks of a
    distributed run, whose state equals the writing rank's).
    """
    check_rule(optimizer, task)
    optimizer.bind(task)
    history: list[dict[str, float]] = []
    start, elapsed, resumed_from = 0, 0.0, None
    ckpt = checkpoint if isinstance(checkpoint, CheckpointStore) or checkpoint is None else CheckpointFile(checkpoint, write_checkpoints)
    if resume:
        if ckpt is None or not ckpt.exists():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {ckpt}")
        state = ckpt.load()
        task.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        task.load_state_dict(state["task"])
        set_rng_state(state["rng"])
        history, start, elapsed = state["history"], state["step"], state["wall_time"]
        if history and history[-1]["step"] == start - 1 and settings.log_every and (start - 1) % settings.log_every:
            history.pop()  # logged only because it was that run's last step: an uninterrupted run has no such row
        resumed_from = start
        log.info("resuming from %s at step %d", ckpt, start)

    def save(step: int) -> None:
        if ckpt is None:
            return
        state = {
            "model": task.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "task": task.state_dict(),
            "rng": rng_state(),
            "history": history,
            "step": step,
            "wall_time": elapsed + time.perf_counter() - t0,
        }
        ckpt.save(state)

    t0 = time.perf_counter()
    status = RunStatus("budget", settings.steps, f"all {settings.steps} steps done")
    bar = tqdm(total=settings.steps, initial=start, disable=settings.quiet, unit="step", dynamic_ncols=True, leave=False)
    step = start
    interrupts = _Interrupts()
    try:
        for step in range(start, settings.steps):
            if interrupts.requested:  # between two steps: the checkpoint below holds whole steps only
                status = RunStatus("interrupted", step, f"stopped by the user after step {step}; rerun with --resume to continue")
                break
            try:
                task.before_step(step)
            except StopTraining as stop:
                status = RunStatus(stop.kind, step, stop.message)
                break
            record = optimizer.step(step, task)
            loss = record["loss"]
            if not math.isfinite(loss):
                if step == 0:  # before any update: nothing the optimizer did
                    message = (f"the loss is {loss} at the first step, before any update: an input (data, initial or wall "
                               "values, parameters) is not finite, or the loss cannot be evaluated on it; the learning rate "
                               "is not the cause")
                else:
                    message = f"the loss became {loss} at step {step}; {settings.divergence_remedy}" + (
                        " (parameters restored from the last checkpoint)" if _restore(task, ckpt) else "")
                status = RunStatus("diverged", step, message)
                break
            last = step + 1 == settings.steps
            if settings.log_every and (step % settings.log_every == 0 or last):
                row = {"step": float(step), **{k: float(v) for k, v in record.items()}}
                row["time"] = elapsed + time.perf_counter() - t0
                if settings.eval_every and step % settings.eval_every == 0 and not last:
                    row.update(task.evaluate())
                history.append(row)
                for cb in callbacks:
                    cb(step, row)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss:.3e}", refresh=False)
            bar.update(1)
            if ckpt is not None and settings.checkpoint_every and (step + 1) % settings.checkpoint_every == 0:
                save(step + 1)
        else:
            step = settings.steps
    except KeyboardInterrupt:  # a second Ctrl-C, or no handler of ours: the step in progress may be half applied
        status = RunStatus("interrupted", step, f"stopped by the user during step {step}; the last periodic checkpoint is "
                           "kept (rerun with --resume to continue from it)")
    finally:
        interrupts.close()
    bar.close()
    if status.kind == "interrupted" and status.message.startswith("stopped by the user after"):
        save(step)
    elif status.ok:
        final = task.evaluate()
        if history and (history[-1]["step"] == step - 1 or step == start):
            history[-1].update(final)
        elif step > start:  # the task ended the run after an unlogged step: one row for the final evaluation
            history.append({"step": float(step - 1), "time": elapsed + time.perf_counter() - t0, **final})
        save(step)
    return TrainResult(status, history, elapsed + time.perf_counter() - t0, resumed_from)


class _Interrupts:
    """Ctrl-C during training: the first asks the loop to stop between two steps (so a checkpoint never holds a
    half-applied update), a second one interrupts at once. Installed only in the main thread and only over
    Python's default SIGINT handler (the online trainer installs its own stop signals)."""

    def __init__(self) -> None:
        self.requested = False
        self.installed = (threading.current_thread() is threading.main_thread()
                          and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if self.installed:
            signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stopping after this step (Ctrl-C again to stop at once, losing the step in progress)")

    def close(self) -> None:
        if self.installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.installed = False


def _restore(task: Task, ckpt: CheckpointStore | None) -> bool:
    if ckpt is None or not ckpt.exists():
        return False
    task.model.load_state_dict(ckpt.load()["model"])
    return True
