"""AugLocal on a PINN (experimental): stage-wise training on input-derivative jets carried between stages.

Ma, Wu, Huang, Li, Tan, "Scaling Supervised Local Learning with Augmented Auxiliary Networks", ICLR 2024
(supervised form: :mod:`pdesolve.optim.auglocal`). Experimental: the paper is about supervised
classification, the extension to physics-informed losses is ours.

A PINN's loss is a PDE residual: it scores the output's derivatives in the inputs, which a stage's plain
features do not hold. Here the model runs block by block on *jets* (:mod:`pdesolve.nn.jet_blocks`): the
features' value with their gradient and diagonal Hessian rows in the input coordinates. The jet blocks (the
coordinate features with the first layer, each later layer, and the exact IC/BC transform as a
parameter-free tail) are grouped into ``K`` stages as in AugLocal. Between stages the jet is detached from
the earlier stages' parameters, not from the inputs: its derivative rows are numbers that carry the
dependence on the coordinates forward, so a later stage still sees (and its residual still differentiates)
a function of the inputs.

Regression form: stage ``j < K - 1`` trains on the task's own residual loss (and soft-condition terms)
``loss_of(tail(aux_j(jet_j)))``; ``aux_j`` is made of ``d_j`` later stages picked uniformly and ending with the
output layer (AugLocal's choice and pyramid of depths, :func:`~pdesolve.optim.auglocal.pyramid_depths`,
:func:`~pdesolve.optim.auglocal.uniform_stages`), copied and re-initialised as the MLP initialises its layers
(Glorot-normal weights, zero biases). They are dense layers, so jets flow through them with ``Jet.linear``
and the jet activation; ``tail`` is the exact IC/BC transform, so every auxiliary prediction satisfies the
hard conditions like the model's own. The last stage trains on ``loss_of`` of the model's own output jet.
Each stage's loss is backpropagated before the next stage runs (its graph freed), one Adam moves the model
and the auxiliary networks.

The prediction is the model's own forward pass, ``task.model(x)``: the auxiliary networks only train.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..nn.jet_blocks import JetLayer, cut
from ..task import INPUT_DERIVATIVES, JET_BLOCKS, LOSS, JetBlockTask, Task
from .auglocal import AugLocalOptions, pyramid_depths, uniform_stages
from .backprop import scheduled_lr
from .base import Optimizer
from .local import Stage, stages, tail_length


class AugLocalJetsOptions(AugLocalOptions):
    """AugLocal's options: Adam's (``lr`` ...), ``stages``, ``aux_depth``, ``min_depth``, ``pyramid``, ``seed``."""


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def fresh_jet_copy(stage: nn.Module, model: nn.Module) -> nn.Module:
    """A copy of ``stage`` sharing nothing with ``model``, its dense layers re-initialised as the MLP's."""
    twin = copy.deepcopy(stage)
    own = {id(p) for p in model.parameters()}
    if any(id(p) in own for p in twin.parameters()):
        raise ValueError(f"a copy of {type(stage).__name__} shares parameters with the model")
    for layer in _linears(twin):
        nn.init.xavier_normal_(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return twin


def _bridge(pieces: list[nn.Module], width_out: int | None) -> list[nn.Module]:
    """``pieces`` with a dense read-out inserted wherever one's output width is not the next one's input width."""
    out: list[nn.Module] = []
    for piece in pieces:
        layers = _linears(piece)
        if layers and width_out is not None and width_out != layers[0].in_features:
            out.append(JetLayer(nn.Linear(width_out, layers[0].in_features), None))
        out.append(piece)
        width_out = layers[-1].out_features if layers else width_out
    return out


class AugLocalJets(Optimizer):
    """AugLocal's stages and auxiliary networks on a PINN's jets (see the module docstring)."""

    name = "auglocal_jets"
    needs = frozenset({LOSS, INPUT_DERIVATIVES, JET_BLOCKS})

    def __init__(self, options: AugLocalJetsOptions, total_steps: int):
        self.options = options
        self.total_steps = total_steps
        self.aux = nn.ModuleList()
        self.opt: torch.optim.Optimizer | None = None

    def depths(self) -> list[int]:
        o = self.options
        return pyramid_depths(len(self.stage_list), o.aux_depth, o.min_depth, o.pyramid)

    def bind(self, task: Task) -> None:
        assert isinstance(task, JetBlockTask)  # the needs check guarantees it
        blocks = list(task.jet_blocks())
        n_tail = tail_length(blocks)  # type: ignore[arg-type]  # jet blocks: JetCarry -> JetCarry
        self.model = task.model
        self.stage_list: list[Stage] = stages(blocks, count=self.options.stages, tail=n_tail)  # type: ignore[arg-type]
        self.tail = nn.Sequential(*blocks[len(blocks) - n_tail :])
        param = next(self.model.parameters())
        cuda = [param.device] if param.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.options.seed)
            self.aux = nn.ModuleList(self._aux_network(j) for j in range(len(self.stage_list) - 1))
        self.aux.to(device=param.device, dtype=param.dtype)
        o = self.options
        self.opt = torch.optim.Adam([*self.model.parameters(), *self.aux.parameters()], lr=o.lr, betas=o.betas,
                                    weight_decay=o.weight_decay)

    def _aux_network(self, j: int) -> nn.Module:
        picked = uniform_stages(j, len(self.stage_list), self.depths()[j])
        own = _linears(self.stage_list[j])
        pieces = [fresh_jet_copy(self.stage_list[s], self.model) for s in picked]
        return nn.Sequential(*_bridge(pieces, own[-1].out_features if own else None))

    def step(self, step: int, task: Task) -> dict[str, float]:
        assert isinstance(task, JetBlockTask) and self.opt is not None, "bind() the rule to a PINN task first"
        lr = scheduled_lr(self.options, step, self.total_steps)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        record: dict[str, float] = {}
        carry = task.jet_input()
        last = len(self.stage_list) - 1
        for j, stage in enumerate(self.stage_list):
            out = stage(cut(carry))  # value and derivative rows: functions of the inputs, constants in earlier parameters
            if j < last:
                local, _ = task.loss_of(self.tail(self.aux[j](out)).h)
                local.backward()  # frees this stage's graph before the next stage runs
                record[f"local_{j}"] = float(local.detach())
                carry = out
            else:
                loss, terms = task.loss_of(self.tail(out).h)
                loss.backward()
                record.update(terms)
                record["loss"] = float(loss.detach())
        self.opt.step()
        record["lr"] = lr
        return record

    def parameter_count(self) -> int:
        """Parameters of the auxiliary networks."""
        return sum(p.numel() for p in self.aux.parameters())

    def state_dict(self) -> dict[str, Any]:
        return {"aux": self.aux.state_dict(), "opt": self.opt.state_dict() if self.opt is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.aux.load_state_dict(state["aux"])
        if self.opt is not None and state.get("opt") is not None:
            self.opt.load_state_dict(state["opt"])


__all__ = ["AugLocalJets", "AugLocalJetsOptions", "fresh_jet_copy"]
