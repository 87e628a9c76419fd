"""Counter-current learning: a forward network and a feedback network from the targets, trained against each other.

Paper: C.-H. Kao and B. Hariharan, "Counter-Current Learning: A Biologically Plausible Dual Network Approach for
Deep Learning", NeurIPS 2024. Next to the forward network that maps inputs to outputs runs a feedback network
that maps the *targets* the other way, layer by layer, down towards the inputs. Each layer's input is detached
in both networks; the losses pair the forward activation and the feedback activation at the same depth, so the
forward layer is pulled towards the (more target-informed) feedback signal and the feedback layer towards the
forward activation; only the top forward layer sees the task loss.

Regression form used here. With the model's stages ``S_1 .. S_n`` (outputs ``h_1 .. h_n``, each stage's input
detached) and one feedback layer ``G_i`` per stage boundary, run from the standardized targets ``y`` downwards,
``c_{n-1} = G_{n-1}(y)``, ``c_{i-1} = G_{i-1}(detach(c_i))``:

    L_i = w * [ d(h_i, detach(c_i)) + d(detach(h_i), c_i) ]      i = 1 .. n-1   ("forward", "feedback" terms)
    L_n = criterion(tail(h_n), targets)                              (the model's output, the task's loss)

The two terms give exactly the gradients of the paper's symmetric ``d(h_i, c_i)`` with both sides trainable;
they are kept apart so that each network's share is reported and can be checked. The pairing ``d``:

- ``"similarity"`` (default): the paper's classification pairing, with every sample its own class: the
  batch's cross-similarity matrix ``A B^T`` of the (batch-centred, per-sample normalized, flattened)
  activations is regressed onto the identity, so that each sample's forward activation is aligned with its own
  feedback activation and not with the other samples'. The sample-vs-sample contrast keeps the two networks
  from meeting at a constant.
- ``"mse"``: the paper's autoencoder pairing, a plain mean squared difference. Here, where nothing below the
  pairings anchors the feedback network, both networks drift to a common constant (the pairing losses reach
  ~1e-4 while the output error stays near its initial value on the tests' field regression): offered for
  completeness, not advised.
- ``"standardized"``: the mean squared difference of the activations standardized per feature over the batch
  (a correlation pairing, which rules out the constant solution but not a low-rank one).

A feedback layer mirrors a stage's shapes, not its architecture: ``[N, C]`` features get a linear map,
``[B, C, *space]`` features a resampling to the lower layer's grid and a ``kernel``-wide convolution, ranks that
differ a linear map of the flattened tensor; then ``activation``. The paper's lowest feedback layer, which
reconstructs the *input* from ``c_1``, never reaches the forward network's updates (it serves the paper's
autoencoder experiments only) and is left out. The targets are standardized by one mean and standard deviation
fitted on the first batch.

Prediction: the model's own output (``task.model(x)``), as in the paper (the forward network's output).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor, nn

from ..nn.blocks import Carry
from ..task import Batch, SupervisedTask
from .forward_only import StagewiseRule, TargetScale
from .local import Probe, StagewiseOptions, cut

ACTIVATIONS = {"tanh": torch.tanh, "elu": F.elu, "gelu": F.gelu, "identity": lambda x: x}


class CounterCurrentOptions(StagewiseOptions):
    activation: Literal["tanh", "elu", "gelu", "identity"] = Field("tanh", description="the feedback layers' activation")
    kernel: int = Field(3, gt=0, description="kernel width of the feedback convolutions on [B, C, *space] features (odd)")
    pair_weight: float = Field(1.0, gt=0, description="weight of the layer-pairing losses against the output loss")
    feedback_lr_scale: float = Field(1.0, gt=0, description="the feedback network's learning rate, as a factor of lr")
    pairing: Literal["similarity", "mse", "standardized"] = Field(
        "similarity", description="how paired activations are compared (see the module docstring)")

    @field_validator("kernel")
    @classmethod
    def _odd(cls, k: int) -> int:
        if k % 2 == 0:
            raise ValueError(f"kernel must be odd (it keeps the grid), got {k}")
        return k


def standardize(a: Tensor) -> Tensor:
    """Each feature (channel and position) of ``a`` to zero mean and unit variance over the batch."""
    return (a - a.mean(0)) / (a.var(0, correction=0) + 1e-5).sqrt()


def _unit_rows(a: Tensor) -> Tensor:
    a = a.flatten(1)
    a = a - a.mean(0)
    return a / (a.norm(dim=1, keepdim=True) + 1e-8)


def similarity_loss(a: Tensor, b: Tensor) -> Tensor:
    """``N * mse(A B^T, I)`` for the batch-centred, unit-norm rows ``A``, ``B`` of ``a``, ``b`` (``[N, ...]``)."""
    sim = _unit_rows(a) @ _unit_rows(b).T
    return F.mse_loss(sim, torch.eye(len(sim), dtype=sim.dtype, device=sim.device)) * len(sim)


def pairing_loss(kind: str, a: Tensor, b: Tensor) -> Tensor:
    """The distance ``d(a, b)`` of the pairing ``kind`` between a forward and a feedback activation."""
    if kind == "similarity":
        return similarity_loss(a, b)
    if kind == "standardized":
        a, b = standardize(a), standardize(b)
    return F.mse_loss(a, b)


class FeedbackLayer(nn.Module):
    """Maps a target-side activation of shape ``source`` to one of shape ``dest`` (batch dimension included)."""

    def __init__(self, source: torch.Size, dest: torch.Size, activation: str, kernel: int):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"the feedback kernel must be odd to keep the grid, got {kernel}")
        self.dest = tuple(dest[1:])
        self.act = ACTIVATIONS[activation]
        self.spatial = len(source) == len(dest) and len(dest) in (3, 4, 5)
        if self.spatial:
            conv = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[len(dest)]
            self.map: nn.Module = conv(source[1], dest[1], kernel_size=kernel, padding=kernel // 2)
            self.size = tuple(dest[2:])
            self.resample = tuple(source[2:]) != self.size
        else:
            self.map = nn.Linear(math.prod(source[1:]), math.prod(dest[1:]))

    def forward(self, c: Tensor) -> Tensor:
        if self.spatial:
            if self.resample:
                mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(self.size)]
                c = F.interpolate(c, size=self.size, mode=mode, align_corners=False)
            return self.act(self.map(c))
        return self.act(self.map(c.flatten(1))).reshape(-1, *self.dest)


class CounterCurrent(StagewiseRule):
    """Counter-current learning (CCL): forward stages and a target-driven feedback network, paired layer by layer."""

    name = "counter_current"
    options: CounterCurrentOptions

    def make_aux(self, probe: Probe, batch: Batch) -> nn.ModuleDict:
        o = self.options
        shapes = probe.stage_shapes
        # feedback layer i maps depth i + 1 (the targets above the last hidden stage) down to depth i
        sources = [*shapes[1:-1], batch.targets.shape]
        layers = [FeedbackLayer(src, dst, o.activation, o.kernel) for src, dst in zip(sources, shapes[:-1])]
        return nn.ModuleDict({"scale": TargetScale(), "feedback": nn.ModuleList(layers)})

    def aux_groups(self) -> list[dict[str, Any]]:
        assert self.aux is not None
        params = list(self.aux["feedback"].parameters())
        return [{"params": params, "scale": self.options.feedback_lr_scale}] if params else []

    def feedback_signals(self, targets: Tensor) -> list[Tensor]:
        """``c_0 .. c_{n-2}``: the feedback network's activations paired with the hidden stages' outputs."""
        assert self.aux is not None
        layers: Sequence[nn.Module] = self.aux["feedback"]  # type: ignore[assignment]
        signal = self.aux["scale"](targets)
        out: list[Tensor] = [signal] * len(layers)
        for i in reversed(range(len(layers))):
            signal = layers[i](signal.detach())
            out[i] = signal
        return out

    def local_losses(self, step: int, task: SupervisedTask, batch: Batch) -> Iterator[tuple[int, dict[str, Tensor]]]:
        assert self.tail is not None
        w = self.options.pair_weight
        signals = self.feedback_signals(batch.targets)
        last = len(self.stage_list) - 1
        carry = Carry(batch.inputs)
        for i, stage in enumerate(self.stage_list):
            carry = stage(cut(carry))
            if i == last:
                yield i, {"loss": task.criterion(self.tail(carry.h, carry), batch.targets)}
            else:
                h, c, kind = carry.h, signals[i], self.options.pairing
                yield i, {"forward": w * pairing_loss(kind, h, c.detach()), "feedback": w * pairing_loss(kind, h.detach(), c)}
