"""``solver: stagger`` — NeuralStagger: a physics-constrained grid solver on staggered coarse sub-grids in space and time.

(Huang, Shi, Meng, Wang, Gao, Zhang, Liu, ICML 2023, arXiv 2302.10255.) No solution data: the network
(:class:`pdesolve.nn.stagger.StaggeredStepper`: one coarse network per piece of the fine grid, ``s_t`` fine
steps per call) is trained on the time-discrete residual of the fine-grid discretisation of the equation
(:mod:`pdesolve.equations.time_discrete`, Crank-Nicolson by default) between the last input frame and its
``s_t`` output frames. Its inputs come from a pool of fine states (as in the physics-constrained training of
Wandel et al. 2021): drawn from the problem's initial-condition family (its ``simulate:`` section), then
replaced by the model's own detached predictions, so that it learns the states it meets in rollout; a state
is replaced by a fresh member of the family when it is older than ``pool.horizon`` fine steps or, at random,
with probability ``pool.reset`` each time it is drawn. A fresh state's first ``s_t`` frames come from the
problem's simulator (the start-up a rollout needs; no training target is ever taken from it).
``s_h = s_w = s_t = 1`` is the plain physics-constrained solver.

The fine step is the frame spacing of the ``simulate:`` section (``t`` range / ``steps``), so that rollouts
are scored against the simulator's frames. Bounded axes take constant Dirichlet walls, which the output
frames hold exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from ..distributed import Ranks
from ..equations.time_discrete import SCHEMES
from ..errors import UserError
from ..grid import Grid
from ..nn.sinenet import SineNetOptions
from ..nn.stagger import StaggeredStepper, piece_offsets
from ..problem import Problem
from ..task import Task
from .base import FAMILY, DataSettings, GridSolver, RolloutSettings, SolverMismatch

if TYPE_CHECKING:
    from ..simulate.family import InitialConditionFamily

TRAIN_STREAM = 0x53540000  # the pool's members: chunk c of 1024 members is stream TRAIN_STREAM + c
CHUNK = 1024


class PoolOptions(BaseModel):
    """The pool of training states."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    size: int = Field(64, gt=0, description="states in the pool")
    batch: int = Field(8, gt=0, description="states per training step")
    reset: float = Field(0.05, ge=0, le=1, description="probability that a drawn state is replaced by a fresh one after the step")
    horizon: int | None = Field(None, gt=0, description="fine steps after which a state is replaced (default: the simulate: steps)")


