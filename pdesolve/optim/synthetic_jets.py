"""Synthetic gradients on a PINN (experimental): decoupled stage updates on input-derivative jets.

Jaderberg, Czarnecki, Osindero, Vinyals, Graves, Silver, Kavukcuoglu, "Decoupled Neural Interfaces using
Synthetic Gradients", ICML 2017 (supervised form: :class:`pdesolve.optim.synthetic.SyntheticGradients`).
Experimental: the paper trains classifiers and recurrent networks; the extension to physics-informed losses
is ours.

A PINN's loss is a PDE residual of the output's derivatives in the inputs, so a stage cannot hand the next one
plain features: the model runs block by block on *jets* (:mod:`pdesolve.nn.jet_blocks`), each feature's value
with its gradient and diagonal Hessian rows in the input coordinates. The jet blocks (the coordinate features
with the first layer, each later layer, the exact IC/BC transform as a parameter-free tail) are grouped into
``K`` stages (:func:`pdesolve.optim.local.stages`). At every boundary the jet is detached from the earlier
stages' parameters, not from the inputs: all its rows (value, gradient, Hessian) are the stage's output, and
they enter the next stage as leaves that collect the gradient the next stage sends back.

Regression form: after every stage but the last a *synthesizer* (a linear map of the jet rows stacked per
point, optionally with one hidden ReLU layer, optionally conditioned on the point's coordinates; its output
layer starts at zero, so the first synthetic gradients are zero) predicts ``N dLoss/d(rows)`` at the
boundary (``N`` points: the per-point gradient, which does not shrink with the point count). The stage
back-propagates its rows with that prediction divided by ``N`` and updates at once (its own Adam). The last
stage back-propagates the true loss, ``loss_of`` of the model's output jet (the PDE residual's mean square
plus the soft-condition terms). Each synthesizer regresses (squared error) the gradient that arrives at its
boundary from the next stage's backward, which is itself that stage's synthetic gradient except at the last
boundary: the paper's bootstrapped form. Every stage runs on the carry the previous stage computed before its
own update, so the reported ``loss`` is the loss of the model before this step's updates.

Our addition, the *gate*: Adam normalises the step, so an inaccurate synthetic gradient (at the start, or when the
residual shrinks below the synthesizer's absolute error) moves a stage as far as an accurate one. An earlier stage
therefore steps only while its synthesizer's running cosine with the arriving gradient (an exponential average over
earlier steps, ``gate_decay``) is at least ``gate``; its synthesizer trains on every step. Measured on the heat
PINN, ungated synthetic gradients stall far above the error of training the last stage alone, gated ones beat it
(tests/test_rule_synthetic_jets.py). ``delay`` holds the earlier stages for a fixed number of steps instead.

The prediction is the model's own forward pass, ``task.model(x)``; the synthesizers only train it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..nn.jet import Jet
from ..nn.jet_blocks import JetCarry
from ..task import INPUT_DERIVATIVES, JET_BLOCKS, LOSS, JetBlockTask, Task
from .backprop import scheduled_lr
from .base import Optimizer
from .local import Stage, StagewiseOptions, stages, tail_length


class SyntheticGradientsJetsOptions(StagewiseOptions):
    """Adam's options (``lr`` ...), ``stages``, ``seed``, and the synthesizers' ``synth_lr``, ``hidden``, ``conditioned``."""

    stages: int | None = Field(2, gt=0, description="gradient-isolated stages (None: one per layer; measured: more than 2 stall)")
    synth_lr: float | None = Field(None, gt=0, description="learning rate of the synthesizers (default: lr)")
    hidden: int = Field(64, ge=0, description="hidden width of the synthesizers (0: one linear map of the stacked jet rows)")
    conditioned: bool = Field(True, description="synthesizers also read the point coordinates")
    delay: int = Field(0, ge=0, description="steps during which only the last stage and the synthesizers train")
    gate: float | None = Field(0.5, ge=-1, le=1, description="an earlier stage updates only while its synthesizer's running cosine "
                               "with the arriving gradient is at least this (None: always)")
    gate_decay: float = Field(0.9, ge=0, lt=1, description="decay of that running cosine (an exponential average over steps)")


def rows(jet: Jet) -> list[Tensor]:
    """The jet's tensors in order: value ``[N, C]``, gradient rows ``[N, d, C]``, each higher order's rows ``[N, k, C]``."""
    return jet.rows()


def stacked(jet: Jet) -> Tensor:
    """The jet's rows stacked per point, ``[N, R C]``."""
    return torch.cat([jet.v.unsqueeze(1)] + jet.rows()[1:], dim=1).flatten(1)


