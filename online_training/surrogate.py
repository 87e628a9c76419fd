"""The surrogates an online study trains, and how streamed frames become their training records.

A record is one float32 row of fixed length (so that buffers can hold records in preallocated arrays):

- :class:`FieldMLP` (``mlp``), as in Melissa: the scaled parameters and time in, the whole field out;
  record ``[parameters (P), t (1) | field (C * S)]``;
- :class:`OneStep` (``sinenet``): a pdesolve SineNet that maps frame ``k`` to frame ``k + 1``; record
  ``[frame k (C * S) | frame k+1 (C * S)]``, made on the server from consecutive streamed frames.

Fields are learned in normalized units, ``(u - mean) / std`` per channel, with the mean and standard
deviation of the records present when training starts (``C`` channels, ``S`` space points).
"""

from __future__ import annotations

import abc

import numpy as np
import torch
from torch import Tensor, nn

from pdesolve.nn.mlp import MLP
from pdesolve.nn.sinenet import SineNet, SineNetOptions

from .study import MLPSurrogate, SineNetSurrogate


class Surrogate(abc.ABC):
    """The record layout and the network of one kind of surrogate, for frames ``[C, *space]``."""

    def __init__(self, frame_shape: tuple[int, ...], n_params: int):
        self.frame_shape, self.n_params = tuple(frame_shape), n_params
        self.channels = frame_shape[0]
        self.points = int(np.prod(frame_shape[1:]))

    record_size: int

    @abc.abstractmethod
    def build(self) -> nn.Module:
        """A freshly initialized network (seed torch first for a reproducible one)."""

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
    def batch(self, records: Tensor, mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
        """Network input and normalized target from records ``[n, record_size]``; ``mean``, ``std`` are ``[C]``."""

    def physical(self, prediction: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        """A network output in physical units, ``[n, C, S]``."""
        return prediction.reshape(-1, self.channels, self.points) * std[:, None] + mean[:, None]

    def _normalize(self, fields: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        """``[n, C * S] -> [n, C, S]`` normalized."""
        return (fields.reshape(-1, self.channels, self.points) - mean[:, None]) / std[:, None]


class FieldMLP(Surrogate):
    """Melissa's fully connected surrogate: ``(parameters, t) -> field``."""

    def __init__(self, frame_shape: tuple[int, ...], n_params: int, spec: MLPSurrogate):
        super().__init__(frame_shape, n_params)
        self.spec = spec
        self.inputs = n_params + 1
        self.record_size = self.inputs + self.channels * self.points

    def build(self) -> nn.Module:
        s = self.spec
        return MLP(self.inputs, self.channels * self.points, width=s.width, depth=s.depth, act=s.activation)

    def record(self, params: np.ndarray, t: float, frame: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        return np.concatenate([params, [t], frame.reshape(-1)]).astype(np.float32)

    def trajectory_records(self, params: np.ndarray, t: np.ndarray, frames: np.ndarray) -> np.ndarray:
        n = len(t)
        return np.concatenate([np.broadcast_to(params, (n, self.n_params)), t[:, None], frames.reshape(n, -1)], axis=1).astype(np.float32)

    def target(self, records: Tensor) -> Tensor:
        return records[:, self.inputs :].reshape(-1, self.channels, self.points)

    def batch(self, records: Tensor, mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
        x = records[:, : self.inputs]  # [n, P + 1]
        y = self._normalize(records[:, self.inputs :], mean, std).flatten(1)  # [n, C * S]
        return x, y


class Residual(nn.Module):
    """``x -> x + net(x)``: a time stepper that learns the change over one step."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class OneStep(Surrogate):
    """A pdesolve SineNet trained on one-step pairs ``frame k -> frame k + 1`` ``[C, *space]``."""

    def __init__(self, frame_shape: tuple[int, ...], n_params: int, spec: SineNetSurrogate, periodic: tuple[bool, ...]):
        super().__init__(frame_shape, n_params)
        self.spec = spec
        self.options = SineNetOptions(
            fields=self.channels, periodic=periodic, history=1, out_frames=1, waves=spec.waves, width=spec.width,
            channel_mults=spec.channel_mults,
        )
        self.record_size = 2 * self.channels * self.points

    def build(self) -> nn.Module:
        net = SineNet(self.options)
        return Residual(net) if self.spec.residual else net

    def record(self, params: np.ndarray, t: float, frame: np.ndarray, previous: np.ndarray | None) -> np.ndarray | None:
        if previous is None:
            return None
        return np.concatenate([previous.reshape(-1), frame.reshape(-1)]).astype(np.float32)

    def trajectory_records(self, params: np.ndarray, t: np.ndarray, frames: np.ndarray) -> np.ndarray:
        flat = frames.reshape(len(frames), -1)
        return np.concatenate([flat[:-1], flat[1:]], axis=1).astype(np.float32)

    def target(self, records: Tensor) -> Tensor:
        return records[:, self.channels * self.points :].reshape(-1, self.channels, self.points)

    def batch(self, records: Tensor, mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
        half = self.channels * self.points
        shape = (-1,) + self.frame_shape
        x = self._normalize(records[:, :half], mean, std).reshape(shape)  # [n, C, *space]
        y = self._normalize(records[:, half:], mean, std).reshape(shape)  # [n, C, *space]
        return x, y


def make_surrogate(
    spec: MLPSurrogate | SineNetSurrogate, frame_shape: tuple[int, ...], n_params: int, periodic: tuple[bool, ...]
) -> Surrogate:
    """The surrogate a study names (``surrogate.kind``)."""
    if isinstance(spec, MLPSurrogate):
        return FieldMLP(frame_shape, n_params, spec)
    return OneStep(frame_shape, n_params, spec, periodic)


def relative_l2(prediction: Tensor, target: Tensor) -> float:
    """``||prediction - target|| / ||target||`` over everything, in float64."""
    p, t = prediction.double(), target.double()
    return float(torch.linalg.vector_norm(p - t) / torch.linalg.vector_norm(t).clamp_min(1e-300))
