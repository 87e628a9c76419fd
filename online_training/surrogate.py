"""The surrogates an online study trains, and how streamed frames become their training records.

A surrogate's network is a pdesolve model that carries its own normalization (buffers ``mean`` and ``std``
per channel, fitted to the records present when training starts, saved with the weights) and works in
physical units. A record is one float32 row of fixed length (so that buffers can hold records in
preallocated arrays):

- :class:`FieldSurrogate` (``mlp``), as in Melissa: a :class:`pdesolve.nn.field_mlp.FieldMLP` from the
  scaled parameters and time to the whole field; record ``[parameters (P), t (1) | field (C * S)]``;
- :class:`OneStep` (``sinenet``): a :class:`pdesolve.solvers.sinenet.SineNetStepper` (one input frame) that
  maps frame ``k`` to frame ``k + 1``; record ``[frame k (C * S) | frame k+1 (C * S)]``, made on the server
  from consecutive streamed frames.

``C`` channels, ``S`` space points.
"""

from __future__ import annotations

import abc

import numpy as np
import torch
from torch import Tensor, nn

from pdesolve.nn.field_mlp import FieldMLP
from pdesolve.nn.noprop import NoPropNet
from pdesolve.nn.sinenet import SineNetOptions
from pdesolve.solvers.sinenet import SineNetStepper

from .study import MLPSurrogate, NoPropSurrogate, SineNetSurrogate


