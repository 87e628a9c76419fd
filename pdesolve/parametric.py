"""Scoring a parametric family on held-out members: each member's reference, the per-member and mean errors.

A problem whose parameters span ranges (:attr:`Problem.ranges`) is trained once over the ranges by a parametric
solver (``hyper_pinn``) and scored on held-out members, the parameter values of ``evaluate.params`` (listed) or
``evaluate.draw`` (drawn from a seed of their own), resolved by :func:`pdesolve.config.family_settings` into
``RunConfig.eval_params``. Each member is the problem with those values (:meth:`Problem.member`), so its reference
is the problem's own (the characteristic solution of convection, the modal solution of heat, ...).

``metrics.json`` then holds ``rel_l2`` (the mean over the members of each member's relative L2), ``rel_l2_max``,
``max_error`` (over all members), and ``held_out``: the members' values and their errors.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import UserError
from .grid import Grid
from .metrics import max_error, relative_l2
from .problem import Problem
from .reference import ReferenceError, reference_solution
from .solution import Solution

if TYPE_CHECKING:
    from .config import RunConfig


class ParametricSolver(abc.ABC):
    """What a solver with ``parametric = True`` adds: predictions for chosen members of the family it was trained on."""

    @abc.abstractmethod
    def predict_members(self, grid: Grid, members: Sequence[Mapping[str, float]]) -> Solution:
        """The learned solutions of members (``members[i]``: ranged parameter -> value) on ``grid``; batch = member."""


def held_out(cfg: RunConfig, grid: Grid) -> HeldOut | None:
    """The held-out members of ``cfg``'s parametric family with their references on ``grid`` (None for a plain problem)."""
    if not cfg.problem.is_family:
        return None
    return HeldOut.of(cfg.problem, cfg.eval_params, grid, cfg.path)


@dataclass(frozen=True)
class HeldOut:
    """The held-out members of a family (``members[i]``: parameter name -> value) and their references on one grid."""

    problem: Problem
    members: tuple[dict[str, float], ...]
    grid: Grid
    reference: np.ndarray | None  # [member, time, channel, *space]

    @classmethod
    def of(cls, problem: Problem, members: Sequence[Mapping[str, float]], grid: Grid, where: str = "") -> HeldOut:
        """Compute every member's reference on ``grid`` (None when the problem declares none)."""
        members = tuple(dict(m) for m in members)
        if problem.reference is None:
            return cls(problem, members, grid, None)
        try:
            ref = np.stack([reference_solution(problem.member(m), grid) for m in members])
        except ReferenceError as err:
            raise UserError(f"{where}: reference: {err}") from None
        return cls(problem, members, grid, ref)

    def predict(self, solver: ParametricSolver) -> Solution:
        """``solver``'s prediction of the held-out members on the grid."""
        return solver.predict_members(self.grid, self.members)

    def metrics(self, prediction: np.ndarray) -> dict[str, Any]:
        """Per-member and summary errors of ``prediction`` ``[member, time, channel, *space]`` (empty without a reference)."""
        if self.reference is None:
            return {}
        per = [relative_l2(p, r) for p, r in zip(prediction, self.reference)]
        worst = [max_error(p, r) for p, r in zip(prediction, self.reference)]
        return {
            "rel_l2": float(np.mean(per)),
            "rel_l2_max": float(np.max(per)),
            "max_error": float(np.max(worst)),
            "held_out": {
                "params": {k: [m[k] for m in self.members] for k in self.problem.ranges},
                "rel_l2": per,
                "max_error": worst,
            },
        }

    @staticmethod
    def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
        """The numbers of :meth:`metrics` a history row holds (no lists)."""
        return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}

    def figure(self, metrics: Mapping[str, Any]) -> Callable[[Path], None]:
        """``draw(path)``: the relative L2 of each held-out member against its parameter value (first ranged parameter)."""

        def draw(path: Path) -> None:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            from .io import write_with

            name = next(iter(self.problem.ranges))
            r = self.problem.ranges[name]
            xs = np.asarray(metrics["held_out"]["params"][name])
            ys = np.asarray(metrics["held_out"]["rel_l2"])
            order = np.argsort(xs)
            fig, ax = plt.subplots(figsize=(5, 3.5))
            ax.plot(xs[order], ys[order], "o-")
            ax.axvspan(r.lo, r.hi, color="0.92", zorder=0, label="trained range")
            ax.set_xscale("log" if r.scale == "log" else "linear")
            ax.set_yscale("log")
            ax.set_xlabel(name)
            ax.set_ylabel("relative L2")
            ax.set_title(f"held-out members: mean rel. L2 {metrics['rel_l2']:.2e}", fontsize=10)
            ax.legend(loc="best")
            fig.tight_layout()
            write_with(path, lambda p: fig.savefig(p, format="png", dpi=110))
            plt.close(fig)

        return draw