def unstacked(flat: Tensor, jet: Jet) -> list[Tensor]:
    """``flat`` ``[N, R C]`` split into tensors shaped like :func:`rows` of ``jet``."""
    n, c = jet.v.shape[0], jet.v.shape[-1]
    sizes = [r.shape[1] for r in jet.rows()[1:]]
    r = flat.reshape(n, -1, c)
    return [r[:, 0], *r[:, 1:].split(sizes, dim=1)]


def coordinates(carry: JetCarry) -> Tensor:
    """The points ``[N, d]`` a carry is evaluated at (the values of its input-coordinate jets)."""
    return torch.stack([c.v for c in carry.inputs], dim=-1)


class JetSynthesizer(nn.Module):
    """Stacked jet rows ``[N, R C]`` (and the coordinates ``[N, d]``) -> a predicted gradient of the same rows."""

    def __init__(self, width: int, coords: int, hidden: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(width + coords, hidden), nn.ReLU()] if hidden else []
        layers.append(nn.Linear(hidden or width + coords, width))
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.net = nn.Sequential(*layers)
        self.coords = coords

    def forward(self, flat: Tensor, points: Tensor | None) -> Tensor:
        return self.net(torch.cat([flat, points], dim=1) if self.coords else flat)


def leaves(carry: JetCarry) -> JetCarry:
    """``carry`` whose features' jet is cut from the graph and made of leaves that collect the next stage's gradient."""
    j = carry.h
    return carry.with_h(j.map(lambda t: t.detach().requires_grad_(True)))


