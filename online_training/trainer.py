"""The training task that online servers and offline mode share: a surrogate's pdesolve model on records.

:class:`SurrogateTask` is a :class:`pdesolve.task.SupervisedTask`, trained by :func:`pdesolve.train.train`
(the one training loop: divergence guard, checkpoints, exact resume). Where its records come from is a
:class:`RecordSource`: an online server's buffer, fed by the stream (:class:`online_training.server.Server`),
or the records of an HDF5 dataset drawn epoch by epoch (:class:`EpochSampler`, offline mode). With several
servers a :class:`pdesolve.distributed.GradientAverager` averages the gradients between the backward pass and
the update, so the servers keep one data-parallel model, and the loss each server reports is the mean over
all servers' records (every server sees the same loss, so all of them stop together if it diverges). With
``online.gradient_coding`` a :class:`online_training.gradient_coding.GradientCoder` takes the averager's place:
the servers share their batches, each trains on its code row's batches, and the step's mean gradient and loss
decode from the first ``n - s`` servers (``docs/gradient_coding.md``).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pdesolve.distributed import Ranks
from pdesolve.task import Batch, SupervisedTask

from .monitor import Monitor
from .surrogate import Surrogate, relative_l2

Reduce = Callable[[np.ndarray], np.ndarray]  # sums an array over the servers


class RecordSource(abc.ABC):
    """Where a :class:`SurrogateTask` draws its batches of records ``[n, record_size]`` (float32) from."""

    def wait(self, step: int) -> None:  # noqa: B027 - a source that always has records does not wait
        """Return once a batch for step ``step`` can be drawn; may raise :class:`pdesolve.train.StopTraining`
        (the stream ended, a stop was requested)."""

    @abc.abstractmethod
    def sample(self) -> np.ndarray:
        """The next batch (possibly empty on one of several servers whose buffer ran dry)."""

    @abc.abstractmethod
    def normalization_records(self) -> np.ndarray:
        """The records the normalization is fitted to (those present when training starts, before any is drawn)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - a source without state keeps nothing
        """Restore :meth:`state_dict`."""


