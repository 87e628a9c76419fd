"""``solver: sinenet`` — a learned time stepper (SineNet, or the U-Net baseline) trained on simulations.

The network (:mod:`pdesolve.nn.sinenet`) reads the last ``history`` frames of every field and predicts
the next frame. Training is one-step teacher forcing on pairs drawn from reference trajectories, with
the relative L2 loss per frame and field (so fields of different size weigh alike), optional Gaussian
noise on the input frames (robustness to the model's own errors in rollouts), and per-channel
normalization whose statistics come from the training trajectories and travel with the weights.

A grid solver (:class:`~pdesolve.solvers.base.GridSolver`) that trains on data: :meth:`SineNetSolver.data_task`;
:mod:`pdesolve.grid_runner` drives it (``pdesolve train``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from ..distributed import Ranks
from ..errors import UserError
from ..grid import Grid
from ..nn import sparsity
from ..nn.blocks import Block, BlockModel, Carry
from ..nn.padding import periodic_axes
from ..nn.sinenet import SineNet, SineNetOptions
from ..nn.sparsity import SparsityOptions
from ..parallel_time import ExecutorOptions
from ..problem import Problem
from ..rollout import Trajectories, relative_l2_frames
from ..task import Batch, SupervisedTask
from .base import DATA, DataSettings, GridSolver, RolloutSettings, SolverMismatch

if TYPE_CHECKING:
    from ..simulate.family import InitialConditionFamily

DEFAULT_WIDTH = 16


class SineNetSettings(BaseModel):
    """Options of ``solvers.sinenet``.

    Usually set: ``history`` (input frames), ``waves`` (K; 1 with ``disentangled: false`` is the U-Net
    baseline), ``width`` or ``parameters`` (a parameter budget that picks the width), ``batch_size``.
    Advanced: ``channel_mults`` (per U-Net level; its length is the number of levels), ``padding``
    (``grid`` follows each axis' boundary kind, ``zero`` pads with zeros everywhere, an ablation),
    ``coordinates`` (position channels: needed when the dynamics vary in space, e.g. a fixed background
    flow, since the network is otherwise translation-equivariant), ``residual`` (predict the change of
    the last frame), ``noise`` (standard deviation of the input noise,
    in units of each channel's standard deviation), ``time_stride`` (learn every n-th frame), the
    train/val/test ``split`` of the trajectories, and the rollouts used for evaluation.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    history: int = Field(2, ge=1, description="input frames")
    waves: int = Field(4, ge=1, description="U-shaped waves K")
    width: int | None = Field(None, gt=0, description=f"latent channels (default {DEFAULT_WIDTH}, or from `parameters`)")
    parameters: int | None = Field(None, gt=0, description="target parameter count; picks the width")
    channel_mults: tuple[int, ...] = (1, 2, 2, 4)
    disentangled: bool = True
    interpolation: Literal["linear", "cubic"] = "linear"
    norm_groups: int = Field(1, ge=1)
    padding: Literal["grid", "zero"] = "grid"
    coordinates: bool = Field(False, description="add position channels (for coefficients that vary in space)")
    residual: bool = True
    batch_size: int = Field(16, ge=1)
    noise: float = Field(0.0, ge=0)
    train_unroll: int = Field(1, ge=1, description="frames a training window is unrolled over (1: one-step teacher forcing)")
    unroll_executor: ExecutorOptions = Field(default_factory=ExecutorOptions, description="how an unrolled window is "
                                             "computed: sequential, or solved in parallel over time (docs/parallel_time.md)")
    time_stride: int = Field(1, ge=1)
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 0
    rollout_steps: int | None = Field(None, ge=1, description="frames per evaluation rollout (default: as far as the data goes)")
    rollout_starts: int = Field(1, ge=1, description="start times the evaluation rollouts are averaged over")
    eval_trajectories: int = Field(8, ge=1, description="validation trajectories evaluated during training")
    sparsity: SparsityOptions | None = Field(None, description="N:M sparse convolutions (all but the lift and the projection), "
                                             "e.g. {n: 2, m: 4, mode: bdwp}")

    @model_validator(mode="after")
    def _check(self) -> SineNetSettings:
        if self.width is not None and self.parameters is not None:
            raise ValueError(f"give width or parameters, not both (got width={self.width}, parameters={self.parameters})")
        if not math.isclose(sum(self.split), 1.0) or min(self.split) < 0:
            raise ValueError(f"split: expected three non-negative fractions summing to 1, got {list(self.split)}")
        if self.unroll_executor.method != "sequential" and self.train_unroll == 1:
            raise ValueError(f"unroll_executor {self.unroll_executor.method!r} needs train_unroll > 1 (got 1: one-step training)")
        net = network_options(self, fields=1, periodic=(True, True))  # architecture errors now, not at train time
        if self.sparsity is not None:  # the pruned layers' fans depend on the channel counts only (lift and projection stay dense)
            with torch.device("meta"):
                problems = sparsity.check(SineNet(net), self.sparsity)
            if problems:
                raise ValueError("; ".join(problems))
            if self.unroll_executor.method in ("newton", "quasi_newton") and not sparsity.derivative_consistent(self.sparsity):
                raise ValueError(f"sparsity.mode {self.sparsity.mode!r} is not derivative-consistent, and unroll_executor "
                                 f"{self.unroll_executor.method!r} linearizes the stepper by its derivatives; use mode: consistent, or "
                                 "the picard or sequential executor")
        return self


def coordinate_channels(periodic: tuple[bool, ...]) -> int:
    """Position channels: cos and sin of the angle on each periodic axis, the coordinate on bounded ones."""
    return sum(2 if p else 1 for p in periodic)


def position_features(periodic: tuple[bool, ...], shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[coordinate_channels, *shape]``: functions of the position that are resolution-independent."""
    out = []
    for axis, (p, n) in enumerate(zip(periodic, shape, strict=True)):
        if p:
            angle = 2 * math.pi * torch.arange(n, dtype=torch.float64, device=device) / n
            parts = [torch.cos(angle), torch.sin(angle)]
        else:
            parts = [torch.linspace(-1.0, 1.0, n, dtype=torch.float64, device=device)]
        view = [1] * len(shape)
        view[axis] = n
        out += [q.view(view).expand(shape) for q in parts]
    return torch.stack(out).to(dtype)


def network_options(settings: SineNetSettings, fields: int, periodic: tuple[bool, ...]) -> SineNetOptions:
    """The network for ``fields`` channels per frame on axes with these boundary kinds.

    With ``coordinates`` every frame carries the position channels too (so the network's frame width is
    ``fields + coordinate_channels``; the extra outputs are discarded).
    """
    if settings.coordinates:
        fields += coordinate_channels(periodic)
    if settings.padding == "zero":
        periodic = (False,) * len(periodic)
    kw: dict[str, Any] = dict(
        fields=fields, periodic=periodic, history=settings.history, waves=settings.waves,
        channel_mults=settings.channel_mults, disentangled=settings.disentangled,
        interpolation=settings.interpolation, norm_groups=settings.norm_groups,
    )
    if settings.parameters is not None:
        return SineNetOptions.for_parameter_budget(settings.parameters, **kw)
    return SineNetOptions(width=settings.width or DEFAULT_WIDTH, **kw)


class SineNetStepper(nn.Module, BlockModel):
    """``[batch, history, channel, *space] -> [batch, channel, *space]``, in physical units.

    Buffers (saved with the weights): ``mean`` and ``std`` per channel (the input normalization) and
    ``frame_dt``, the time between the frames it was trained on (0 before training). Its blocks: the input
    normalization (with the position channels), the network's blocks, the output (residual and physical units).
    """

    def __init__(self, options: SineNetOptions, fields: int, periodic: tuple[bool, ...], residual: bool = True) -> None:
        super().__init__()
        self.options, self.residual, self.periodic = options, residual, periodic
        self.fields = fields
        self.coordinates = options.fields > fields  # position channels ride along with every frame
        self.net = SineNet(options)
        self.register_buffer("mean", torch.zeros(fields))
        self.register_buffer("std", torch.ones(fields))
        self.register_buffer("frame_dt", torch.zeros(()))

    def set_data_scale(self, mean: Tensor, std: Tensor, dt: float) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std)
        self.frame_dt.fill_(dt)

    def _scale(self) -> tuple[Tensor, Tensor]:
        shape = (-1,) + (1,) * self.options.ndim  # [channel, 1, ...] against [..., channel, *space]
        return self.mean.view(shape), self.std.view(shape)

    def normalized_input(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """The normalized frames ``x [batch, history, channel, *space]`` and the network input (with positions)."""
        mean, std = self._scale()
        x = (frames - mean) / std
        if not self.coordinates:
            return x, x.flatten(1, 2)
        pos = position_features(self.periodic, tuple(x.shape[3:]), x.dtype, x.device)  # [coords, *space]
        return x, torch.cat([x, pos.expand(*x.shape[:2], *pos.shape)], dim=2).flatten(1, 2)

    def physical_output(self, out: Tensor, last: Tensor | None) -> Tensor:
        """Network output (its first ``fields`` channels), plus the normalized last frame if residual, in physical units."""
        mean, std = self._scale()
        out = out[:, : self.fields]
        if last is not None:
            out = last + out
        return out * std + mean

    def forward(self, frames: Tensor) -> Tensor:
        x, inputs = self.normalized_input(frames)
        return self.physical_output(self.net(inputs), x[:, -1] if self.residual else None)

    def blocks(self) -> Sequence[Block]:
        return [_StepperInput(self), *self.net.blocks(), _StepperOutput(self)]


class _StepperInput(Block):
    """Normalize the frames, add the position channels; keep the last frame for the residual."""

    def __init__(self, stepper: SineNetStepper):
        super().__init__()
        self.normalize = stepper.normalized_input  # a bound method: the stepper's buffers, not its parameters
        self.residual = stepper.residual

    def forward(self, carry: Carry) -> Carry:
        x, inputs = self.normalize(carry.h)
        return carry.push(inputs, x[:, -1]) if self.residual else carry.with_h(inputs)


class _StepperOutput(Block):
    """The residual update and the physical units."""

    def __init__(self, stepper: SineNetStepper):
        super().__init__()
        self.output = stepper.physical_output
        self.residual = stepper.residual

    def forward(self, carry: Carry) -> Carry:
        if not self.residual:
            return carry.with_h(self.output(carry.h, None))
        (last,), rest = carry.pop()
        return rest.with_h(self.output(carry.h, last))


class TrajectoryWindows:
    """Random (trajectory, start time) windows of ``history + unroll`` consecutive training frames.

    Noise (``settings.noise`` times each channel's standard deviation) goes on the first ``history`` frames, the
    model's input. Fits the model's data scale. Its own generator, so that a resumed run draws the batches of an
    uninterrupted one. Shared by one-step training (``unroll = 1``) and unrolled training.
    """

    def __init__(self, model: SineNetStepper, data: Trajectories, settings: SineNetSettings, device: torch.device,
                 dtype: torch.dtype, unroll: int = 1) -> None:
        self.settings, self.device, self.dtype = settings, device, dtype
        k = self.history = settings.history
        if len(data) == 0:
            raise UserError("no training trajectories; the dataset or its train split is empty")
        n_time, span = data.frames.shape[1], k + unroll
        if n_time < span:
            raise UserError(f"{n_time} frames per trajectory are too few for history {k} plus one target frame" if unroll == 1 else
                            f"{n_time} frames per trajectory are too few for history {k} plus train_unroll {unroll} frames; "
                            "lower solvers.sinenet.train_unroll")
        self.frames = data.frames.to(device=device, dtype=dtype)  # [traj, time, channel, *space]
        self.space_dims = data.grid.ndim
        self.starts = n_time - span + 1
        self.count = len(data) * self.starts
        stats = _channel_stats(data.frames, data.grid.ndim)
        model.set_data_scale(*(s.to(device=device, dtype=model.mean.dtype) for s in stats), data.dt)
        self.scale = stats[1].to(device=device, dtype=dtype).view((-1,) + (1,) * self.space_dims)
        self.noise_scale = self.scale * settings.noise
        self.generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        self.offsets = torch.arange(span)

    def draw(self) -> Tensor:
        """``[batch, history + unroll, channel, *space]``, the first ``history`` frames noised."""
        pick = torch.randint(0, self.count, (self.settings.batch_size,), generator=self.generator)
        traj, start = pick // self.starts, pick % self.starts
        w = self.frames[traj[:, None].to(self.device), (start[:, None] + self.offsets).to(self.device)]
        if not self.settings.noise:
            return w
        k = self.history
        noise = torch.randn(w[:, :k].shape, generator=self.generator).to(device=self.device, dtype=self.dtype)
        return torch.cat([w[:, :k] + self.noise_scale * noise, w[:, k:]], dim=1)


class SineNetTask(SupervisedTask):
    """One-step teacher forcing on random (trajectory, start time) windows of the training trajectories."""

    owner = "solver 'sinenet'"

    def __init__(self, model: SineNetStepper, data: Trajectories, settings: SineNetSettings, device: torch.device,
                 dtype: torch.dtype, evaluate: Callable[[], dict[str, float]]) -> None:
        self.model, self.settings, self._evaluate = model, settings, evaluate
        self.windows = TrajectoryWindows(model, data, settings, device, dtype)
        self.space_dims = self.windows.space_dims
        self.x: Tensor | None = None
        self.y: Tensor | None = None

    def before_step(self, step: int) -> None:
        """Draw the step's batch: ``x [batch, history, channel, *space]`` and ``y [batch, channel, *space]``."""
        sparsity.before_step(self.model, step)  # N:M masks on their schedule (nothing without sparsity)
        w, k = self.windows.draw(), self.settings.history
        self.x, self.y = w[:, :k], w[:, k]

    def batch(self) -> Batch:
        assert self.x is not None and self.y is not None, "before_step draws the batch"
        return Batch(self.x, self.y)

    def criterion(self, prediction: Tensor, targets: Tensor) -> Tensor:
        """Relative L2 per frame and field (so fields of different size weigh alike), averaged."""
        return relative_l2_frames(prediction, targets, self.space_dims).mean()

    def loss(self) -> tuple[Tensor, dict[str, float]]:
        loss, _ = super().loss()
        return loss, {"rel_l2_one_step": float(loss.detach())}

    def evaluate(self) -> dict[str, float]:
        return self._evaluate()

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.windows.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.windows.generator.set_state(state["generator"])


def _channel_stats(frames: Tensor, space_dims: int) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation ``[channel]`` over trajectories, times and space, in float64."""
    x = frames.double().movedim(2, 0).flatten(1)  # [channel, everything else]
    mean, std = x.mean(dim=1), x.std(dim=1, correction=0)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


class SineNetSolver(GridSolver):
    """``solver: sinenet`` — see :class:`SineNetSettings`."""

    name = "sinenet"
    Options = SineNetSettings
    trains_on = frozenset({DATA})

    def __init__(self, problem: Problem, options: SineNetSettings, device: torch.device, dtype: torch.dtype = torch.float32, *,
                 ranks: Ranks | None = None, family: InitialConditionFamily | None = None):
        super().__init__(problem, options, device, dtype, ranks=ranks, family=family)
        periodic = tuple(a.periodic for a in problem.domain.space)
        try:
            self.network = network_options(options, len(problem.equation.fields), periodic)
        except ValueError as err:
            raise SolverMismatch(f"solver 'sinenet' cannot be built for problem {problem.name!r}: {err}") from None
        fields = len(problem.equation.fields)
        self.model = SineNetStepper(self.network, fields, periodic, options.residual).to(device=device, dtype=dtype)
        if options.sparsity is not None:
            sparsity.sparsify(self.model, options.sparsity, owner="solver 'sinenet'")
        self.history = options.history

    @classmethod
    def mismatches(cls, problem: Problem) -> list[str]:
        out = []
        if problem.domain.time is None:
            out.append("it learns time steps and the problem has no time axis")
        if not 1 <= len(problem.domain.space) <= 3:
            out.append(f"it works on 1 to 3 space axes, got {len(problem.domain.space)}")
        return out

    @property
    def rollout_settings(self) -> RolloutSettings:
        o = self.options
        return RolloutSettings(o.rollout_steps, o.rollout_starts, o.eval_trajectories)  # type: ignore[attr-defined]

    @property
    def data_settings(self) -> DataSettings:
        o = self.options
        return DataSettings(o.split, o.split_seed, o.time_stride)  # type: ignore[attr-defined]

    @property
    def frame_dt(self) -> float:
        return float(self.model.frame_dt)

    def describe(self) -> dict[str, Any]:
        return self.network.describe()

    def data_task(self, data: Trajectories, evaluate: Callable[[], dict[str, float]]) -> SineNetTask:
        """The training task on ``data`` (the training trajectories); ``evaluate()`` scores validation rollouts."""
        self.check_grid(data.grid)
        if self.options.train_unroll > 1:  # type: ignore[attr-defined]
            from .sinenet_rollout import SineNetRolloutTask

            return SineNetRolloutTask(self.model, data, self.options, self.device, self.dtype, evaluate)  # type: ignore[arg-type,return-value]
        return SineNetTask(self.model, data, self.options, self.device, self.dtype, evaluate)  # type: ignore[arg-type]

    def check_grid(self, grid: Grid) -> None:
        """Raise unless the network can run on ``grid``'s space (sizes divisible by the pooling factor)."""
        m = self.network.size_multiple
        if any(n % m for n in grid.space_shape):
            raise UserError(
                f"solver 'sinenet' with {self.network.levels} levels needs space sizes that are multiples of {m}, "
                f"got {grid.space_shape}; change the resolution or solvers.sinenet.channel_mults"
            )
        if periodic_axes(grid) != tuple(a.periodic for a in self.problem.domain.space):
            raise UserError(f"grid boundary kinds {periodic_axes(grid)} differ from the problem's")

    def step(self, frames: Tensor) -> Tensor:
        """One step in evaluation mode: ``[batch, history, channel, *space] -> [batch, channel, *space]``."""
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            out = self.model(frames.to(device=self.device, dtype=self.dtype))
        self.model.train(was_training)
        return out

    def step_with_grad(self) -> Callable[[Tensor], Tensor]:
        """:meth:`step` with autograd kept (the model in evaluation mode), for the parallel-in-time executors."""
        self.model.eval()
        return lambda frames: self.model(frames.to(device=self.device, dtype=self.dtype))
