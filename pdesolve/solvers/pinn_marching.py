"""Sequence-to-sequence time marching for the PINN: one network per time window, each starting from the last.

Krishnapriyan et al. ("Characterizing possible failure modes in physics-informed neural networks", NeurIPS 2021)
and Wight and Zhao ("Solving Allen-Cahn and Cahn-Hilliard equations using the adaptive physics informed neural
networks", 2020) train a PINN on short windows in time, one after another: within a window the solution changes
little from its initial state, which a PINN learns easily, while over the whole interval it fits a wrong solution
that satisfies the PDE late in time. Here window ``k`` has its own network and its own exact transform, whose
initial face is the previous window's solution at ``t_k`` (evaluated through the earlier windows' networks, without
gradient: they are frozen once their window is done), so the marched solution is continuous in time by
construction. Each window starts from the previous window's weights (a warm start) and trains for ``steps`` steps.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..nn.hard import HardConstraint
from ..nn.jet import Jet


class MarchingOptions(BaseModel):
    """``solvers.pinn.time_marching``: train window after window in time."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    windows: int = Field(ge=2, description="equal time windows, trained one after another")
    steps: int = Field(ge=1, description="training steps per window (the last window also takes any steps left over)")


def window_of(step: int, options: MarchingOptions) -> int:
    """The window trained at ``step``."""
    return min(step // options.steps, options.windows - 1)


def edges(t0: float, t1: float, windows: int) -> list[float]:
    """The window boundaries ``t_0 < t_1 < ... < t_K``."""
    return [t0 + (t1 - t0) * k / windows for k in range(windows)] + [t1]


class NetworkFace:
    """Face data given by a network instead of an expression: the previous window's field at ``t_k``.

    Quacks like :class:`pdesolve.expr.Expression` where :class:`HardConstraint` reads face data
    (``evaluate(backend, **coordinates)``).
    """

    def __init__(self, solution: Callable[[list[Jet]], Jet], names: Sequence[str], channel: int):
        self.solution, self.names, self.channel = solution, tuple(names), channel

    def evaluate(self, backend: Any, **env: Jet) -> Jet:
        with torch.no_grad():  # earlier windows are frozen
            return self.solution([env[n] for n in self.names])[..., self.channel]


def window_constraints(base: HardConstraint, bounds: list[float], previous: Callable[[int], Callable[[list[Jet]], Jet]],
                       names: Sequence[str]) -> list[HardConstraint]:
    """One exact transform per window: ``base`` with its initial face moved to the window's start.

    Window 0 keeps the problem's initial condition; window ``k`` takes ``previous(k - 1)``'s solution at ``t_k``.
    ``bounds``: :func:`edges`.
    """
    out = []
    for k in range(len(bounds) - 1):
        hard = copy.copy(base)
        hard.axes = {}
        for c, (f, axes) in enumerate(base.axes.items()):
            moved = []
            for ax in axes:
                if ax.name == "t":
                    faces = ax.faces if k == 0 else {"lo": NetworkFace(previous(k - 1), names, c)}
                    ax = dataclasses.replace(ax, lo=bounds[k], hi=bounds[k + 1], faces=faces)  # type: ignore[arg-type]
                moved.append(ax)
            hard.axes[f] = moved
        out.append(hard)
    return out