class Surrogate(abc.ABC):
    """The record layout and the network of one kind of surrogate, for frames ``[C, *space]``."""

    kind: str

    def __init__(self, frame_shape: tuple[int, ...], n_params: int):
        self.frame_shape, self.n_params = tuple(frame_shape), n_params
        self.channels = frame_shape[0]
        self.points = int(np.prod(frame_shape[1:]))

    record_size: int

    @abc.abstractmethod
    def build(self) -> nn.Module:
        """A freshly initialized network (seed torch first for a reproducible one)."""

    @abc.abstractmethod
    def set_scale(self, model: nn.Module, mean: Tensor, std: Tensor) -> None:
        """Give ``model`` the per-channel ``mean`` and ``std`` ``[C]`` of the fields it learns."""

    @abc.abstractmethod
    def record(self, params: np.ndarray, t: float, frame: np.ndarray, previous: np.ndarray | None) -> np.ndarray | None:
        """The record of one streamed frame (scaled ``params [P]``, scaled ``t``), or None if it makes none."""

    @abc.abstractmethod
    def trajectory_records(self, params: np.ndarray, t: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Every record ``[n, record_size]`` of one trajectory ``frames [time, C, *space]`` at scaled times ``t``."""

    def records_of(self, params: np.ndarray, t: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """The records of many trajectories ``frames [n, time, C, *space]`` with scaled ``params [n, P]``."""
        return np.concatenate([self.trajectory_records(params[i], t, frames[i]) for i in range(len(frames))])

    @abc.abstractmethod
    def target(self, records: Tensor) -> Tensor:
        """The field each record teaches, ``[n, C, S]`` in physical units."""

    @abc.abstractmethod
    def batch(self, records: Tensor) -> tuple[Tensor, Tensor]:
        """The network's input and its target (physical units, the shape of the network's output) from records."""

    def flat(self, output: Tensor) -> Tensor:
        """A network output or target as ``[n, C, S]``."""
        return output.reshape(-1, self.channels, self.points)


class FieldSurrogate(Surrogate):
    """Melissa's fully connected surrogate: ``(parameters, t) -> field``."""

    kind = "mlp"

    def __init__(self, frame_shape: tuple[int, ...], n_params: int, spec: MLPSurrogate):
        super().__init__(frame_shape, n_params)
        self.spec = spec
        self.kind = spec.kind  # "mlp", or "noprop": the same records, a NoProp chain of denoisers
        self.inputs = n_params + 1
        self.record_size = self.inputs + self.channels * self.points

    def build(self) -> nn.Module:
        s = self.spec
        if isinstance(s, NoPropSurrogate):
            return NoPropNet(self.inputs, (self.channels, self.points), T=s.blocks, width=s.width, depth=s.depth, act=s.activation)
        return FieldMLP(self.inputs, self.channels, self.points, width=s.width, depth=s.depth, act=s.activation)

    def set_scale(self, model: nn.Module, mean: Tensor, std: Tensor) -> None:
        assert isinstance(model, (FieldMLP, NoPropNet))
        model.set_scale(mean, std)

    def record(self, params: np.ndarray, t: float, frame: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        return np.concatenate([params, [t], frame.reshape(-1)]).astype(np.float32)

    def trajectory_records(self, params: np.ndarray, t: np.ndarray, frames: np.ndarray) -> np.ndarray:
        n = len(t)
        return np.concatenate([np.broadcast_to(params, (n, self.n_params)), t[:, None], frames.reshape(n, -1)], axis=1).astype(np.float32)

    def target(self, records: Tensor) -> Tensor:
        return records[:, self.inputs :].reshape(-1, self.channels, self.points)

    def batch(self, records: Tensor) -> tuple[Tensor, Tensor]:
        return records[:, : self.inputs], self.target(records)  # [n, P + 1], [n, C, S]


class OneStep(Surrogate):
    """A pdesolve SineNet stepper trained on one-step pairs ``frame k -> frame k + 1`` ``[C, *space]``."""

    kind = "sinenet"

    def __init__(self, frame_shape: tuple[int, ...], n_params: int, spec: SineNetSurrogate, periodic: tuple[bool, ...],
                 frame_dt: float = 0.0):
        super().__init__(frame_shape, n_params)
        self.spec, self.periodic, self.frame_dt = spec, periodic, frame_dt
        self.options = SineNetOptions(
            fields=self.channels, periodic=periodic, history=1, out_frames=1, waves=spec.waves, width=spec.width,
            channel_mults=spec.channel_mults,
        )
        self.record_size = 2 * self.channels * self.points

    def build(self) -> SineNetStepper:
        return SineNetStepper(self.options, self.channels, self.periodic, residual=self.spec.residual)

    def set_scale(self, model: nn.Module, mean: Tensor, std: Tensor) -> None:
        assert isinstance(model, SineNetStepper)
        model.set_data_scale(mean, std, self.frame_dt)

    def record(self, params: np.ndarray, t: float, frame: np.ndarray, previous: np.ndarray | None) -> np.ndarray | None:
        if previous is None:
            return None
        return np.concatenate([previous.reshape(-1), frame.reshape(-1)]).astype(np.float32)

    def trajectory_records(self, params: np.ndarray, t: np.ndarray, frames: np.ndarray) -> np.ndarray:
        flat = frames.reshape(len(frames), -1)
        return np.concatenate([flat[:-1], flat[1:]], axis=1).astype(np.float32)

    def target(self, records: Tensor) -> Tensor:
        return records[:, self.channels * self.points :].reshape(-1, self.channels, self.points)

    def batch(self, records: Tensor) -> tuple[Tensor, Tensor]:
        half = self.channels * self.points
        x = records[:, :half].reshape((-1, 1) + self.frame_shape)  # [n, history 1, C, *space]
        y = records[:, half:].reshape((-1,) + self.frame_shape)  # [n, C, *space]
        return x, y


def make_surrogate(
    spec: MLPSurrogate | SineNetSurrogate, frame_shape: tuple[int, ...], n_params: int, periodic: tuple[bool, ...],
    frame_dt: float = 0.0,
) -> Surrogate:
    """The surrogate a study names (``surrogate.kind``); ``frame_dt``: the time between frames (one-step surrogates)."""
    if isinstance(spec, MLPSurrogate):
        return FieldSurrogate(frame_shape, n_params, spec)
    return OneStep(frame_shape, n_params, spec, periodic, frame_dt)


def relative_l2(prediction: Tensor, target: Tensor) -> float:
    """``||prediction - target|| / ||target||`` over everything, in float64."""
    p, t = prediction.double(), target.double()
    return float(torch.linalg.vector_norm(p - t) / torch.linalg.vector_norm(t).clamp_min(1e-300))