class SurrogateTask(SupervisedTask):
    """Trains ``surrogate``'s network on batches drawn from ``source``.

    ``validation``: held-out records (None on all servers but the first), scored every ``validate_every``
    steps (0: at the start and the end only) and at the end into ``monitor``. ``reduce`` sums arrays over the
    servers (the normalization statistics); ``averager`` and ``ranks``: the data-parallel group, if any.
    """

    def __init__(self, surrogate: Surrogate, device: torch.device, seed: int, source: RecordSource, monitor: Monitor, *,
                 validation: np.ndarray | None = None, validate_every: int = 0, reduce: Reduce | None = None):
        torch.manual_seed(seed)  # every server builds the same initial network
        self.surrogate, self.device, self.source, self.monitor = surrogate, device, source, monitor
        self.owner = f"online surrogate {surrogate.kind!r}"
        self.model = surrogate.build().to(device)
        self.validation, self.validate_every, self.reduce = validation, validate_every, reduce
        self.normalized = False
        self.std = torch.ones(surrogate.channels, device=device)  # the fields' scale per channel, once fitted
        self.averager: Any = None  # a GradientAverager when several servers train one model
        self.coder: Any = None  # or a GradientCoder (online.gradient_coding)
        self.delay: Any = None  # an injected straggler (DelaySpec) on the uncoded path
        self.server = 0  # this server's index (the injected delay names one)
        self.ranks = Ranks.single()
        self.step = 0  # updates done so far (the step being prepared)
        self.drawn = 0  # batches drawn so far
        self.records: Tensor | None = None

    # ------------------------------------------------------------------ normalization and validation
    def fit_normalization(self, records: np.ndarray) -> None:
        """Per-channel mean and standard deviation of the target fields of ``records`` (summed over servers)."""
        fields = self.surrogate.target(torch.from_numpy(records)).double()  # [n, C, S]
        sums = np.concatenate([
            fields.sum(dim=(0, 2)).numpy(), (fields**2).sum(dim=(0, 2)).numpy(), [fields.shape[0] * fields.shape[2]]
        ])
        if self.reduce is not None:
            sums = self.reduce(sums)
        c = self.surrogate.channels
        count = max(float(sums[-1]), 1.0)
        mean = sums[:c] / count
        std = np.sqrt(np.maximum(sums[c : 2 * c] / count - mean**2, 0.0))
        std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=self.device)
        self.surrogate.set_scale(self.model, torch.as_tensor(mean, dtype=torch.float32, device=self.device), self.std)
        self.normalized = True

    @torch.no_grad()
    def score(self, records: np.ndarray, chunk: int = 4096) -> float:
        """Relative L2 error, in physical units, of the network on ``records`` (all of them at once)."""
        preds, targets = [], []
        for i in range(0, len(records), chunk):
            x, y = self.surrogate.batch(torch.from_numpy(records[i : i + chunk]).to(self.device))
            preds.append(self.surrogate.flat(self.model(x)).cpu())
            targets.append(self.surrogate.flat(y).cpu())
        return relative_l2(torch.cat(preds), torch.cat(targets))

    def validate(self) -> float | None:
        """Score the held-out records at the current step (once per step) into the monitor."""
        if self.validation is None or not self.normalized:
            return None
        done = self.monitor.validation
        if done and done[-1]["step"] == self.step:
            return done[-1]["val_rel_l2"]
        value = self.score(self.validation)
        self.monitor.validated(self.step, value)
        return value

    # ------------------------------------------------------------------ the task
    def before_step(self, step: int) -> None:
        self.step = step
        self.source.wait(step)
        if not self.normalized:
            self.fit_normalization(self.source.normalization_records())
            self.monitor.train_started = self.monitor.now()
            self.validate()
        elif self.validate_every and step % self.validate_every == 0:
            self.validate()
        records = self.source.sample()
        if self.coder is not None:
            self.coder.share(step, records)
        self.drawn = step + 1  # once this batch is trained, step + 1 updates are done
        self.records = torch.from_numpy(records).to(self.device)
        self.monitor.trained += len(records)
        self.monitor.train_ended = self.monitor.now()

    def batch(self) -> Batch:
        assert self.records is not None, "before_step draws the batch"
        x, y = self.surrogate.batch(self.records)
        return Batch(x, y)

    def criterion(self, prediction: Tensor, targets: Tensor) -> Tensor:
        """Mean square error in units of each channel's standard deviation (the normalized fields' MSE)."""
        return ((self.surrogate.flat(prediction) - self.surrogate.flat(targets)) / self.std[:, None]).pow(2).mean()

    def loss(self) -> tuple[Tensor, dict[str, float]]:
        if self.coder is not None:
            return self.coder.loss(self._partition_loss, self.std), {}
        if self.delay is not None and self.delay.applies(self.server, self.step):
            time.sleep(self.delay.seconds)  # every server waits for this one at the all-reduces
        b = self.batch()
        n = len(b.targets)
        if self.averager is not None:
            self.averager.weight = float(n)
        if n == 0:  # every parameter gets a zero gradient, so the averaging hooks still fire
            local = sum((p * 0).sum() for p in self.model.parameters())
        else:
            local = self.criterion(self.model(b.inputs), b.targets)
        if self.ranks.group is None:
            return local, {}  # type: ignore[return-value]
        # the value every server reports: the mean over all servers' records; each backpropagates its own loss
        total = self.ranks.sum(torch.stack([local.detach() * n, local.new_tensor(float(n))]))
        return local + (total[0] / total[1].clamp_min(1.0) - local.detach()), {}  # type: ignore[return-value]

    def _partition_loss(self, records: np.ndarray) -> Tensor:
        x, y = self.surrogate.batch(torch.from_numpy(records).to(self.device))
        return self.criterion(self.model(x), y)

    def evaluate(self) -> dict[str, float]:
        """The validation at the end of a run (after every drawn batch was trained on)."""
        self.step = self.drawn
        value = self.validate()
        return {} if value is None else {"val_rel_l2": value}

    def state_dict(self) -> dict[str, Any]:
        return {"normalized": self.normalized, "std": self.std.cpu(), "drawn": self.drawn, "source": self.source.state_dict(),
                "monitor": self.monitor.state_dict(), "coder": None if self.coder is None else self.coder.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.normalized, self.std = bool(state["normalized"]), state["std"].to(self.device)
        self.step = self.drawn = int(state["drawn"])
        self.monitor.load_state_dict(state["monitor"])  # rows, validation and counters go on without gaps or repeats
        self.source.load_state_dict(state["source"])
        if self.coder is not None and state.get("coder") is not None:
            self.coder.load_state_dict(state["coder"])


class EpochSampler(RecordSource):
    """Offline mode's batches: ``batch_size`` records without replacement, one epoch after another."""

    def __init__(self, records: np.ndarray, batch_size: int, seed: list[int]):
        self.records, self.batch_size = records, batch_size
        self.rng = np.random.default_rng(seed)
        self.order, self.at = self.rng.permutation(len(records)), 0
        self.seen = np.zeros(len(records), np.int64)

    def sample(self) -> np.ndarray:
        if self.at + self.batch_size > len(self.order):  # next epoch; a batch never repeats a record
            self.order, self.at = self.rng.permutation(len(self.records)), 0
        index = self.order[self.at : self.at + self.batch_size]
        self.at += self.batch_size
        self.seen[index] += 1
        return self.records[index]

    def normalization_records(self) -> np.ndarray:
        return self.records

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "order": self.order, "at": self.at, "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order, self.at, self.seen = state["order"], int(state["at"]), state["seen"]


def choose_device(name: str, index: int = 0) -> torch.device:
    """``cpu``, ``cuda`` (GPU ``index`` modulo the GPUs of the node) or ``auto`` (cuda when there is one)."""
    from pdesolve.runner import resolve_device

    device = resolve_device(name)
    return torch.device("cuda", index % torch.cuda.device_count()) if device.type == "cuda" else device
