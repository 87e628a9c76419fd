"""A chain of denoisers of the target (NoProp-DT), regressing fields.

NoProp (Li, Teh and Pascanu, "NoProp: Training Neural Networks without Back-propagation or
Forward-propagation", arXiv 2503.24322, 2025) replaces a stack of layers by ``T`` blocks
``u_t(x, z_{t-1})``, each of which predicts the clean embedding of the target from the input and a noised
version ``z_{t-1}`` of it. The noise follows a variance-preserving schedule ``alpha_bar_0 < ... < alpha_bar_T``
(``q(z_t | y) = N(sqrt(alpha_bar_t) u_y, (1 - alpha_bar_t) I)``): ``z_0`` is nearly pure noise, ``z_T``
nearly the clean target. Training (:mod:`pdesolve.optim.noprop`) fits every block on its own noise level;
inference starts from ``z_0`` and applies the posterior mean update of the schedule,

    ``z_t = a_t u_t(x, z_{t-1}) + b_t z_{t-1}   (+ sqrt(c_t) eps)``,

with ``a_t, b_t, c_t`` the mean and variance coefficients of ``q(z_t | z_{t-1}, y)`` when ``u_y`` is replaced
by the block's prediction; a linear read-out maps ``z_T`` to the prediction.

Regression form: the target embedding ``u_y`` is the field itself, normalized per channel by the buffers
``mean`` and ``std`` (as :class:`~pdesolve.nn.field_mlp.FieldMLP` does) and flattened, so it has about unit
variance per component, matched to the unit-variance noise. The read-out is a ``D x D`` linear map followed
by the de-normalization, so the model's output is in physical units with the shape the targets have.

The forward pass (the model's prediction) is deterministic: ``z_0 = 0`` and no noise is added (the posterior
mean at every step), unless ``noise_seed`` is given, in which case ``z_0`` and the step noises are drawn from
a generator seeded with it on every call (the same noise for the same batch size: still reproducible).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .blocks import DenoisingModel
from .mlp import MLP


def cosine_schedule(steps: int, offset: float = 0.008, lo: float = 1e-4, hi: float = 0.999) -> Tensor:
    """The cosine schedule of ``alpha_bar_t``, ``t = 0 .. steps``, increasing from about ``lo`` to ``hi`` (float64).

    ``alpha_bar_t = cos^2(pi/2 (1 - t/T + offset) / (1 + offset)) / cos^2(pi/2 offset / (1 + offset))``,
    clipped to ``[lo, hi]`` so that every signal-to-noise ratio is finite.
    """
    if steps < 1:
        raise ValueError(f"a denoising chain needs at least one block, got T={steps}")
    tau = 1.0 - torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos(0.5 * math.pi * (tau + offset) / (1 + offset)).square()
    f0 = math.cos(0.5 * math.pi * offset / (1 + offset)) ** 2
    return (f / f0).clamp(lo, hi)


def snr(alpha_bar: Tensor) -> Tensor:
    """The signal-to-noise ratio ``alpha_bar / (1 - alpha_bar)`` of each level."""
    return alpha_bar / (1 - alpha_bar)


def posterior_coefficients(alpha_bar: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``a_t, b_t, c_t`` (each ``[T]``) of ``q(z_t | z_{t-1}, u) = N(a_t u + b_t z_{t-1}, c_t I)``, ``t = 1 .. T``.

    With ``alpha = alpha_bar_{t-1} / alpha_bar_t`` (the signal kept from level ``t`` to ``t - 1``):
    ``a_t = sqrt(alpha_bar_t) (1 - alpha) / (1 - alpha_bar_{t-1})``,
    ``b_t = sqrt(alpha) (1 - alpha_bar_t) / (1 - alpha_bar_{t-1})``,
    ``c_t = (1 - alpha_bar_t) (1 - alpha) / (1 - alpha_bar_{t-1})``.
    """
    prev, cur = alpha_bar[:-1], alpha_bar[1:]
    alpha = prev / cur
    a = cur.sqrt() * (1 - alpha) / (1 - prev)
    b = alpha.sqrt() * (1 - cur) / (1 - prev)
    c = (1 - cur) * (1 - alpha) / (1 - prev)
    return a, b, c


