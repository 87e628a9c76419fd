"""One surrogate, its training rule and its normalization: the step that online servers and offline mode share.

The training rule comes from :mod:`pdesolve.optim` by name. With several servers a
:class:`GradientAverager` (from :mod:`online_training.parallel`) averages the gradients between the
backward pass and the update, so the servers keep one data-parallel model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from pdesolve.optim import make_optimizer

from .surrogate import Surrogate, relative_l2

Reduce = Callable[[np.ndarray], np.ndarray]  # sums an array over the servers


class Trainer:
    """Trains ``surrogate``'s network on batches of records ``[n, record_size]`` (float32)."""

    def __init__(
        self, surrogate: Surrogate, optimizer: str, options: BaseModel, total_steps: int, device: torch.device, seed: int
    ):
        torch.manual_seed(seed)  # every server builds the same initial network
        self.surrogate, self.device = surrogate, device
        self.model = surrogate.build().to(device)
        self.rule = make_optimizer(optimizer, options, total_steps)
        self.rule.bind(self.model)
        self.mean: torch.Tensor | None = None  # [C] per-channel normalization
        self.std: torch.Tensor | None = None
        self.step = 0
        self.averager: Any = None  # a GradientAverager when several servers train one model

    @property
    def normalized(self) -> bool:
        return self.mean is not None

    def fit_normalization(self, records: np.ndarray, reduce: Reduce | None = None) -> None:
        """Per-channel mean and standard deviation of the target fields of ``records`` (summed over servers)."""
        fields = self.surrogate.target(torch.from_numpy(records)).double()  # [n, C, S]
        sums = np.concatenate([
            fields.sum(dim=(0, 2)).numpy(), (fields**2).sum(dim=(0, 2)).numpy(), [fields.shape[0] * fields.shape[2]]
        ])
        if reduce is not None:
            sums = reduce(sums)
        c = self.surrogate.channels
        count = max(float(sums[-1]), 1.0)
        mean = sums[:c] / count
        std = np.sqrt(np.maximum(sums[c : 2 * c] / count - mean**2, 0.0))
        std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=self.device)

    def train_step(self, records: np.ndarray) -> dict[str, float]:
        """One step of the rule on a batch; returns at least ``loss`` (this batch's, before the update) and ``lr``.

        With ``averager`` set (several servers), a server may step with an empty batch (loss 0): it
        contributes no gradient but takes the same update as the others.
        """
        assert self.mean is not None and self.std is not None, "fit_normalization first"
        n = len(records)
        if n == 0 and self.averager is None:
            raise ValueError("an empty batch")
        x, y = self.surrogate.batch(torch.from_numpy(records).to(self.device), self.mean, self.std)
        if self.averager is not None:
            self.averager.weight = float(n)

        def loss_fn() -> tuple[torch.Tensor, dict[str, float]]:
            if n == 0:  # every parameter gets a zero gradient, so the averaging hooks still fire
                return sum((p * 0).sum() for p in self.model.parameters()), {}  # type: ignore[return-value]
            return torch.nn.functional.mse_loss(self.model(x), y), {}

        out = self.rule.step(self.step, loss_fn)
        if self.averager is not None:
            self.averager.check()
        self.step += 1
        return out

    @torch.no_grad()
    def evaluate(self, records: np.ndarray, chunk: int = 4096) -> float:
        """Relative L2 error, in physical units, of the network on ``records`` (all of them at once)."""
        assert self.mean is not None and self.std is not None, "fit_normalization first"
        preds, targets = [], []
        for i in range(0, len(records), chunk):
            rec = torch.from_numpy(records[i : i + chunk]).to(self.device)
            x, _ = self.surrogate.batch(rec, self.mean, self.std)
            preds.append(self.surrogate.physical(self.model(x), self.mean, self.std).cpu())
            targets.append(self.surrogate.target(rec).cpu())
        return relative_l2(torch.cat(preds), torch.cat(targets))

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "rule": self.rule.state_dict(),
            "mean": None if self.mean is None else self.mean.cpu(),
            "std": None if self.std is None else self.std.cpu(),
            "step": self.step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.rule.load_state_dict(state["rule"])
        self.mean = None if state["mean"] is None else state["mean"].to(self.device)
        self.std = None if state["std"] is None else state["std"].to(self.device)
        self.step = int(state["step"])


def choose_device(name: str, index: int = 0) -> torch.device:
    """``cpu``, ``cuda`` (GPU ``index`` modulo the GPUs of the node) or ``auto`` (cuda when there is one)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device: cuda was asked for, but torch sees no GPU; use device: cpu or auto")
        return torch.device("cuda", index % torch.cuda.device_count())
    return torch.device(name)
