"""The outcome of a constrained least-squares solve, one entry per sample of the batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SolveStatus:
    """Per-sample status of a batched solve.

    converged:            [batch] bool, the stopping test was met (always true for a direct linear solve
                          that gave finite numbers).
    iterations:           [batch] int64, iterations used (1 for a direct solve).
    residual:             [batch] float64, root mean square of the residual at the returned weights.
    constraint_violation: [batch] float64, largest violation of an equality (|C w - d|) or an
                          inequality (max(G w - h, 0)) constraint.
    """

    converged: Tensor
    iterations: Tensor
    residual: Tensor
    constraint_violation: Tensor

    @property
    def all_converged(self) -> bool:
        return bool(self.converged.all())

    def as_dict(self) -> dict[str, float]:
        """Batch summary as plain numbers, for a run's metrics and history."""
        return {
            "converged_fraction": float(self.converged.double().mean()),
            "iterations_max": float(self.iterations.max()) if self.iterations.numel() else 0.0,
            "residual_max": float(self.residual.max()) if self.residual.numel() else 0.0,
            "constraint_violation_max": float(self.constraint_violation.max()) if self.constraint_violation.numel() else 0.0,
        }

    def summary(self) -> str:
        """One line for a log; says what to change when samples did not converge."""
        s = self.as_dict()
        n = self.converged.numel()
        text = (
            f"{int(self.converged.sum())}/{n} converged, at most {int(s['iterations_max'])} iterations, "
            f"residual RMS <= {s['residual_max']:.3g}, constraint violation <= {s['constraint_violation_max']:.3g}"
        )
        if not self.all_converged:
            text += "; raise max_iter, loosen xtol/gtol, or add Tikhonov regularization for ill-conditioned bases"
        return text


def direct_status(residual: Tensor, violation: Tensor) -> SolveStatus:
    """Status of a one-shot solve: converged where the result is finite.

    residual: [batch, m]; violation: [batch].
    """
    rms = residual.detach().pow(2).mean(-1).sqrt() if residual.shape[-1] else residual.new_zeros(residual.shape[:-1])
    violation = violation.detach()
    ok = torch.isfinite(rms) & torch.isfinite(violation)
    return SolveStatus(ok, torch.ones_like(ok, dtype=torch.int64), rms, violation)
