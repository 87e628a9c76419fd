"""The options of the ``pinn`` solver (``solvers.pinn`` in a problem file) and which of them fit a problem."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from ..nn import sparsity
from ..nn.features import CoordinateFeatures, FourierFeatures
from ..nn.gated import ModifiedMLP, PirateNet
from ..nn.mlp import Activation
from ..nn.rwf import factorize
from ..nn.shallow import NETWORKS
from ..nn.sparsity import SparsityOptions
from ..problem import Domain, Problem
from ..sampling import Sampler
from .pinn_marching import MarchingOptions
from .pinn_training import AdaptiveWeightsOptions, CausalOptions, CurriculumOptions, FourierOptions, RWFOptions

PINN_NETWORKS: dict[str, type[nn.Module]] = {**NETWORKS, "modified_mlp": ModifiedMLP, "piratenet": PirateNet}
"""``solvers.pinn.network`` -> the class; each takes ``(in_dim, out_dim, width, depth, act)`` and runs on tensors and jets."""

Network = Literal["mlp", "residual", "parallel", "modified_mlp", "piratenet"]
"""The names of :data:`PINN_NETWORKS`, for option models (``pinn``, and the hard-constraint solvers' backbone)."""

NETWORK_HELP = ("mlp: plain; residual: h + act(W h) per hidden layer; parallel: every hidden layer reads the first (Make Deep "
                "Networks Shallow Again; the same parameters as mlp at the same width and depth); modified_mlp: gated by two input "
                "encoders (Wang, Teng, Perdikaris 2021); piratenet: residual gated blocks with skip weights from 0 (Wang et al. 2024)")


def input_features(domain: Domain, periodic_modes: int, fourier: FourierOptions | None) -> CoordinateFeatures:
    """The coordinates' embedding a PINN-style network reads (``periodic_modes``, random Fourier features around it)."""
    features = CoordinateFeatures(domain, periodic_modes)
    if fourier is None:
        return features
    return FourierFeatures(features, fourier.count, fourier.sigma, fourier.seed)  # type: ignore[return-value]


def build_network(name: Network, in_dim: int, out_dim: int, width: int, depth: int, activation: Activation,
                  factorization: RWFOptions | None) -> nn.Module:
    """One of :data:`PINN_NETWORKS`, its dense layers factorized with ``factorization`` (random weight factorization)."""
    net = PINN_NETWORKS[name](in_dim, out_dim, width, depth, activation)
    if factorization is not None:
        factorize(net, factorization.mu, factorization.sigma, factorization.seed)
    return net


class PointsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    interior: int = Field(2540, gt=0, description="collocation points inside the space-time box")
    boundary: int = Field(80, ge=0, description="points on the walls (shared among soft wall conditions)")
    initial: int = Field(160, ge=0, description="points on the initial slice (when the IC is soft)")
    sampler: Sampler = "lhs"
    resample_every: int = Field(0, ge=0, description="draw fresh interior points every N steps (0: never)")


class RAROptions(BaseModel):
    """Residual-based adaptive refinement: add the worst points of a random candidate set."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    every: int = Field(0, ge=0, description="refine every N steps (0: off)")
    candidates: int = Field(20000, gt=0)
    add: int = Field(200, gt=0)
    until: int | None = Field(None, description="stop refining after this step (default: never)")


class WeightsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    residual: float = Field(1.0, ge=0)
    initial: float = Field(1.0, ge=0)
    boundary: float = Field(1.0, ge=0)


class PINNOptions(BaseModel):
    """Network: ``width``, ``depth``, ``activation``. Advanced: the rest."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    width: int = Field(20, gt=0)
    depth: int = Field(3, gt=0)
    activation: Activation = "tanh"
    network: Network = Field("mlp", description=NETWORK_HELP)
    sparsity: SparsityOptions | None = Field(None, description="N:M sparse hidden layers, e.g. {n: 2, m: 4, mode: consistent}")
    periodic_modes: int = Field(1, ge=1, description="Fourier modes per periodic axis in the input embedding")
    hard_constraints: bool = Field(True, description="enforce the IC and Dirichlet walls exactly by an output transform")
    dtype: Literal["float32", "float64"] = "float32"
    u_floor: float | None = Field(None, description="read u as max(u, u_floor) in the PDE residual (not in the conditions): for "
                                  "equations whose coefficients are fractional powers of u (diffusion-sorption), undefined below 0")
    compile: bool = Field(False, description="fuse the loss with torch.compile (needs a C++ compiler; ~1 min once)")
    points: PointsOptions = PointsOptions()
    rar: RAROptions = RAROptions()
    weights: WeightsOptions = WeightsOptions()
    fourier_features: FourierOptions | None = Field(None, description="random Fourier features of the non-periodic coordinates")
    weight_factorization: RWFOptions | None = Field(None, description="random weight factorization of every dense layer")
    causal: CausalOptions | None = Field(None, description="weight the residual by time chunks, respecting causality")
    adaptive_weights: AdaptiveWeightsOptions | None = Field(None, description="balance the loss terms by gradient norms or NTK traces")
    curriculum: CurriculumOptions | None = Field(None, description="ramp an equation parameter from an easy value")
    time_marching: MarchingOptions | None = Field(None, description="one network per time window, trained one after another")

    @model_validator(mode="after")
    def _check_sparsity(self) -> PINNOptions:
        sp = self.sparsity
        if sp is None:
            return self
        if not sparsity.derivative_consistent(sp):
            raise ValueError(f"sparsity.mode {sp.mode!r} is not derivative-consistent (its backward pass is not the derivative of "
                             "its forward map), and the PINN's residual needs derivatives of the function it evaluates; use mode: "
                             "consistent")
        if self.depth > 1 and self.width % sp.m:
            raise ValueError(f"sparsity.m={sp.m} must divide width={self.width} (the fan-in of the hidden layers); change width or "
                             "sparsity.m")
        if self.weight_factorization is not None:  # RWF would rebuild the layers from the masked weights and drop the masks
            raise ValueError("sparsity and weight_factorization cannot be combined (the factorization re-parametrizes the pruned "
                             "weights); choose one")
        return self


def option_mismatches(problem: Problem, options: PINNOptions) -> list[str]:
    """Why these PINN options do not fit ``problem`` (empty when they do)."""
    out = method_mismatches(problem, "solvers.pinn", causal=options.causal, curriculum=options.curriculum,
                            fourier_features=options.fourier_features)
    if options.time_marching is not None and problem.domain.time is None:
        out.append("solvers.pinn.time_marching marches in time, and the problem has no time axis")
    elif options.time_marching is not None and not options.hard_constraints:
        out.append("solvers.pinn.time_marching starts each window from the last one through the exact transform; set "
                   "solvers.pinn.hard_constraints: true")
    if options.weight_factorization is not None and options.sparsity is not None:
        out.append("solvers.pinn.weight_factorization and solvers.pinn.sparsity both rewrite the dense layers; choose one")
    if problem.domain.geometry is not None and "sampler" in options.points.model_fields_set:
        out.append(f"solvers.pinn.points.sampler: the domain's geometry draws its own points (its sample_interior and "
                   f"sample_boundary), so sampler {options.points.sampler!r} would not be used; drop it")
    return out


def method_mismatches(problem: Problem, key: str, *, causal: CausalOptions | None = None,
                      curriculum: CurriculumOptions | None = None, fourier_features: FourierOptions | None = None) -> list[str]:
    """Why the PINN's training methods, as options of a solver whose section is ``key`` (``solvers.pinn``,
    ``solvers.hc``), do not fit ``problem``: one message each, starting with its key path."""
    out = []
    if causal is not None and problem.domain.time is None:
        out.append(f"{key}.causal weights the residual over time, and the problem has no time axis")
    if curriculum is not None and curriculum.parameter not in problem.equation.parameters:
        out.append(f"{key}.curriculum.parameter: {curriculum.parameter!r} is not a parameter of the {problem.equation.name!r} "
                   f"equation (its parameters: {sorted(problem.equation.parameters)})")
    elif curriculum is not None:
        bad = problem.equation.parameters[curriculum.parameter].check(curriculum.start)
        if bad:
            out.append(f"{key}.curriculum.start: {bad}")
    if fourier_features is not None and all(a.periodic for a in problem.domain.space) and problem.domain.time is None:
        out.append(f"{key}.fourier_features embed non-periodic coordinates, and every axis of this problem is periodic")
    return out
