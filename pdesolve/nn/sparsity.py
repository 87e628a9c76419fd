"""N:M structured sparse training of Linear and Conv layers (BDWP: Fang et al., "Efficient N:M Sparse DNN Training
Using Algorithm, Architecture, and Dataflow Co-Design", IEEE TCAD 2023, arXiv:2309.13015).

In every group of ``M`` consecutive weights along a layer's reduction dimension only the ``N`` of largest magnitude
take part in the product; N:M hardware (2:4 on Ampere tensor cores) skips the rest. The dense weights keep
training: the weight gradient is computed dense and passes the mask unchanged (straight-through), and the masks are
recomputed from the dense weights every ``refresh_every`` steps (:func:`before_step`, called from a task's
``before_step``), so pruned weights can come back.

Two modes, two parametrizations:

- ``bdwp`` (:class:`BDWP`, the paper's bidirectional weight pruning): the forward product ``W x`` uses ``W``
  pruned N:M along the input dimension (fan-in: input channels x kernel for a convolution), the backward product
  ``W^T g`` (the activation gradient) uses ``W`` pruned N:M along the *output* dimension, so that both matmuls have
  an N:M operand along their reduction dimension. The backward pass is then not the derivative of the forward
  map: **not derivative-consistent**.
- ``consistent`` (:class:`Consistent`): one mask, the forward one, both ways; the network is exactly the function
  it evaluates (input derivatives by autograd or by jets are exact), and only the forward product is N:M along
  its reduction dimension.

Both keep the masked weight behind ``layer.weight`` (a :mod:`torch.nn.utils.parametrize` parametrization), so
code that reads ``layer.weight`` (the PINN's jets) sees the weight the forward pass uses; BDWP also swaps the
layer for a subclass whose forward is a custom autograd function (the backward product with the other mask).
Masks are boolean buffers of the parametrization: they travel in the model's ``state_dict`` and checkpoints.

Which layers: every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` of a model (ungrouped), except, by default
(``layers: hidden``), the first and the last in module order: the input lift and the output head, whose fans are
the handful of coordinates or fields (the usual convention of N:M training, assumed here; ``layers: all`` prunes them
too where ``M`` divides their fans). A layer whose reduction dimension ``M`` does not divide is refused with its name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..errors import UserError


class SparsityError(UserError):
    """An N:M setting that cannot be applied to a model (a layer whose fan ``M`` does not divide)."""


class SparsityOptions(BaseModel):
    """``sparsity: {n: 2, m: 4, mode: consistent, refresh_every: 100}``: keep ``n`` of every ``m`` weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    n: int = Field(2, ge=1, description="weights kept in every group")
    m: int = Field(4, ge=2, description="group size (consecutive weights along the reduction dimension)")
    mode: Literal["consistent", "bdwp"] = Field(
        "consistent", description="consistent: one mask both ways (exact derivatives); bdwp: the transposed mask in the backward pass")
    refresh_every: int = Field(100, ge=1, description="recompute the masks from the dense weights every this many steps")
    layers: Literal["hidden", "all"] = Field("hidden", description="hidden: keep the first and last weight layer dense")

    @model_validator(mode="after")
    def _check(self) -> SparsityOptions:
        if self.n >= self.m:
            raise ValueError(f"n must be smaller than m (keep n of every m weights), got n={self.n}, m={self.m}")
        return self

    @property
    def density(self) -> float:
        return self.n / self.m


