"""AugLocal: supervised local learning with augmented auxiliary networks.

Ma, Wu, Huang, Li, Tan, "Scaling Supervised Local Learning with Augmented Auxiliary Networks", ICLR 2024.

The model's blocks are grouped into ``K`` gradient-isolated stages. Stage ``j < K - 1`` is trained on the
task's criterion of an auxiliary prediction; its auxiliary network is made of ``d_j`` of the stages AFTER
it, picked uniformly (every ``(K - 1 - j) / d_j``-th later stage, always ending with the model's last stage,
the paper's choice), copied and freshly initialised, so that the auxiliary network looks like the part of
the model it stands in for. The depths follow the paper's pyramid: ``d_j = max(min_depth, round(aux_depth
(1 - r_j) + min_depth r_j))`` with ``r_j = pyramid * j / (K - 2)``, deepest for the first stage and
linearly shallower for later ones. The last stage is trained on the criterion of the model's own output.

Regression form: the paper's auxiliary classifiers (cross-entropy on class logits) become the task's own
criterion (mean squared error, relative L2) of ``tail(aux(h))``, where ``tail`` is the model's trailing
parameter-free blocks (de-normalization, the stepper's residual update): the auxiliary prediction is in the
targets' units. Since the picked stages end with the model's last stage (its output layer), no extra
read-out head is needed where the picked stages compose.

Where they do not (a U-Net stage pops a skip that the auxiliary path never pushed, or its input has another
shape), :class:`~pdesolve.optim.aux_heads.Adapt` bridges the gap: ``h`` goes through a
:func:`~pdesolve.optim.local.readout` head to the shape the stage expects, and a kept tensor it would pop but
the auxiliary path does not carry is made from ``h`` by a read-out head of its own.

The prediction is the model's own forward pass, ``task.model(x)``: the auxiliary networks only train.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from torch import nn

from .aux_heads import Adapt, Chain, Signature, StagewiseRule, fresh_copy
from .local import StagewiseOptions


class AugLocalOptions(StagewiseOptions):
    aux_depth: int = Field(2, ge=1, description="later stages copied into the first stage's auxiliary network")
    min_depth: int = Field(1, ge=1, description="the depth the pyramid shrinks towards")
    pyramid: float = Field(0.5, ge=0, le=1, description="how far the depth shrinks by the last auxiliary network (0: no pyramid)")

    @model_validator(mode="after")
    def _depths(self) -> AugLocalOptions:
        if self.min_depth > self.aux_depth:
            raise ValueError(f"min_depth {self.min_depth} is above aux_depth {self.aux_depth}")
        return self


def pyramid_depths(count: int, aux_depth: int, min_depth: int, pyramid: float) -> list[int]:
    """The auxiliary depth of each stage ``j = 0 .. count - 2`` (the last stage has no auxiliary network)."""
    n = count - 1
    depths = []
    for j in range(n):
        r = pyramid * j / (n - 1) if n > 1 else 0.0
        depths.append(max(min_depth, round(aux_depth * (1 - r) + min_depth * r)))
    return depths


def uniform_stages(j: int, count: int, depth: int) -> list[int]:
    """``depth`` of the stages after ``j``, evenly spaced and ending with the last (all of them if too few)."""
    later = count - 1 - j
    if depth >= later:
        return list(range(j + 1, count))
    return [round(j + later * i / depth) for i in range(1, depth + 1)]


class AugLocal(StagewiseRule):
    """Stage-wise training; each stage's auxiliary network is fresh copies of uniformly picked later stages."""

    name = "auglocal"
    options: AugLocalOptions

    def depths(self) -> list[int]:
        o = self.options
        return pyramid_depths(len(self.stage_list), o.aux_depth, o.min_depth, o.pyramid)

    def _aux_network(self, j: int, sigs: list[Signature]) -> nn.Module:
        picked = uniform_stages(j, len(self.stage_list), self.depths()[j])
        parts: list[nn.Module] = []
        current = sigs[j + 1]
        for s in picked:
            if Adapt.needed(current, sigs[s]):
                parts.append(Adapt(current, sigs[s]))
            parts.append(fresh_copy(self.stage_list[s], self.model))
            current = sigs[s + 1]
        if Adapt.needed(current, sigs[-1]):
            parts.append(Adapt(current, sigs[-1]))
        return Chain(parts)