class SyntheticGradientsJets(Optimizer):
    """Block-wise decoupled neural interfaces on a PINN's jets (see the module docstring)."""

    name = "synthetic_gradients_jets"
    needs = frozenset({LOSS, INPUT_DERIVATIVES, JET_BLOCKS})

    def __init__(self, options: SyntheticGradientsJetsOptions, total_steps: int):
        self.options, self.total_steps = options, total_steps
        self.synth = nn.ModuleList()  # one synthesizer per boundary
        self.opts: list[torch.optim.Optimizer] = []
        self.synth_opt: torch.optim.Optimizer | None = None
        self.agreement: list[float] = []  # per boundary: running cosine of the prediction with the arriving gradient

    def bind(self, task: Task) -> None:
        assert isinstance(task, JetBlockTask)  # the needs check guarantees it
        blocks = list(task.jet_blocks())
        n_tail = tail_length(blocks)  # type: ignore[arg-type]  # jet blocks: JetCarry -> JetCarry
        self.stage_list: list[Stage] = stages(blocks, self.options.stages, n_tail)  # type: ignore[arg-type]
        self.tail = nn.Sequential(*blocks[len(blocks) - n_tail :])
        o = self.options
        self.opts = [torch.optim.Adam(s.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay) for s in self.stage_list]
        param = next(task.model.parameters())
        widths = []
        with torch.no_grad():  # each boundary's row count and width, from one pass at the current points
            carry = task.jet_input()
            d = carry.h.g.shape[1]
            for stage in self.stage_list[:-1]:
                carry = stage(carry)
                widths.append(stacked(carry.h).shape[1])
        cuda = [param.device] if param.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # a fixed initialisation that leaves the global generator alone
            torch.manual_seed(o.seed)
            self.synth = nn.ModuleList(JetSynthesizer(w, d if o.conditioned else 0, o.hidden) for w in widths)
        self.synth.to(device=param.device, dtype=param.dtype)
        self.synth_opt = torch.optim.Adam(self.synth.parameters(), lr=o.synth_lr or o.lr, betas=o.betas) if widths else None
        self.agreement = [0.0] * len(widths)

    def _set_lr(self, step: int) -> float:
        lr = scheduled_lr(self.options, step, self.total_steps)
        ratio = (self.options.synth_lr or self.options.lr) / self.options.lr
        for opt in self.opts:
            for g in opt.param_groups:
                g["lr"] = lr
        for g in self.synth_opt.param_groups if self.synth_opt is not None else []:
            g["lr"] = lr * ratio
        return lr

    def step(self, step: int, task: Task) -> dict[str, float]:
        assert isinstance(task, JetBlockTask) and self.opts, "bind() the rule to a PINN task first"
        lr = self._set_lr(step)
        record: dict[str, float] = {}
        if self.synth_opt is not None:
            self.synth_opt.zero_grad(set_to_none=True)
        carry = task.jet_input()
        n = carry.h.v.shape[0]
        points = coordinates(carry) if self.options.conditioned else None
        predicted: Tensor | None = None  # the previous boundary's prediction (with the synthesizer's graph)
        last = len(self.stage_list) - 1
        with torch.enable_grad():
            for i, stage in enumerate(self.stage_list):
                inp = leaves(carry) if i > 0 else carry  # the rows detached from earlier parameters, not from the inputs
                out = stage(inp)
                self.opts[i].zero_grad(set_to_none=True)
                if i < last:
                    guess = self.synth[i](stacked(out.h).detach(), points)
                    torch.autograd.backward(rows(out.h), [g.detach() / n for g in unstacked(guess, out.h)])
                else:
                    loss, terms = task.loss_of(self.tail(out).h)
                    loss.backward()
                    record.update(terms)
                    record["loss"] = float(loss.detach())
                if predicted is not None:  # the gradient at the previous boundary has arrived: the synthesizer's target
                    grads = [t.grad if t.grad is not None else torch.zeros_like(t) for t in rows(inp.h)]
                    target = torch.cat([grads[0].unsqueeze(1), *grads[1:]], dim=1).flatten(1) * n  # stacked() order
                    err = (predicted - target).square().mean()
                    err.backward()
                    cos = float(F.cosine_similarity(predicted.detach().flatten().double(), target.flatten().double(), dim=0))
                    record[f"synthetic_mse_{i - 1}"] = float(err.detach())
                    record[f"synthetic_cos_{i - 1}"] = cos
                    a = self.options.gate_decay
                    self.agreement[i - 1] = a * self.agreement[i - 1] + (1 - a) * cos
                trusted = i == last or self._trusted(i, step)
                if trusted:
                    self.opts[i].step()  # this stage updates now, before the later stages run
                if i < last:
                    record[f"updated_{i}"] = float(trusted)
                if i < last:
                    predicted, carry = guess, out
            if self.synth_opt is not None:
                self.synth_opt.step()
        record["lr"] = lr
        return record

    def _trusted(self, i: int, step: int) -> bool:
        """Whether stage ``i`` (not the last) updates with its synthetic gradient at ``step`` (delay and gate)."""
        gate = self.options.gate
        return step >= self.options.delay and (gate is None or self.agreement[i] >= gate)

    def parameter_count(self) -> int:
        """Parameters of the synthesizers."""
        return sum(p.numel() for p in self.synth.parameters())

    def state_dict(self) -> dict[str, Any]:
        return {"synth": self.synth.state_dict(), "synth_opt": self.synth_opt.state_dict() if self.synth_opt is not None else None,
                "opts": [o.state_dict() for o in self.opts], "agreement": list(self.agreement)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.synth.load_state_dict(state["synth"])
        if self.synth_opt is not None and state.get("synth_opt") is not None:
            self.synth_opt.load_state_dict(state["synth_opt"])
        for o, s in zip(self.opts, state["opts"], strict=True):
            o.load_state_dict(s)
        self.agreement = list(state["agreement"])


__all__ = ["JetSynthesizer", "SyntheticGradientsJets", "SyntheticGradientsJetsOptions"]