# ---------------------------------------------------------------------------------------------- masks
def nm_mask(weight: Tensor, n: int, m: int, dim: int = 1) -> Tensor:
    """Boolean mask of ``weight`` keeping the ``n`` largest magnitudes in every ``m`` consecutive entries of the
    flattened dimensions from ``dim`` on (``dim=1``: per output row, along fan-in = input channels x kernel)."""
    shape = weight.shape
    rows = weight.detach().abs().flatten(dim)  # [*lead, fan]
    fan = rows.shape[-1]
    if fan % m:
        raise ValueError(f"{m} does not divide the reduction size {fan}")
    groups = rows.reshape(*rows.shape[:-1], fan // m, m)
    keep = groups.topk(n, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(shape)


def forward_mask(weight: Tensor, n: int, m: int) -> Tensor:
    """N:M along fan-in (``weight [out, in, *kernel]``): the reduction dimension of ``W x``."""
    return nm_mask(weight, n, m, dim=1)


def backward_mask(weight: Tensor, n: int, m: int) -> Tensor:
    """N:M along the output dimension, for every (input channel, kernel tap): the reduction dimension of ``W^T g``."""
    moved = weight.movedim(0, -1)  # [in, *kernel, out]
    return nm_mask(moved, n, m, dim=moved.dim() - 1).movedim(-1, 0)


def straight_through(weight: Tensor, mask: Tensor) -> Tensor:
    """``weight * mask`` in value (exactly: kept entries are ``w + 0``, pruned ones ``w - w``); the gradient reaches the
    dense ``weight`` unmasked. Plain tensor operations, so ``torch.func`` transforms (vmap, jacrev, jvp) pass through."""
    return weight + (weight * mask - weight).detach()


class NMMask(nn.Module):
    """The parametrization of a layer's ``weight``: the dense weight times the forward N:M mask (a buffer).

    ``derivative_consistent``: whether the layer's backward pass is the derivative of its forward map.
    """

    derivative_consistent: ClassVar[bool]

    def __init__(self, weight: Tensor, n: int, m: int, refresh_every: int):
        super().__init__()
        self.n, self.m, self.refresh_every = n, m, refresh_every
        self.register_buffer("mask", forward_mask(weight, n, m))

    def forward(self, weight: Tensor) -> Tensor:
        return straight_through(weight, self.mask)

    @torch.no_grad()
    def refresh(self, dense: Tensor) -> None:
        """Recompute the masks from the dense weight."""
        self.mask.copy_(forward_mask(dense, self.n, self.m))


class Consistent(NMMask):
    """One N:M mask both ways: the layer is the function it evaluates."""

    derivative_consistent = True


class BDWP(NMMask):
    """Forward mask N:M along fan-in, backward mask N:M along the outputs (``backward_mask`` buffer)."""

    derivative_consistent = False

    def __init__(self, weight: Tensor, n: int, m: int, refresh_every: int):
        super().__init__(weight, n, m, refresh_every)
        self.register_buffer("backward", backward_mask(weight, n, m))

    @torch.no_grad()
    def refresh(self, dense: Tensor) -> None:
        super().refresh(dense)
        self.backward.copy_(backward_mask(dense, self.n, self.m))


MODES: dict[str, type[NMMask]] = {"consistent": Consistent, "bdwp": BDWP}


def derivative_consistent(options: SparsityOptions | None) -> bool:
    """Whether a model sparsified with ``options`` (None: dense) is differentiated exactly by its backward pass."""
    return options is None or MODES[options.mode].derivative_consistent


# ---------------------------------------------------------------------------------------------- BDWP layers
class _BDWPLinear(torch.autograd.Function):
    """``x Wf^T + b`` forward; ``grad_x = g (W * backward mask)``, ``grad_W = g^T x`` dense, ``grad_b = sum g``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, backward_weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, backward_weight)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        x, wb = ctx.saved_tensors
        gx = g @ wb if ctx.needs_input_grad[0] else None
        gw = g.flatten(0, -2).T @ x.flatten(0, -2) if ctx.needs_input_grad[1] else None
        gb = g.flatten(0, -2).sum(0) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return gx, gw, None, gb


_CONV = {1: (F.conv1d, torch.nn.grad.conv1d_input, torch.nn.grad.conv1d_weight),
         2: (F.conv2d, torch.nn.grad.conv2d_input, torch.nn.grad.conv2d_weight),
         3: (F.conv3d, torch.nn.grad.conv3d_input, torch.nn.grad.conv3d_weight)}


class _BDWPConv(torch.autograd.Function):
    """A convolution whose input gradient uses the backward-masked weight (the weight gradient stays dense)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, backward_weight: Tensor, bias: Tensor | None, stride: Any, padding: Any,
                dilation: Any) -> Tensor:
        ctx.save_for_backward(x, backward_weight)
        ctx.conf = (stride, padding, dilation)
        ctx.has_bias = bias is not None
        return _CONV[weight.dim() - 2][0](x, weight, bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        x, wb = ctx.saved_tensors
        stride, padding, dilation = ctx.conf
        _, grad_input, grad_weight = _CONV[wb.dim() - 2]
        gx = grad_input(x.shape, wb, g, stride, padding, dilation) if ctx.needs_input_grad[0] else None
        gw = grad_weight(x, wb.shape, g, stride, padding, dilation) if ctx.needs_input_grad[1] else None
        gb = g.sum(dim=[0, *range(2, g.dim())]) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return gx, gw, None, gb, None, None, None


def _bdwp_weights(layer: nn.Module) -> tuple[Tensor, Tensor]:
    """The forward (masked, straight-through) weight and the backward-masked weight (no gradient) of a BDWP layer."""
    mask: BDWP = layer.parametrizations.weight[0]  # type: ignore[union-attr, index, assignment]
    dense = layer.parametrizations.weight.original  # type: ignore[union-attr]
    return layer.weight, (dense * mask.backward).detach()  # type: ignore[return-value]


class BDWPLinear(nn.Linear):
    """``nn.Linear`` whose backward product uses the transposed-pruned weight (same parameters, same state keys)."""

    def forward(self, x: Tensor) -> Tensor:
        wf, wb = _bdwp_weights(self)
        return _BDWPLinear.apply(x, wf, wb, self.bias)


class _BDWPConvMixin:
    def forward(self, x: Tensor) -> Tensor:
        if self.padding_mode != "zeros" or self.groups != 1 or isinstance(self.padding, str):  # type: ignore[attr-defined]
            raise RuntimeError("BDWP convolutions support zero padding given as numbers and groups=1")
        wf, wb = _bdwp_weights(self)  # type: ignore[arg-type]
        return _BDWPConv.apply(x, wf, wb, self.bias, self.stride, self.padding, self.dilation)  # type: ignore[attr-defined]


class BDWPConv1d(_BDWPConvMixin, nn.Conv1d):
    pass


class BDWPConv2d(_BDWPConvMixin, nn.Conv2d):
    pass


class BDWPConv3d(_BDWPConvMixin, nn.Conv3d):
    pass


_BDWP_CLASS: dict[type[nn.Module], type[nn.Module]] = {nn.Linear: BDWPLinear, nn.Conv1d: BDWPConv1d, nn.Conv2d: BDWPConv2d,
                                                      nn.Conv3d: BDWPConv3d}
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _as_bdwp(layer: nn.Module) -> nn.Module:
    """The same parameters (shared, not copied) in the BDWP subclass of the layer's class."""
    cls = next(new for old, new in _BDWP_CLASS.items() if isinstance(layer, old))
    if isinstance(layer, nn.Linear):
        new = BDWPLinear(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
    else:
        conv: Any = layer
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,  # type: ignore[call-arg]
                  dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None, padding_mode=conv.padding_mode, device="meta")
    new.weight = layer.weight  # type: ignore[assignment]
    new.bias = layer.bias  # type: ignore[assignment]
    new.train(layer.training)
    return new


# ---------------------------------------------------------------------------------------------- applying it
@dataclass(frozen=True)
class SparseLayer:
    """One sparsified layer: its name in the model, its dense fan-in and output size."""

    name: str
    fan_in: int
    fan_out: int


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's Linear and Conv layers in module order (names as in ``named_modules``)."""
    return [(name, mod) for name, mod in model.named_modules() if isinstance(mod, WEIGHT_LAYERS)]


def chosen_layers(model: nn.Module, options: SparsityOptions) -> list[tuple[str, nn.Module]]:
    """The layers ``options.layers`` selects (hidden: all but the first and the last)."""
    layers = weight_layers(model)
    return layers[1:-1] if options.layers == "hidden" else layers


def check(model: nn.Module, options: SparsityOptions, shown: int = 3) -> list[str]:
    """Why ``options`` cannot sparsify ``model`` (the first ``shown`` layers by name, then a count; empty when it can)."""
    layers = chosen_layers(model, options)
    if not layers:
        return [f"N:M sparsity found no {options.layers} Linear/Conv layer to prune (the model has {len(weight_layers(model))})"]
    out = []
    for name, layer in layers:
        w = layer.weight
        fan_in = w[0].numel()
        if fan_in % options.m:
            out.append(f"layer {name!r} has fan-in {fan_in} (inputs x kernel), not a multiple of m={options.m}")
        if options.mode == "bdwp" and w.shape[0] % options.m:
            out.append(f"layer {name!r} has {w.shape[0]} outputs, not a multiple of m={options.m} (bdwp prunes the transposed "
                       "weight along the outputs)")
        if isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Conv3d) and layer.groups != 1:
            out.append(f"layer {name!r} is a grouped convolution; N:M sparsity supports groups=1")
    if len(out) > shown:
        out = out[:shown] + [f"and {len(out) - shown} more such problems"]
    return out + ["change the width (channel counts) or sparsity.m"] if out else []


def sparsify(model: nn.Module, options: SparsityOptions, owner: str = "model") -> list[SparseLayer]:
    """Put the N:M parametrization of ``options.mode`` on the chosen layers of ``model`` (in place); their list.

    Raises :class:`SparsityError` naming every layer it cannot prune. Call before an optimizer sees the
    parameters (the dense weights move into ``layer.parametrizations.weight.original``).
    """
    problems = check(model, options)
    if problems:
        raise SparsityError(f"{owner}: " + "; ".join(problems))
    kind = MODES[options.mode]
    out = []
    for name, layer in chosen_layers(model, options):
        if options.mode == "bdwp":
            parent_name, _, child = name.rpartition(".")
            layer = _as_bdwp(layer)
            setattr(model.get_submodule(parent_name), child, layer)
        parametrize.register_parametrization(layer, "weight", kind(layer.weight, options.n, options.m, options.refresh_every))
        w = layer.weight
        out.append(SparseLayer(name, w[0].numel(), w.shape[0]))
    return out


def masks(model: nn.Module) -> list[tuple[nn.Module, NMMask]]:
    """(layer, parametrization) of every N:M layer of ``model``."""
    out = []
    for layer in model.modules():
        if parametrize.is_parametrized(layer, "weight"):
            for p in layer.parametrizations.weight:  # type: ignore[union-attr]
                if isinstance(p, NMMask):
                    out.append((layer, p))
    return out


def refresh(model: nn.Module) -> None:
    """Recompute every N:M mask of ``model`` from its dense weights."""
    for layer, mask in masks(model):
        mask.refresh(layer.parametrizations.weight.original)  # type: ignore[union-attr]


def before_step(model: nn.Module, step: int) -> None:
    """The mask schedule: refresh every layer's masks at steps that are multiples of its ``refresh_every`` (not step 0:
    the masks of a new model are those of its initial weights). Tasks call it from their ``before_step``."""
    for layer, mask in masks(model):
        if step and step % mask.refresh_every == 0:
            mask.refresh(layer.parametrizations.weight.original)  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------- FLOPs
@dataclass(frozen=True)
class Flops:
    """Multiply-add FLOPs of one training step in the weight layers (2 per multiply-add), dense and at N/M density.

    ``forward``: ``W x``; ``input_grad``: ``W^T g``; ``weight_grad``: ``g x^T`` (always dense). ``sparse_*``: the
    same with the N:M-structured products at density N/M: the forward product in both modes, the input-gradient
    product in bdwp only (in consistent mode ``W^T`` has density N/M but no N:M structure along its reduction
    dimension, so N:M hardware cannot skip it).
    """

    forward: float
    input_grad: float
    weight_grad: float
    sparse_forward: float
    sparse_input_grad: float

    @property
    def dense_total(self) -> float:
        return self.forward + self.input_grad + self.weight_grad

    @property
    def sparse_total(self) -> float:
        return self.sparse_forward + self.sparse_input_grad + self.weight_grad

    def describe(self) -> dict[str, float]:
        return {"forward": self.forward, "input_grad": self.input_grad, "weight_grad": self.weight_grad,
                "sparse_forward": self.sparse_forward, "sparse_input_grad": self.sparse_input_grad,
                "forward_saving": 1 - self.sparse_forward / self.forward,
                "step_saving": 1 - self.sparse_total / self.dense_total}


def training_flops(model: nn.Module, run: Callable[[], Any], options: SparsityOptions) -> Flops:
    """Count the weight-layer FLOPs of one call of ``run`` (a forward pass through ``model`` by its modules' forward).

    Each Linear/Conv layer costs ``2 x outputs x fan-in`` per product; the layers :func:`chosen_layers` picks are
    the sparse ones. For a forward pass that reads ``layer.weight`` without calling the layer (a jet), count with
    :func:`jet_flops`.
    """
    sparse = {id(m) for _, m in chosen_layers(model, options)}
    counts: list[tuple[float, bool]] = []

    def hook(mod: nn.Module, _inputs: Any, out: Tensor) -> None:
        counts.append((2.0 * out.numel() * mod.weight[0].numel(), id(mod) in sparse))  # type: ignore[index]

    handles = [m.register_forward_hook(hook) for _, m in weight_layers(model)]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return _flops(counts, options)


def jet_flops(model: nn.Module, rows: int, options: SparsityOptions) -> Flops:
    """FLOPs of a jet pass through the Linear layers of ``model`` with ``rows`` stacked rows (points x (1 + d + k))."""
    sparse = {id(m) for _, m in chosen_layers(model, options)}
    counts = [(2.0 * rows * m.weight.numel(), id(m) in sparse) for _, m in weight_layers(model)]
    return _flops(counts, options)


def _flops(counts: list[tuple[float, bool]], options: SparsityOptions) -> Flops:
    total = sum(c for c, _ in counts)
    sparse = sum(c for c, s in counts if s)
    rho = options.density
    input_grad_sparse = total - sparse * (1 - rho) if options.mode == "bdwp" else total
    return Flops(total, total, total, total - sparse * (1 - rho), input_grad_sparse)
