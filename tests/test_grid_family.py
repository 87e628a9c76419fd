"""The grid-solver seam without data: a physics-only stepper written here (as NeuralStagger will be) trains on
states drawn from the problem's initial-condition family with the Crank-Nicolson residual of the equation's grid
form as its only loss, through the grid runner, and is scored against simulated held-out trajectories."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import torch
import yaml
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from pdesolve import grid_runner
from pdesolve.config import load_run_config
from pdesolve.equations.time_discrete import crank_nicolson
from pdesolve.grid import Grid
from pdesolve.nn.blocks import Block, BlockModel, Lambda
from pdesolve.solution import Solution
from pdesolve.solvers import SOLVERS
from pdesolve.solvers.base import FAMILY, DataSettings, GridSolver, RolloutSettings
from pdesolve.task import Task

HEAT_RING = {
    "name": "heat_ring", "equation": "heat", "params": {"nu": 0.02},
    "domain": {"x": {"bounds": [0, 1], "periodic": True}, "t": [0, 0.5]},
    "initial": {"u": "sin(2*pi*x)"},
    "simulate": {"trajectories": 20, "resolution": 32, "steps": 10,
                 "initial": {"kind": "grf", "length_scale": 0.15}},
    "solver": "stencil",
    "train": {"steps": 600, "optimizer": {"name": "adam", "lr": 1e-2}, "log_every": 50},
}


class StencilOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = 5
    batch: int = 8


class Stencil(nn.Module, BlockModel):
    """``u1 = u0 + conv(u0)``: a learned periodic stencil, ``[batch, 1 frame, 1 channel, n] -> [batch, 1, n]``."""

    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, width, padding=width // 2, padding_mode="circular", bias=False, dtype=torch.float64)
        nn.init.zeros_(self.conv.weight)

    def forward(self, frames: Tensor) -> Tensor:
        u = frames[:, -1]
        return u + self.conv(u)

    def blocks(self) -> list[Block]:
        return [Lambda(self)]


class FamilyResidualTask(Task):
    """States of the family's training stream; loss: the mean square CN residual of (state, model(state))."""

    owner = "solver 'stencil'"

    def __init__(self, solver: StencilSolver, grid: Grid):
        self.solver, self.model, self.grid = solver, solver.model, grid
        self.space = Grid(grid.space)
        self.dt = grid.time.spacing
        self.drawn = 0
        self.u0: Tensor | None = None

    def before_step(self, step: int) -> None:
        family, n = self.solver.family, self.solver.options.batch
        index = range(step * n, (step + 1) * n)  # fresh members every step: no state is seen twice
        design = family.design((step + 1) * n, stream=0x5452)
        self.u0 = torch.as_tensor(family.states(list(index), self.space, design, stream=0x5452))  # [n, 1, x]

    def loss(self) -> tuple[Tensor, dict[str, float]]:
        u1 = self.model(self.u0[:, None])
        r = crank_nicolson(self.solver.problem, self.u0, u1, self.dt, self.space)
        return (r * r).mean(), {}


class StencilSolver(GridSolver):
    name = "stencil"
    Options = StencilOptions
    trains_on: ClassVar[frozenset[str]] = frozenset({FAMILY})
    history = 1

    def __init__(self, problem, options, device, dtype=torch.float64, *, ranks=None, family=None):
        super().__init__(problem, options, device, torch.float64, ranks=ranks, family=family)
        self.model = Stencil(options.width)
        self._dt = 0.0

    rollout_settings = RolloutSettings(steps=8, starts=1, eval_trajectories=2)
    data_settings = DataSettings()

    @property
    def frame_dt(self) -> float:
        return self._dt

    def family_task(self, family, grid, evaluate) -> Task:
        self._dt = grid.time.spacing
        return FamilyResidualTask(self, grid)

    def step(self, frames: Tensor) -> Tensor:
        with torch.no_grad():
            return self.model(frames.double())

    def check_grid(self, grid: Grid) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"width": self.options.width}

    def predict(self, grid: Grid) -> Solution:
        raise NotImplementedError


def test_a_physics_only_grid_solver_trains_on_the_family_with_no_data(tmp_path, monkeypatch):
    monkeypatch.setitem(SOLVERS, "stencil", StencilSolver)
    path = tmp_path / "heat_ring.yaml"
    path.write_text(yaml.safe_dump(HEAT_RING))
    cfg = load_run_config(path)
    result = grid_runner.train_grid(cfg, None, tmp_path / "run", quiet=True)
    assert result.status.ok
    data = json.loads((tmp_path / "run" / "data.json").read_text())
    assert data["family"] and data["test"]["trajectories"] == 2  # 10 % of 20, simulated from a held-out stream
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < 1e-2 * losses[0], losses
    # scored against the simulator's held-out trajectories: the learned stencil is a good heat step
    assert result.metrics["rollout_rel_l2"] < 0.01, result.metrics  # 2.2e-3 measured
    assert result.metrics["data"] == "simulated from the initial-condition family"
    # the stencil it learned is symmetric and (nearly) conserves the mean, like the heat operator's
    weights = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]["conv.weight"].reshape(-1)
    assert abs(float(weights.sum())) < 5e-3 and torch.allclose(weights, weights.flip(0), atol=1e-3)
