"""Synthetic gradients: decoupled stage updates (``synthetic_gradients``) and truncated backprop through time (``bptt``).

Paper: M. Jaderberg, W. M. Czarnecki, S. Osindero, O. Vinyals, A. Graves, D. Silver, K. Kavukcuoglu,
"Decoupled Neural Interfaces using Synthetic Gradients", ICML 2017. The mission's seed paper ("Fast & Slow
Learning: Incorporating Synthetic Gradients in Neural Memory Controllers") applies the same idea to long
sequences.

**Block-wise** (:class:`SyntheticGradients`, ``needs = {loss, blocks, inputs, targets}``). The model's blocks are
grouped into gradient-isolated stages (:func:`pdesolve.optim.local.stages`). After every stage but the last a
small *synthesizer* (a linear map for ``[N, C]`` features, a 1x1 convolution for ``[B, C, *space]`` features,
optionally with one hidden layer, its output layer zero-initialised so the first updates are zero, optionally
conditioned on the regression targets: cDNI) predicts ``dLoss/dh`` of each tensor the stage hands on (its
features ``h`` and the kept tensors that carry parameters' gradients, e.g. a U-Net's skips). The stage
back-propagates that *prediction* and updates at once (its own Adam), without waiting for later stages. The
next stage's backward (of its own synthetic gradient, or of the real loss for the last stage) then yields the
gradient at the boundary, which is the synthesizer's regression target (squared error): the bootstrapped
form of the paper. The regression loss is the task's criterion (mean squared or relative L2 error of a field),
the model's own forward is its prediction, and the reported ``loss`` is that criterion before the update.
Synthesizers predict the per-sample gradient (``N * dLoss/dh`` for a mean over ``N`` samples) so that their
targets do not shrink with the batch size.

**Through time** (:class:`BPTT`, ``needs = {loss, rollout}``). A :class:`RolloutTask`'s batch is a window of
``history + unroll`` frames; its loss is the mean criterion over ``unroll`` autoregressive steps of the
stepper applied to its own outputs. ``truncation: None`` is full backprop through time (the same gradient as
Adam on ``task.loss()``); ``truncation: k`` cuts the graph every ``k`` steps (the state is detached, each chunk
runs backward as soon as it is done, so only one chunk's activations are alive); the gradients of all chunks
are accumulated and the optimizer steps once per window. With ``synthetic: true`` a convolutional synthesizer
reads the state at each cut (and, conditioned, the true frames there and the fraction of the window left)
and predicts ``dL_future/dstate``; the chunk before the cut back-propagates it (``state.backward(synth)``), and
the synthesizer regresses the true gradient the following chunk sends back to its first state, which
includes that chunk's own bootstrapped synthetic gradient: the DNI paper's recurrent-network setting. The
synthesizer predicts and regresses in normalized units (per sample, per frame element, frame-scale units); the
injected gradient is ``synth_scale`` (lambda) times the prediction, so the bootstrapped target discounts every
further chunk by lambda; for ``synth_warmup`` steps the synthesizer trains without being injected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..nn.blocks import Block, Carry
from ..task import BLOCKS, INPUTS, LOSS, ROLLOUT, TARGETS, RolloutTask, SupervisedTask, Task, unrolled_loss
from .backprop import AdamOptions, scheduled_lr
from .base import Optimizer
from .local import Stage, StagewiseOptions, stages, tail_length

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


# ------------------------------------------------------------------------------------------- synthesizers
class Synthesizer(nn.Module):
    """Predicts a gradient shaped like ``like`` from that tensor (and ``context``: targets, truth frames).

    ``[N, C]`` tensors: linear maps (the context flattened); ``[B, C, *s]``: convolutions (the context
    resampled to ``s``). ``hidden`` 0 is one layer; otherwise one hidden ReLU layer of that width. The output
    layer starts at zero (the first synthetic gradients are zero, as in the paper).
    """

    def __init__(self, like: torch.Size, context: torch.Size | None, hidden: int = 0, kernel: int = 1, circular: bool = False):
        super().__init__()
        self.spatial = len(like) > 2
        c = like[1]
        if self.spatial:
            self.size = tuple(like[2:])
            extra = 0 if context is None else (context[1] if len(context) == len(like) else int(torch.Size(context[1:]).numel()))
            self.flat_context = context is not None and len(context) != len(like)
            conv = _CONV[len(like) - 2]
            pad = dict(padding=kernel // 2, padding_mode="circular" if circular else "zeros")
            if self.flat_context:
                raise ValueError(f"synthesizer for {tuple(like)}: context of shape {tuple(context)} has another rank")  # type: ignore[arg-type]
            layers: list[nn.Module] = [conv(c + extra, hidden, kernel, **pad), nn.ReLU()] if hidden else []
            layers.append(conv(hidden or c + extra, c, kernel, **pad))
        else:
            extra = 0 if context is None else int(torch.Size(context[1:]).numel())
            layers = [nn.Linear(c + extra, hidden), nn.ReLU()] if hidden else []
            layers.append(nn.Linear(hidden or c + extra, c))
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)  # type: ignore[arg-type]
        self.net = nn.Sequential(*layers)
        self.uses_context = context is not None

    def forward(self, h: Tensor, context: Tensor | None = None) -> Tensor:
        if self.uses_context:
            assert context is not None
            if not self.spatial:
                context = context.flatten(1)
            elif tuple(context.shape[2:]) != self.size:
                mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(self.size)]
                context = F.interpolate(context, size=self.size, mode=mode, align_corners=False)
            h = torch.cat([h, context.to(h.dtype)], dim=1)
        return self.net(h)


def _adam(params: Sequence[nn.Parameter], lr: float, betas: tuple[float, float], weight_decay: float = 0.0) -> torch.optim.Adam:
    return torch.optim.Adam(list(params), lr=lr, betas=betas, weight_decay=weight_decay)


def _schedule(o: Any) -> AdamOptions:
    return AdamOptions(lr=o.lr, betas=o.betas, warmup=o.warmup, schedule=o.schedule, min_lr=o.min_lr, steps=o.steps)


def _cosine(a: Tensor, b: Tensor) -> float:
    return float(F.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


# ------------------------------------------------------------------------------------------- block-wise DNI
class SyntheticGradientsOptions(StagewiseOptions):
    synth_lr: float | None = Field(None, gt=0, description="learning rate of the synthesizers (default: lr)")
    hidden: int = Field(0, ge=0, description="hidden width of the synthesizers (0: a linear map / 1x1 conv)")
    conditioned: bool = Field(True, description="synthesizers also read the targets (cDNI)")


class SyntheticGradients(Optimizer):
    """Decoupled stage updates with bootstrapped synthetic gradients (see the module docstring)."""

    name = "synthetic_gradients"
    needs = frozenset({LOSS, BLOCKS, INPUTS, TARGETS})

    def __init__(self, options: SyntheticGradientsOptions, total_steps: int):
        self.options, self.total_steps = options, total_steps
        self.synth = nn.ModuleList()  # one ModuleDict per boundary: carry slot ("0" = h, "k" = kept[k - 1]) -> synthesizer
        self.built = False
        self._pending: dict[str, Any] | None = None

    def bind(self, task: Task) -> None:
        blocks = list(task.blocks())
        n_tail = tail_length(blocks)
        self.stages: list[Stage] = stages(blocks, self.options.stages, n_tail)
        self.tail_blocks: list[Block] = blocks[len(blocks) - n_tail :]
        o = self.options
        self.opts = [_adam(s.parameters(), o.lr, o.betas, o.weight_decay) for s in self.stages]
        p = next(task.model.parameters())
        self.device, self.dtype = p.device, p.dtype

    def _build(self, x: Tensor, y: Tensor) -> None:
        """Create the synthesizers from one forward pass (which tensors leave each stage carrying gradients)."""
        o = self.options
        with torch.random.fork_rng(devices=[]):  # a fixed initialisation that leaves the global generator alone
            torch.manual_seed(o.seed)
            carry, slots = Carry(x), set[int]()
            for stage in self.stages[:-1]:
                carry = _leaf(carry, slots)
                out = stage(carry)
                tensors = (out.h, *out.kept)
                slots = {j for j, t in enumerate(tensors) if t.requires_grad}
                self.synth.append(nn.ModuleDict({
                    str(j): Synthesizer(tensors[j].shape, y.shape if o.conditioned else None, o.hidden) for j in sorted(slots)}))
                carry = out
        self.synth.to(device=self.device, dtype=self.dtype)
        self.synth_opt = _adam(self.synth.parameters(), o.synth_lr or o.lr, o.betas)
        self.built = True
        if self._pending is not None:
            self._load(self._pending)
            self._pending = None

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.synth.parameters())

    def step(self, step: int, task: Task) -> dict[str, float]:
        assert isinstance(task, SupervisedTask), "the needs check guarantees a supervised task"
        b = task.batch()
        x, y = b.inputs, b.targets
        with torch.enable_grad():
            if not self.built:
                self._build(x, y)
            lr = scheduled_lr(_schedule(self.options), step, self.total_steps)
            for opt in self.opts:
                for g in opt.param_groups:
                    g["lr"] = lr
            record: dict[str, float] = {}
            n = x.shape[0]
            carry, slots = Carry(x), set[int]()
            predicted: dict[int, Tensor] = {}  # the previous boundary's synthetic gradients (with their graph)
            self.synth_opt.zero_grad(set_to_none=True)
            last = len(self.stages) - 1
            for i, stage in enumerate(self.stages):
                inp = _leaf(carry, slots)
                out = stage(inp)
                self.opts[i].zero_grad(set_to_none=True)
                if i < last:
                    synths = self.synth[i]
                    tensors = (out.h, *out.kept)
                    outs, grads, current = [], [], {}
                    for key, s in synths.items():
                        j = int(key)
                        g = s(tensors[j].detach(), y)
                        current[j] = g
                        outs.append(tensors[j])
                        grads.append(g.detach() / n)
                    torch.autograd.backward(outs, grads)
                else:
                    final = out
                    for block in self.tail_blocks:  # the model's fixed output transform
                        final = block(final)
                    loss = task.criterion(final.h, y)
                    loss.backward()
                    record["loss"] = float(loss.detach())
                if i > 0:  # the true gradient at the previous boundary has arrived: train its synthesizers
                    inputs = (inp.h, *inp.kept)
                    mse, cos = [], []
                    for j, g in predicted.items():
                        target = inputs[j].grad
                        target = torch.zeros_like(g) if target is None else target * n
                        err = (g - target).square().mean()
                        err.backward()
                        mse.append(float(err.detach()))
                        cos.append(_cosine(g.detach(), target))
                    record[f"synthetic_mse_{i - 1}"] = sum(mse) / len(mse)
                    record[f"synthetic_cos_{i - 1}"] = sum(cos) / len(cos)
                self.opts[i].step()  # this stage updates now, before the later stages run
                if i < last:
                    predicted = current
                    slots = set(current)
                    carry = out
            self.synth_opt.step()
        record["lr"] = lr
        return record

    def state_dict(self) -> dict[str, Any]:
        if not self.built:
            return dict(self._pending or {})
        return {"synth": self.synth.state_dict(), "synth_opt": self.synth_opt.state_dict(),
                "opts": [o.state_dict() for o in self.opts]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self.built:
            self._load(state)
        else:
            self._pending = state
            for o, s in zip(self.opts, state["opts"], strict=True):
                o.load_state_dict(s)

    def _load(self, state: dict[str, Any]) -> None:
        self.synth.load_state_dict(state["synth"])
        self.synth_opt.load_state_dict(state["synth_opt"])
        for o, s in zip(self.opts, state["opts"], strict=True):
            o.load_state_dict(s)


def _leaf(carry: Carry, slots: set[int]) -> Carry:
    """``carry`` cut from the graph; the tensors in ``slots`` (0 = h, k = kept[k - 1]) become leaves that collect a gradient."""
    tensors = [t.detach() for t in (carry.h, *carry.kept)]
    for j in slots:
        tensors[j].requires_grad_(True)
    return Carry(tensors[0], tuple(tensors[1:]))


# ------------------------------------------------------------------------------------------- through time
class BPTTOptions(AdamOptions):
    truncation: int | None = Field(None, ge=1, description="steps per chunk of truncated BPTT (None: full BPTT)")
    synthetic: bool = Field(False, description="a synthesizer predicts the gradient of the future loss at every cut")
    synth_lr: float | None = Field(None, gt=0, description="learning rate of the synthesizer (default: lr)")
    synth_width: int = Field(16, ge=0, description="hidden channels of the synthesizer (0: one convolution)")
    synth_kernel: int = Field(3, ge=1, description="kernel size of the synthesizer's convolutions (odd)")
    synth_scale: float = Field(1.0, gt=0, le=1, description="lambda: the injected synthetic gradient is lambda * prediction, and "
                               "the bootstrapped target carries the next cut's injected gradient (a discount per chunk)")
    synth_warmup: int = Field(0, ge=0, description="first steps in which the synthesizer is trained but not injected")
    conditioned: bool = Field(True, description="the synthesizer also reads the true frames at the cut")
    seed: int = Field(0, description="seed of the synthesizer's initialisation")


class BPTT(Optimizer):
    """Backprop through an unrolled window: full, truncated, or truncated with synthetic gradients at the cuts.

    One Adam step per window: the chunks' gradients are accumulated (each chunk's graph is freed by its own
    backward, so truncation bounds the activation memory by one chunk).

    The synthesizer works in normalized units: its output ``o`` stands for the per-sample gradient of the rest of
    the window's loss with respect to the state in ``frame_scale`` units, times the number of elements of a
    frame (criteria are means over a frame's elements, so a step's gradient per element is about
    ``1 / elements``; the ``1 / unroll`` of the window's mean is kept, so ``o`` is of the order of the fraction of
    the window still to come). It is injected as ``synth_scale * o`` in state units; its regression target is
    the gradient the next chunk sends back to its first state (its own loss plus the next cut's injected
    gradient), in the same units.
    """

    name = "bptt"
    needs = frozenset({LOSS, ROLLOUT})

    def __init__(self, options: BPTTOptions, total_steps: int):
        self.options, self.total_steps = options, total_steps
        self.synth = nn.ModuleList()
        self.synth_opt: torch.optim.Optimizer | None = None
        self._pending: dict[str, Any] | None = None

    def bind(self, task: Task) -> None:
        o = self.options
        self.opt = torch.optim.Adam(task.model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        p = next(task.model.parameters())
        self.device, self.dtype = p.device, p.dtype

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.synth.parameters())

    def _build(self, task: RolloutTask, state: Tensor) -> None:
        o = self.options
        channels = state.shape[1] * state.shape[2]
        like = torch.Size((state.shape[0], channels, *state.shape[3:]))
        context = torch.Size((state.shape[0], channels * o.conditioned + 1, *state.shape[3:]))
        circular = bool(task.periodic) and all(task.periodic)
        with torch.random.fork_rng(devices=[]):  # a fixed initialisation that leaves the global generator alone
            torch.manual_seed(o.seed)
            self.synth.append(Synthesizer(like, context, o.synth_width, o.synth_kernel, circular))
        self.synth.to(device=self.device, dtype=self.dtype)
        self.synth_opt = _adam(self.synth.parameters(), o.synth_lr or o.lr, o.betas)
        if self._pending is not None:
            self.synth.load_state_dict(self._pending["synth"])
            self.synth_opt.load_state_dict(self._pending["synth_opt"])
            self._pending = None

    @staticmethod
    def _unit(task: RolloutTask, state: Tensor) -> Tensor | float:
        """State-unit gradient of one normalized synthesizer unit: ``1 / (batch * frame elements * scale)``."""
        elements = state[0, 0].numel()
        scale = task.frame_scale()
        unit = 1.0 / (state.shape[0] * elements)
        return unit if scale is None else unit / scale

    def _synthetic(self, task: RolloutTask, state: Tensor, truth: Tensor, left: float) -> Tensor:
        """The normalized prediction ``o`` of ``dL_future/dstate`` at a cut (``left``: fraction of the window still to come)."""
        scale = task.frame_scale()
        s, t = (state, truth) if scale is None else (state / scale, truth / scale)
        parts = [t.flatten(1, 2)] if self.options.conditioned else []
        parts.append(torch.full_like(s[:, :1, 0], left))
        return self.synth[0](s.flatten(1, 2), torch.cat(parts, dim=1)).view_as(state)

    def step(self, step: int, task: Task) -> dict[str, float]:
        assert isinstance(task, RolloutTask), "the needs check guarantees a rollout task"
        o = self.options
        lr = scheduled_lr(_schedule(o), step, self.total_steps)
        for g in self.opt.param_groups:
            g["lr"] = lr
        w = task.window()
        h, T = task.history, task.unroll
        k = o.truncation or T
        synthetic = o.synthetic and k < T
        inject = synthetic and step >= o.synth_warmup
        with torch.enable_grad():
            if synthetic and not len(self.synth):
                self._build(task, w[:, :h])
            self.opt.zero_grad(set_to_none=True)
            if self.synth_opt is not None:
                self.synth_opt.zero_grad(set_to_none=True)
            record: dict[str, float] = {}
            state = w[:, :h]
            unit = self._unit(task, state) if synthetic else 1.0
            total = 0.0
            cut: tuple[Tensor, Tensor, float] | None = None  # the previous cut: state, truth, fraction left
            mse, cos = [], []
            for first in range(0, T, k):
                count = min(k, T - first)
                start = state.detach().requires_grad_(cut is not None)
                end, loss = unrolled_loss(task, start, w, first, count)
                total += float(loss.detach())
                if synthetic and first + count < T:
                    here = (end.detach(), w[:, first + count : first + count + h], (T - first - count) / T)
                    with torch.no_grad():  # its graph is rebuilt when the target arrives: one chunk's graph alive at a time
                        g = self._synthetic(task, *here) * (o.synth_scale * unit)
                    if inject:
                        torch.autograd.backward([loss, end], [torch.ones_like(loss), g])
                    else:  # warm-up: the bootstrapped term reaches the target, not the parameters
                        if cut is not None:
                            (boot,) = torch.autograd.grad(end, start, g, retain_graph=True)
                        loss.backward()
                        if cut is not None:
                            start.grad = boot if start.grad is None else start.grad + boot
                else:
                    here = None
                    loss.backward()
                if cut is not None:  # the true gradient at the previous cut has arrived: the synthesizer's target
                    predicted = self._synthetic(task, *cut)
                    target = start.grad / unit if start.grad is not None else torch.zeros_like(predicted)
                    err = (predicted - target).square().mean()
                    err.backward()
                    mse.append(float(err.detach()))
                    cos.append(_cosine(predicted.detach(), target))
                cut = here
                state = end.detach()
            self.opt.step()
            if synthetic:
                assert self.synth_opt is not None
                self.synth_opt.step()
        record["loss"] = total
        record["lr"] = lr
        if mse:
            record["synthetic_mse"] = sum(mse) / len(mse)
            record["synthetic_cos"] = sum(cos) / len(cos)
        return record

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"opt": self.opt.state_dict()}
        if self.synth_opt is not None:
            out.update(synth=self.synth.state_dict(), synth_opt=self.synth_opt.state_dict())
        elif self._pending is not None:
            out.update(self._pending)
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state["opt"])
        if "synth" in state:
            if self.synth_opt is not None:
                self.synth.load_state_dict(state["synth"])
                self.synth_opt.load_state_dict(state["synth_opt"])
            else:
                self._pending = {"synth": state["synth"], "synth_opt": state["synth_opt"]}