class StaggerOptions(BaseModel):
    """Decomposition: ``s_h``, ``s_w`` (pieces along the first and second space axis), ``s_t`` (fine steps per call);
    ``inputs`` (a piece's network reads its own piece or every piece), ``shared_weights``. The coarse network:
    ``width``, ``waves``, ``channel_mults`` (a SineNet / U-Net from :mod:`pdesolve.nn`). Training: ``scheme``,
    ``pool``. Evaluation: ``rollout_steps``, ``rollout_starts``, ``eval_trajectories``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    s_h: int = Field(1, ge=1)
    s_w: int = Field(1, ge=1)
    s_t: int = Field(1, ge=1)
    inputs: Literal["own", "all"] = "own"
    shared_weights: bool = True
    width: int = Field(16, gt=0)
    waves: int = Field(1, ge=1)
    channel_mults: tuple[int, ...] = (1, 2)
    disentangled: bool = False
    scheme: Literal["crank_nicolson", "imex_euler"] = "crank_nicolson"
    auxiliary: bool = Field(True, description="feed the networks the equation's auxiliary fields (Navier-Stokes: the stream "
                            "function), derived from the fine frames, beside the frames")
    pool: PoolOptions = PoolOptions()
    dtype: Literal["float32", "float64"] = "float32"
    rollout_steps: int | None = Field(None, ge=1)
    rollout_starts: int = Field(1, ge=1)
    eval_trajectories: int = Field(4, ge=1)
    test_fraction: float = Field(0.1, gt=0, le=1, description="held-out test trajectories, as a fraction of simulate.trajectories")

    @model_validator(mode="after")
    def _check(self) -> StaggerOptions:
        SineNetOptions(fields=1, periodic=(True,), width=self.width, waves=self.waves, channel_mults=self.channel_mults)
        if self.pool.batch > self.pool.size:
            raise ValueError(f"pool.batch: expected at most pool.size = {self.pool.size}, got {self.pool.batch}")
        return self


class StaggerSolver(GridSolver):
    """``solver: stagger`` — see :class:`StaggerOptions` and the module docstring."""

    name = "stagger"
    Options = StaggerOptions
    trains_on = frozenset({FAMILY})

    def __init__(self, problem: Problem, options: StaggerOptions, device: torch.device, dtype: torch.dtype | None = None, *,
                 ranks: Ranks | None = None, family: InitialConditionFamily | None = None):
        dtype = dtype or (torch.float64 if options.dtype == "float64" else torch.float32)
        super().__init__(problem, options, device, dtype, ranks=ranks, family=family)
        o = options
        if len(problem.domain.space) == 1 and o.s_w != 1:
            raise SolverMismatch(f"solvers.stagger.s_w: the problem has one space axis; expected s_w = 1, got {o.s_w}")
        self.periodic = tuple(a.periodic for a in problem.domain.space)
        if o.inputs == "all" and o.shared_weights and not all(self.periodic):
            raise SolverMismatch("solvers.stagger: inputs: all with shared_weights: true needs periodic axes (each piece reads "
                                 "the others relative to its own position); set shared_weights: false")
        self.history = self.frames_per_step = o.s_t
        self.network = SineNetOptions(fields=len(problem.equation.fields), periodic=self.periodic, history=o.s_t, out_frames=o.s_t,
                                      waves=o.waves, width=o.width, channel_mults=o.channel_mults, disentangled=o.disentangled)
        aux = problem.equation.auxiliary_fields if o.auxiliary else ()
        self.model = StaggeredStepper(self.factors(), o.s_t, len(problem.equation.fields), self.periodic, self.network, o.inputs,
                                      o.shared_weights, self._auxiliary if aux else None, len(aux)).to(device=device, dtype=dtype)

    def _auxiliary(self, frames: Tensor) -> Tensor:
        """The equation's auxiliary fields of fine frames ``[B, s_t, C, *space]`` on the grid of their shape."""
        grid = self.problem.domain.grid({**dict(zip(self.problem.domain.space_names, frames.shape[3:])), "t": 2})
        return self.problem.equation.auxiliary(frames, Grid(grid.space), self.problem.coefficients)

    @classmethod
    def mismatches(cls, problem: Problem) -> list[str]:
        out = []
        eq = problem.equation
        if problem.domain.time is None:
            out.append("it learns time steps and the problem has no time axis")
        if not eq.grid_form:
            out.append(f"its loss is the residual of the equation's grid form, and {eq.name!r} has none (no rhs)")
        if not 1 <= len(problem.domain.space) <= 2:
            out.append(f"it splits 1 or 2 space axes (s_h, s_w), got {len(problem.domain.space)}")
        return out

    # ------------------------------------------------------------------ the GridSolver interface
    @property
    def rollout_settings(self) -> RolloutSettings:
        o = self.options
        return RolloutSettings(o.rollout_steps, o.rollout_starts, o.eval_trajectories)  # type: ignore[attr-defined]

    @property
    def data_settings(self) -> DataSettings:
        f = self.options.test_fraction  # type: ignore[attr-defined]
        return DataSettings(split=(1.0 - f, 0.0, f))

    @property
    def frame_dt(self) -> float:
        return float(self.model.frame_dt)

    def factors(self) -> tuple[int, ...]:
        o = self.options
        return (o.s_h, o.s_w) if len(self.problem.domain.space) == 2 else (o.s_h,)  # type: ignore[attr-defined]

    def check_grid(self, grid: Grid) -> None:
        """The pieces must fit: every size a multiple of its factor, the pieces' sizes of the network's pooling."""
        for key, a, f in zip(("s_h", "s_w"), grid.space, self.factors()):
            if a.n % f:
                raise UserError(f"solvers.stagger.{key}: axis {a.name!r} has {a.n} points, not a multiple of {key} = {f}; "
                                f"choose the resolution (simulate.resolution) as a multiple of {f}")
        coarse = [a.n // f for a, f in zip(grid.space, self.factors(), strict=True)]
        m = self.network.size_multiple
        if any(c % m for c in coarse):
            raise UserError(f"solvers.stagger: the pieces have {coarse} points, not multiples of {m} ({self.network.levels} "
                            "levels in channel_mults); lower the factors or the levels, or raise the resolution")
        if tuple(a.periodic for a in grid.space) != self.periodic:
            raise UserError(f"grid boundary kinds {tuple(a.periodic for a in grid.space)} differ from the problem's {self.periodic}")

    def family_task(self, family: InitialConditionFamily, grid: Grid, evaluate: Callable[[], dict[str, float]]) -> StaggerTask:
        varied = [n for n in family.names if n in self.problem.equation.parameters]
        if varied:
            raise SolverMismatch(f"solver 'stagger' learns one equation; the simulate: section varies its parameters {varied} "
                                 "(vary initial states and wall values only)")
        self.check_grid(grid)
        self.model.frame_dt.fill_(grid.time.spacing)  # type: ignore[union-attr]
        return StaggerTask(self, family, grid, evaluate)

    def step(self, frames: Tensor) -> Tensor:
        """``[batch, s_t, channel, *space] -> [batch, s_t, channel, *space]`` (the next ``s_t`` fine frames)."""
        was = self.model.training
        self.model.eval()
        with torch.no_grad():
            frames = frames.to(device=self.device, dtype=self.dtype)
            out = hold_walls(self.model(frames), frames[:, -1], self.periodic)
        self.model.train(was)
        return out

    def piece_factors(self) -> tuple[int, ...]:
        return self.factors()

    def piece_stepper(self, piece: tuple[int, ...]) -> Callable[[Tensor], Tensor]:
        """Piece ``piece`` (its offsets, e.g. ``(i, j)``)'s network alone: ``[batch, s_t, channel, *coarse]`` ->
        the next ``s_t`` frames of that piece (``inputs: own`` only)."""
        factors = self.factors()
        if len(piece) != len(factors) or any(not 0 <= i < f for i, f in zip(piece, factors, strict=True)):
            raise UserError(f"--piece {','.join(map(str, piece))}: expected {len(factors)} offsets, each below its factor {list(factors)}")
        if self.options.inputs != "own" or self.model.features is not None:  # type: ignore[attr-defined]
            raise UserError("--piece: this run's pieces read every piece (solvers.stagger.inputs: all) or the equation's "
                            "auxiliary fields of the whole grid (solvers.stagger.auxiliary: true); only inputs: own with "
                            "auxiliary: false gives networks that run alone")
        index = piece_offsets(factors).index(tuple(piece))

        def step(frames: Tensor) -> Tensor:
            with torch.no_grad():
                return self.model.piece_step(index, frames.to(device=self.device, dtype=self.dtype))

        return step

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {"s_h": o.s_h, "s_w": o.s_w, "s_t": o.s_t, "inputs": o.inputs, "shared_weights": o.shared_weights,  # type: ignore[attr-defined]
                "width": o.width, "waves": o.waves, "channel_mults": list(o.channel_mults), "scheme": o.scheme,  # type: ignore[attr-defined]
                "pieces": math.prod(self.factors())}


def hold_walls(out: Tensor, last: Tensor, periodic: tuple[bool, ...]) -> Tensor:
    """``out [batch, s_t, C, *space]`` with the wall points of every bounded axis copied from ``last [batch, C, *space]``.

    The walls are constant Dirichlet values (a trajectory's own, when the family varies them), so the last input frame
    holds them; the network is never trained there (training overwrites its wall outputs), so a rollout must hold them.
    """
    if all(periodic):
        return out
    mask = torch.zeros(out.shape[3:], dtype=torch.bool, device=out.device)
    for d, p in enumerate(periodic):
        if not p:
            mask.index_fill_(d, torch.tensor([0, out.shape[3 + d] - 1], device=out.device), True)
    return torch.where(mask, last[:, None], out)


class StaggerTask(Task):
    """Residual training on a pool of fine states ``[size, s_t, channel, *space]`` refreshed by the model's predictions."""

    def __init__(self, solver: StaggerSolver, family: InitialConditionFamily, grid: Grid, evaluate: Callable[[], dict[str, float]]):
        self.owner = "solver 'stagger'"
        self.solver, self.family, self._evaluate = solver, family, evaluate
        assert solver.model is not None
        self.model = solver.model
        o = solver.options
        self.pool_options: PoolOptions = o.pool  # type: ignore[attr-defined]
        self.scheme = SCHEMES[o.scheme]  # type: ignore[attr-defined]
        self.s_t = o.s_t  # type: ignore[attr-defined]
        self.problem = solver.problem
        self.space = Grid(grid.space)
        self.dt = float(grid.time.spacing)  # type: ignore[union-attr]
        self.t0 = float(grid.time.lo)  # type: ignore[union-attr]
        self.horizon = self.pool_options.horizon or (grid.time.n - 1)  # type: ignore[union-attr]
        self.device, self.dtype = solver.device, solver.dtype
        self.generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        self._designs: dict[int, dict[str, np.ndarray]] = {}
        self.drawn = 0  # members of the family taken so far
        n = self.pool_options.size
        self.pool, self.walls, self.age = self._fresh(n)  # [n, s_t, C, *space], [n, *space] or None, [n] fine steps
        self.model.set_scale(self.pool)
        self.index: Tensor | None = None
        self.pending: tuple[Tensor, Tensor] | None = None  # the last step's states and the model's prediction for them

    # ------------------------------------------------------------------ fresh states
    def _design(self, chunk: int) -> dict[str, np.ndarray]:
        if chunk not in self._designs:
            self._designs[chunk] = self.family.design(CHUNK, TRAIN_STREAM + chunk)
        return self._designs[chunk]

    def _fresh(self, n: int) -> tuple[Tensor, Tensor | None, Tensor]:
        """``n`` new members: their first ``s_t`` frames (the simulator's start-up beyond frame 0), wall values, ages."""
        from ..simulate import simulate

        members = range(self.drawn, self.drawn + n)
        self.drawn += n
        states, params = [], []
        for m in members:
            chunk, j = divmod(m, CHUNK)
            design = self._design(chunk)
            states.append(self.family.states([j], self.space, design, TRAIN_STREAM + chunk)[0])
            params.append(self.family.simulation_parameters(design, [j]))
        u0 = torch.as_tensor(np.stack(states))  # [n, C, *space] float64
        p = {k: np.concatenate([q[k] for q in params]) for k in params[0]} if params and params[0] else {}
        if self.s_t == 1:
            frames = u0[:, None]
        else:
            times = self.t0 + self.dt * np.arange(self.s_t)
            frames = simulate(self.problem, self.space, times, u0=u0, params=p).values  # [n, s_t, C, *space]
        walls = None
        if not all(a.periodic for a in self.space.space):
            from ..simulate.mol import wall_frame

            walls = wall_frame(self.problem, self.space, {k: torch.as_tensor(v) for k, v in p.items()}, n)
            walls = walls[:, None].to(device=self.device, dtype=self.dtype)  # [n, 1 channel, *space]
            frames = torch.where(torch.isnan(walls[:, None].cpu()), frames, walls[:, None].cpu().to(frames.dtype))
        age = torch.full((n,), self.s_t - 1, dtype=torch.long)
        return frames.to(device=self.device, dtype=self.dtype), walls, age

    # ------------------------------------------------------------------ the task
    def before_step(self, step: int) -> None:
        """Advance the last step's states to the model's prediction (replacing the old ones, and at random some
        others, by fresh members), then draw this step's states."""
        if self.pending is not None:
            self._advance(*self.pending)
            self.pending = None
        self.index = torch.randperm(self.pool_options.size, generator=self.generator)[: self.pool_options.batch]

    def predict(self, frames: Tensor, walls: Tensor | None) -> Tensor:
        """The model's next ``s_t`` frames with the walls held."""
        out = self.model(frames)
        if walls is not None:
            out = torch.where(torch.isnan(walls[:, None]), out, walls[:, None])
        return out

    def residual(self, frames: Tensor, out: Tensor, age: Tensor) -> Tensor:
        """The scheme's residual of each fine step from the last input frame through the outputs, in units of the
        fields' size per step: ``[batch, s_t, channel, *interior]``."""
        seq = torch.cat([frames[:, -1:], out], dim=1)
        t = self.t0 + self.dt * (age[:, None].to(frames) + torch.arange(self.s_t, device=frames.device, dtype=frames.dtype))
        r = self.scheme(self.problem, seq[:, :-1], seq[:, 1:], self.dt, self.space, t=t)
        scale = self.model.scale.view((-1,) + (1,) * self.space.ndim)
        return r * (self.dt / scale)

    def loss(self) -> tuple[Tensor, dict[str, float]]:
        assert self.index is not None, "before_step draws the batch"
        i = self.index
        frames = self.pool[i]
        walls = None if self.walls is None else self.walls[i]
        out = self.predict(frames, walls)
        r = self.residual(frames, out, self.age[i])
        loss = (r * r).mean()
        self.pending = (i, out.detach())  # applied before the next step (a rule may evaluate the loss more than once)
        return loss, {"residual_rms": float(loss.detach().sqrt())}

    def _advance(self, i: Tensor, out: Tensor) -> None:
        self.pool[i] = out
        self.age[i] += self.s_t
        reset = (self.age[i] >= self.horizon) | (torch.rand(len(i), generator=self.generator) < self.pool_options.reset)
        if bool(reset.any()):
            which = i[reset]
            frames, walls, age = self._fresh(len(which))
            self.pool[which] = frames
            if self.walls is not None and walls is not None:
                self.walls[which] = walls
            self.age[which] = age

    def evaluate(self) -> dict[str, float]:
        return self._evaluate()

    def state_dict(self) -> dict[str, Any]:
        return {"pool": self.pool.cpu(), "walls": None if self.walls is None else self.walls.cpu(), "age": self.age,
                "drawn": self.drawn, "generator": self.generator.get_state(),
                "pending": None if self.pending is None else (self.pending[0], self.pending[1].cpu())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pool = state["pool"].to(device=self.device, dtype=self.dtype)
        self.walls = None if state["walls"] is None else state["walls"].to(device=self.device, dtype=self.dtype)
        self.age, self.drawn = state["age"], int(state["drawn"])
        self.generator.set_state(state["generator"])
        pending = state["pending"]
        self.pending = None if pending is None else (pending[0], pending[1].to(device=self.device, dtype=self.dtype))
