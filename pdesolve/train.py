"""The one training loop that every solver uses.

It drives a :class:`TrainTask` with a training rule (:mod:`pdesolve.optim`): progress bar, history,
periodic evaluation, atomic checkpoints, exact resume, and a guard that stops on a non-finite loss with
a status saying what to try. A run ends with a :class:`RunStatus`; the caller decides whether a failed
status is an exception (:meth:`RunStatus.raise_for_status`).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .io import write_with
from .optim import Optimizer

log = logging.getLogger(__name__)


class TrainTask(Protocol):
    """What the loop trains: a model, a loss on the current batch, and an evaluation."""

    model: nn.Module

    def loss(self) -> tuple[Tensor, dict[str, float]]: ...

    def before_step(self, step: int) -> None: ...

    def evaluate(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


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


@dataclass(frozen=True)
class RunStatus:
    """How a run ended: ``budget`` (all steps done), ``diverged`` or ``interrupted``."""

    kind: str
    step: int
    message: str

    @property
    def ok(self) -> bool:
        return self.kind == "budget"

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
    task: TrainTask,
    optimizer: Optimizer,
    settings: TrainSettings,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    write_checkpoints: bool = True,
) -> TrainResult:
    """Train ``task.model`` with ``optimizer`` for ``settings.steps`` steps.

    With ``checkpoint`` set, the full state (model, rule, task, random generators, history) is saved
    atomically every ``checkpoint_every`` steps and at the end; with ``resume`` the run continues from
    that file exactly where it stopped, so its history equals an uninterrupted run's. With
    ``write_checkpoints=False`` the checkpoint is only read (the other ranks of a distributed run, whose
    state equals the writing rank's).
    """
    optimizer.bind(task.model)
    history: list[dict[str, float]] = []
    start, elapsed, resumed_from = 0, 0.0, None
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if resume:
        if ckpt is None or not ckpt.exists():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {ckpt}")
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        task.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        task.load_state_dict(state["task"])
        set_rng_state(state["rng"])
        history, start, elapsed = state["history"], state["step"], state["wall_time"]
        resumed_from = start
        log.info("resuming from %s at step %d", ckpt, start)

    def save(step: int) -> None:
        if ckpt is None or not write_checkpoints:
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
        write_with(ckpt, lambda p: torch.save(state, p))

    t0 = time.perf_counter()
    status = RunStatus("budget", settings.steps, f"all {settings.steps} steps done")
    bar = tqdm(total=settings.steps, initial=start, disable=settings.quiet, unit="step", dynamic_ncols=True, leave=False)
    step = start
    try:
        for step in range(start, settings.steps):
            task.before_step(step)
            record = optimizer.step(step, task.loss)
            loss = record["loss"]
            if not math.isfinite(loss):
                status = RunStatus(
                    "diverged",
                    step,
                    f"the loss became {loss} at step {step}; {settings.divergence_remedy}"
                    + (" (parameters restored from the last checkpoint)" if _restore(task, ckpt) else ""),
                )
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
    except KeyboardInterrupt:
        status = RunStatus("interrupted", step, f"stopped by the user at step {step}; rerun with --resume to continue")
        save(step)
        bar.close()
        return TrainResult(status, history, elapsed + time.perf_counter() - t0, resumed_from)
    bar.close()
    if status.ok:
        if history:
            history[-1].update(task.evaluate())
        save(settings.steps)
    return TrainResult(status, history, elapsed + time.perf_counter() - t0, resumed_from)


def _restore(task: TrainTask, ckpt: Path | None) -> bool:
    if ckpt is None or not ckpt.exists():
        return False
    task.model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["model"])
    return True
