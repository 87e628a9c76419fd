"""PINN training methods that act on the loss: causal weighting, adaptive term weights, parameter curriculum.

Each is an option of the ``pinn`` solver (causal weights and the curriculum of ``hc`` / ``moe_hc`` too, causal and
adaptive weights of ``lpinn``), holds what it changes during training in the task's state (so a
resumed run continues exactly), and reports what it did as history columns (drawn in ``history.png``).

- :class:`CausalWeights` (Wang, Sankaran, Perdikaris, "Respecting causality is all you need for training
  physics-informed neural networks", 2022): the residual loss per time chunk, ``L_i``, weighted by
  ``w_i = exp(-eps sum_{k<i} L_k)`` (no gradient through ``w``): a later time counts only once every earlier
  time is resolved, the remedy for PINNs that fit a wrong solution that satisfies the PDE late in time
  (Allen-Cahn, Kuramoto-Sivashinsky). The tolerance ``eps`` steps up its schedule when every weight
  exceeds ``threshold`` (the paper's annealing).
- :class:`AdaptiveWeights`: the loss terms' weights set every ``every`` steps so that no term dominates the
  gradient: ``grad_norm`` (learning-rate annealing, Wang, Teng, Perdikaris, "Understanding and mitigating
  gradient flow pathologies in PINNs", 2021, in the sum-of-norms form of JAX-PI: ``lambda_i = sum_j |g_j| /
  |g_i|``) or ``ntk`` (Wang, Yu, Perdikaris, "When and why PINNs fail to train: a neural tangent kernel
  perspective", 2022: ``lambda_i = sum_j tr K_j / tr K_i``, the traces estimated without per-point gradients:
  for random signs ``s``, ``E |grad (s . v)|^2 = sum_p |grad v_p|^2``); smoothed by ``momentum``.
- :class:`Curriculum` (Krishnapriyan et al., "Characterizing possible failure modes in physics-informed
  neural networks", NeurIPS 2021): an equation parameter trained at an easy value first, then in ``stages``
  equal stages towards the problem's, which it reaches at step ``steps`` and keeps (a function of the step:
  nothing to save).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from ..plot import CAUSAL_WEIGHT_COLUMN  # the history columns of the chunks' weights, causal_w_00, ...


class FourierOptions(BaseModel):
    """``solvers.pinn.fourier_features`` (and ``hc``'s): random Fourier features (:class:`pdesolve.nn.features.FourierFeatures`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    count: int = Field(64, ge=1, description="frequencies (each gives a cosine and a sine feature)")
    sigma: float = Field(1.0, gt=0, description="standard deviation of the frequencies, per unit of the coordinates scaled to [-1, 1]")
    seed: int = Field(0, description="seed of the frequencies")


class RWFOptions(BaseModel):
    """``solvers.pinn.weight_factorization`` (and ``hc``'s): random weight factorization (:mod:`pdesolve.nn.rwf`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mu: float = Field(1.0, description="mean of the log-scales at initialisation")
    sigma: float = Field(0.1, ge=0, description="their standard deviation")
    seed: int = Field(0, description="seed of the log-scales")


class CausalOptions(BaseModel):
    """``solvers.pinn.causal`` (and ``lpinn``'s, ``hc``'s): residual weights that respect causality in time."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    chunks: int = Field(32, ge=2, description="time chunks the residual points are grouped into")
    tolerances: list[float] = Field([1e-2, 1e-1, 1.0, 10.0, 100.0], min_length=1, description="the causality tolerance schedule eps")
    threshold: float = Field(0.99, gt=0, le=1, description="step to the next tolerance when every chunk's weight exceeds this")

    @model_validator(mode="after")
    def _positive(self) -> CausalOptions:
        if any(not (e > 0 and math.isfinite(e)) for e in self.tolerances):
            raise ValueError(f"tolerances: expected positive finite numbers, got {self.tolerances}")
        return self


class AdaptiveWeightsOptions(BaseModel):
    """``solvers.pinn.adaptive_weights``: loss-term weights balanced by gradient norms or NTK traces."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: Literal["grad_norm", "ntk"] = "grad_norm"
    every: int = Field(100, ge=1, description="update the weights every N steps")
    momentum: float = Field(0.9, ge=0, lt=1, description="weight of the previous weights in the running average")
    probes: int = Field(4, ge=1, description="random-sign probes per term for the NTK trace estimate")


class CurriculumOptions(BaseModel):
    """``solvers.pinn.curriculum`` (and ``hc``'s): an equation parameter ramped from ``start`` to the problem's value."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    parameter: str = Field(description="the equation parameter to ramp (e.g. beta)")
    start: float = Field(description="its value at step 0")
    steps: int = Field(ge=1, description="training steps over which it reaches the problem's value")
    stages: int = Field(5, ge=1, description="equal stages of the ramp")
    scale: Literal["linear", "log"] = Field("linear", description="stages equal in the value or in its logarithm")


class CausalWeights:
    """Per-chunk residual losses and their causal weights over one interval ``[t0, t1]``."""

    def __init__(self, options: CausalOptions, t0: float, t1: float):
        self.options, self.t0, self.t1 = options, t0, t1
        self.level = 0
        self.weights: Tensor | None = None  # the last step's weights, [chunks]

    @property
    def eps(self) -> float:
        return self.options.tolerances[self.level]

    def chunk_of(self, t: Tensor) -> Tensor:
        """The chunk index of each time ``[N]``."""
        m = self.options.chunks
        return ((t - self.t0) * (m / (self.t1 - self.t0))).floor().long().clamp(0, m - 1)

    def loss(self, r2: Tensor, chunk: Tensor) -> Tensor:
        """The causally weighted residual loss from the squared residual per point ``r2 [N]`` and its chunks."""
        return self.losses(r2.unsqueeze(-1), chunk)[0]

    def losses(self, r2: Tensor, chunk: Tensor, count: Tensor | None = None,
               reduce: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Several residual terms weighted alike, ``[T]``, from their squares per point ``r2 [N, T]``: each chunk's
        weight comes from the sum of all terms in the earlier chunks (a two-branch residual, as LPINN's, is causal
        as one). ``count [N]``: how much each point counts in its chunk's mean (default 1; 0 drops a point).

        ``reduce``: the sum over the ranks that hold the other points (no gradient; hc's ``distributed``). The
        chunks' counts and weights are then those of all points, and the ranks' returned shares add up to the
        loss of all points."""
        m = self.options.chunks
        ones = torch.ones_like(r2[:, 0]) if count is None else count
        counts = torch.zeros(m, dtype=r2.dtype, device=r2.device).index_add_(0, chunk, ones)
        counts = (counts if reduce is None else reduce(counts)).clamp_min(1)
        per_chunk = torch.zeros(m, r2.shape[1], dtype=r2.dtype, device=r2.device).index_add_(0, chunk, r2) / counts[:, None]
        with torch.no_grad():
            total = per_chunk.sum(1) if reduce is None else reduce(per_chunk.sum(1))
            before = torch.cumsum(total, 0) - total  # sum over the earlier chunks
            w = torch.exp(-self.eps * before)
        self.weights = w
        return (w[:, None] * per_chunk).mean(0)

    def after_step(self) -> None:
        """Anneal: the next tolerance once every chunk counts (the last step's weights all above the threshold)."""
        if self.weights is not None and float(self.weights.min()) > self.options.threshold \
                and self.level + 1 < len(self.options.tolerances):
            self.level += 1

    def record(self) -> dict[str, float]:
        """The tolerance, the smallest weight, and every chunk's weight (``causal_w_00``, ... from the earliest chunk:
        the run folder's ``causal_weights.png`` draws them over the steps)."""
        w = self.weights
        if w is None:
            return {}
        chunks = {f"{CAUSAL_WEIGHT_COLUMN}{i:02d}": v for i, v in enumerate(w.tolist())}
        return {"causal_eps": self.eps, "causal_min_weight": float(w.min()), **chunks}

    def state_dict(self) -> dict[str, Any]:
        return {"level": self.level, "weights": self.weights}  # the weights: the next step's annealing reads them

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.level = int(state["level"])
        self.weights = state["weights"]


class AdaptiveWeights:
    """Running weights of the loss terms, updated from the terms' gradients every ``every`` steps."""

    def __init__(self, options: AdaptiveWeightsOptions, names: Sequence[str], base: Tensor):
        self.options, self.names = options, list(names)
        self.weights = base.clone()

    def due(self, step: int) -> bool:
        return step % self.options.every == 0

    def update(self, params: list[Tensor], per_point: list[Tensor], terms: Tensor, seed: int) -> None:
        """New weights from the terms (``grad_norm``) or the per-point values of each term (``ntk``)."""
        if len(self.names) < 2:
            return  # one term: nothing to balance
        size = []
        if self.options.method == "grad_norm":
            for i in range(len(self.names)):
                grads = torch.autograd.grad(terms[i], params, retain_graph=True, allow_unused=True)
                size.append(torch.sqrt(sum((g * g).sum() for g in grads if g is not None)))
        else:
            gen = torch.Generator(device=terms.device).manual_seed(seed)
            for v in per_point:
                flat = v.reshape(-1)
                trace = terms.new_zeros(())
                for _ in range(self.options.probes):
                    signs = torch.randint(0, 2, flat.shape, generator=gen, device=flat.device).to(flat) * 2 - 1
                    grads = torch.autograd.grad((signs * flat).sum(), params, retain_graph=True, allow_unused=True)
                    trace = trace + sum((g * g).sum() for g in grads if g is not None)
                size.append(trace / (self.options.probes * flat.numel()))
        sizes = torch.stack(size).detach().to(self.weights)
        # a term whose gradient vanishes (a penalty that is inactive, relu(-x) with every x > 0) has no scale to balance:
        # it keeps its weight, where sum / 0 would send it to 1e30 and the loss to NaN at its next activation
        active = sizes > 1e-12 * sizes.max()
        if not bool(active.any()):
            return
        new = torch.where(active, sizes[active].sum() / sizes.clamp_min(1e-30), self.weights)
        m = self.options.momentum
        self.weights = m * self.weights + (1 - m) * new

    def record(self) -> dict[str, float]:
        return {f"weight_{n}": float(w) for n, w in zip(self.names, self.weights)}

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights.cpu()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.weights = state["weights"].to(self.weights)


class Curriculum:
    """The value of one equation parameter at each step."""

    def __init__(self, options: CurriculumOptions, target: float):
        self.options, self.target = options, target
        if options.scale == "log" and (options.start <= 0 or target <= 0):
            raise ValueError(f"curriculum.scale: 'log' needs positive values, got start {options.start} and target {target}")

    def value(self, step: int) -> float:
        o = self.options
        frac = 1.0 if step >= o.steps else (step * o.stages // o.steps) / o.stages  # start, ..., then the target from `steps` on
        if o.scale == "log":
            return math.exp(math.log(o.start) + frac * (math.log(self.target) - math.log(o.start)))
        return o.start + frac * (self.target - o.start)