class Denoiser(nn.Module):
    """One block ``u_t(x, z)``: an MLP on the input and the noised embedding, concatenated."""

    def __init__(self, inputs: int, dim: int, width: int, depth: int, act: str):
        super().__init__()
        self.mlp = MLP(inputs + dim, dim, width=width, depth=depth, act=act)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        return self.mlp(torch.cat([x, z], dim=-1))


class _Head(nn.Module):
    """The read-out: a linear map of ``z_T``, then the model's de-normalization."""

    def __init__(self, linear: nn.Linear, physical):
        super().__init__()
        self.linear = linear
        self.physical = physical

    def forward(self, z: Tensor) -> Tensor:
        return self.physical(self.linear(z))


class NoPropNet(nn.Module, DenoisingModel):
    """``inputs`` numbers in, a field of shape ``outputs`` (an int, or ``(channels, points, ...)``) out, by
    ``T`` denoising blocks of ``depth`` hidden layers of ``width`` units.

    ``set_scale(mean, std)`` gives the per-channel normalization of the targets (one channel when
    ``outputs`` is an int); ``noise_seed``: None for the deterministic pass (``z_0 = 0``, no step noise).
    """

    def __init__(self, inputs: int, outputs: int | Sequence[int], T: int = 10, width: int = 64, depth: int = 2,  # noqa: N803
                 act: str = "silu", noise_seed: int | None = None):
        super().__init__()
        self.shape = (int(outputs),) if isinstance(outputs, int) else tuple(int(s) for s in outputs)
        self.dim = math.prod(self.shape)
        self.T, self.noise_seed = T, noise_seed
        channels = self.shape[0] if len(self.shape) > 1 else 1
        alpha_bar = cosine_schedule(T)
        self.blocks_ = nn.ModuleList(Denoiser(inputs, self.dim, width, depth, act) for _ in range(T))
        self.readout = nn.Linear(self.dim, self.dim)
        with torch.no_grad():  # z_T is about sqrt(alpha_bar_T) u: start from the inverse scaling
            self.readout.weight.copy_(torch.eye(self.dim) / float(alpha_bar[-1].sqrt()))
            self.readout.bias.zero_()
        self.register_buffer("alpha_bar", alpha_bar.float())
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    def set_scale(self, mean: Tensor, std: Tensor) -> None:
        """The per-channel mean and standard deviation of the fields it learns."""
        self.mean.copy_(mean)
        self.std.copy_(std)

    def _scale(self) -> tuple[Tensor, Tensor]:
        view = (-1,) + (1,) * (len(self.shape) - 1)
        return self.mean.reshape(view), self.std.reshape(view)

    def physical(self, normalized: Tensor) -> Tensor:
        """``[n, D]`` normalized -> ``[n, *outputs]`` physical."""
        mean, std = self._scale()
        return normalized.reshape(-1, *self.shape) * std + mean

    def embed(self, targets: Tensor) -> Tensor:
        mean, std = self._scale()
        return ((targets.reshape(-1, *self.shape) - mean) / std).reshape(-1, self.dim)

    def schedule(self) -> Tensor:
        return self.alpha_bar

    def denoisers(self) -> Sequence[nn.Module]:
        return list(self.blocks_)

    def head(self) -> nn.Module:
        return _Head(self.readout, self.physical)

    def forward(self, x: Tensor) -> Tensor:
        a, b, c = posterior_coefficients(self.alpha_bar)
        shape = (x.shape[0], self.dim)
        gen = None if self.noise_seed is None else torch.Generator(device=x.device).manual_seed(self.noise_seed)
        z = x.new_zeros(shape) if gen is None else torch.randn(shape, generator=gen, device=x.device, dtype=x.dtype)
        for t, block in enumerate(self.blocks_):
            z = a[t] * block(x, z) + b[t] * z
            if gen is not None:
                z = z + c[t].sqrt() * torch.randn(shape, generator=gen, device=x.device, dtype=x.dtype)
        return self.physical(self.readout(z))
