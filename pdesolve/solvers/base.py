"""The Solver interface: every back-end trains through :func:`pdesolve.train.train` and predicts on a Grid."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from pydantic import BaseModel

from ..distributed import Ranks
from ..grid import Grid
from ..problem import Problem
from ..solution import Solution
from ..train import TrainTask


class SolverMismatch(ValueError):
    """A back-end asked to solve a problem it cannot handle; the message says what to change."""


class Solver(abc.ABC):
    """A back-end: build the training task for a problem, then predict on any grid of its domain."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]]
    ranks: Ranks = Ranks()  # a distributed back-end's place in its group; only the primary rank writes results

    def __init__(self, problem: Problem, options: BaseModel, device: torch.device, dtype: torch.dtype = torch.float32):
        problems = self.mismatches(problem)
        if problems:
            raise SolverMismatch(f"solver {self.name!r} cannot solve problem {problem.name!r}: " + "; ".join(problems))
        self.problem, self.options, self.device, self.dtype = problem, options, device, dtype

    @classmethod
    def mismatches(cls, problem: Problem) -> list[str]:
        """Why this back-end does not fit ``problem`` (empty when it does)."""
        return []

    @abc.abstractmethod
    def task(self, evaluate: Any) -> TrainTask:
        """The training task; ``evaluate()`` returns metrics against the reference during training."""

    @abc.abstractmethod
    def predict(self, grid: Grid) -> Solution:
        """The learned solution on ``grid`` (batch of one), float64."""

    def diagnostics(self, grid: Grid) -> dict[str, Any]:
        """Extra fields and numbers beyond the loss.

        Known keys: ``residual_map`` (the PDE residual on ``grid``, saved and plotted); ``violations``
        (numbers per condition), ``solve`` (a constrained solve's status) and ``family`` (errors on held-out
        problems), copied into ``metrics.json``; ``figures`` (name -> ``draw(path)``: the runner writes each
        as ``<name>.png`` in the run folder).
        """
        return {}
