"""A PINN over a parametric family: a hypernetwork maps the PDE parameters to the PINN's weights.

``solver: hyper_pinn`` solves a problem whose parameters span ranges (``params: {beta: {range: [1, 30]}}``) in one
training run: each step draws ``samples`` parameter values (uniform in each range's scale) and ``points``
collocation points per value; the hypernetwork (:mod:`pdesolve.nn.hypernet`, naive or magnitude invariant as in
Ortiz, Guttag and Dalca, ICLR 2024) gives each value its own primary-network weights, and the loss is the mean
square PDE residual over the whole batch, the equation's ``residual`` read with per-point parameter values. The
primary network is the PINN's (coordinate features with periodic embeddings, the exact initial / Dirichlet
transform :class:`~pdesolve.nn.hard.HardConstraint`, forward jets) with per-sample weights, run as batched
matmuls. The run is scored on held-out members of the family (:mod:`pdesolve.parametric`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from .. import sampling
from ..distributed import Ranks
from ..grid import Grid
from ..nn.features import CoordinateFeatures
from ..nn.hard import HardConstraint
from ..nn.hypernet import Encoding, HyperNetwork, Weights, batched_mlp, batched_mlp_jet
from ..nn.jet import Jet, JetDerivatives
from ..nn.mlp import Activation, activation
from ..parametric import ParametricSolver
from ..problem import Problem
from ..sampling import Sampler
from ..solution import Solution
from ..task import Task
from .base import PointSolver, pointwise_mismatches

if TYPE_CHECKING:
    from ..simulate.family import InitialConditionFamily


class HyperPINNOptions(BaseModel):
    """Primary network: ``width``, ``depth``, ``activation``; hypernetwork: ``encoding``, ``hyper_width``, ``hyper_depth``;
    batch: ``samples`` parameter values x ``points`` collocation points each."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    encoding: Encoding = Field("mip", description="mip: magnitude invariant (unit-norm input, theta0 + delta); naive: raw values in")
    width: int = Field(32, gt=0, description="primary PINN: units per hidden layer")
    depth: int = Field(3, gt=0, description="primary PINN: hidden layers")
    activation: Activation = "tanh"
    periodic_modes: int = Field(1, ge=1, description="Fourier modes per periodic axis in the input embedding")
    hyper_width: int = Field(64, gt=0, description="hypernetwork: units per hidden layer")
    hyper_depth: int = Field(2, gt=0, description="hypernetwork: hidden layers")
    samples: int = Field(8, gt=0, description="parameter values per batch")
    points: int = Field(256, gt=0, description="collocation points per parameter value")
    sampler: Sampler = Field("lhs", description="how the batch's points are drawn (one design over all its samples)")
    dtype: Literal["float32", "float64"] = "float32"


class HyperPINNModel(nn.Module):
    """(coordinates, parameters) -> fields: the hypernetwork's weights run the primary PINN, exact transform applied."""

    def __init__(self, problem: Problem, options: HyperPINNOptions):
        super().__init__()
        self.ranges = dict(problem.ranges)
        self.features = CoordinateFeatures(problem.domain, options.periodic_modes)
        sizes = [self.features.size] + [options.width] * options.depth + [len(problem.equation.fields)]
        self.hyper = HyperNetwork(len(self.ranges), sizes, options.hyper_width, options.hyper_depth, options.encoding)
        self.hard = HardConstraint(problem)
        self.act, self.jet_act = activation(options.activation)
        self.hess = slice(1 if problem.domain.time is not None else 0, len(problem.domain.names))

    def unit(self, values: Tensor) -> Tensor:
        """``[S, P]`` parameter values -> their coordinates in [0, 1] (each range's scale)."""
        cols = []
        for j, r in enumerate(self.ranges.values()):
            v = values[:, j]
            cols.append((v.log() - np.log(r.lo)) / (np.log(r.hi) - np.log(r.lo)) if r.scale == "log" else (v - r.lo) / (r.hi - r.lo))
        return torch.stack(cols, dim=-1)

    def weights(self, values: Tensor) -> Weights:
        """The primary network's weights for each row of ``values`` ``[S, P]`` (ordered as ``problem.ranges``)."""
        return self.hyper(values, self.unit(values))

    def jet(self, coords: Tensor, weights: Weights, order: int = 2, frame: list | None = None) -> Jet:
        """The fields' jet at ``coords`` ``[S * n, d]`` (sample-major), sample ``s`` with ``weights[.][s]``."""
        cols = Jet.variables(coords, order, self.hess)
        out = batched_mlp_jet(self.features.jet(cols), weights, self.jet_act)
        return self.hard(cols, out, frame) if self.hard.active else out

    def frame(self, coords: Tensor, order: int = 2) -> list | None:
        """The exact transform's parameter-free part at ``coords`` (None without one)."""
        if not self.hard.active:
            return None
        with torch.no_grad():
            return self.hard.frame(Jet.variables(coords, order, self.hess))

    def forward(self, coords: Tensor, values: Tensor) -> Tensor:
        """``[S * n, d]`` coordinates, ``[S, P]`` parameters -> ``[S * n, channels]``."""
        weights = self.weights(values)
        if self.hard.active:
            return self.jet(coords, weights, order=1).v
        return batched_mlp(self.features(coords), weights, self.act)


class HyperPINNTask(Task):
    """Each step: ``samples`` parameter values and ``points`` collocation points per value; the residual loss over all."""

    owner = "solver 'hyper_pinn'"

    def __init__(self, problem: Problem, model: HyperPINNModel, options: HyperPINNOptions, device: torch.device,
                 dtype: torch.dtype, evaluate: Callable[[], dict[str, float]]):
        self.problem, self.model, self.options = problem, model, options
        self.device, self.dtype, self._evaluate = device, dtype, evaluate
        self.names = problem.domain.names
        eq = problem.equation
        self.fixed = {k: float(s.default) for k, s in eq.parameters.items() if s.default is not None and k not in problem.ranges}
        self.fixed.update({k: float(v) for k, v in problem.params.items()})
        self.order = 2 if eq.max_space_order >= 2 else 1
        self.rng = np.random.default_rng(torch.randint(0, 2**31, (1,)).item())
        self.values = self.coords = None  # type: ignore[assignment]
        self._frame: list | None = None

    def before_step(self, step: int) -> None:
        """Draw the step's parameter values (uniform in each range's scale) and their collocation points."""
        o, ranges = self.options, list(self.problem.ranges.values())
        g = sampling.unit_samples(o.samples, len(ranges), "random", self.rng)
        values = np.stack([r.value(g[:, j]) for j, r in enumerate(ranges)], axis=-1)
        pts = sampling.interior(self.problem.domain, o.samples * o.points, o.sampler, self.rng)
        self.values = torch.as_tensor(values, dtype=self.dtype, device=self.device)
        self.coords = torch.as_tensor(pts, dtype=self.dtype, device=self.device)
        self._frame = self.model.frame(self.coords, self.order)

    def parameters_at_points(self, values: Tensor, per_sample: int) -> dict[str, Any]:
        """The equation's parameters with each ranged one as a per-point tensor ``[S * n]``."""
        p: dict[str, Any] = dict(self.fixed)
        for j, k in enumerate(self.problem.ranges):
            p[k] = values[:, j].repeat_interleave(per_sample)
        return p

    def residual_of(self, out: Jet, coords: Tensor, values: Tensor) -> Tensor:
        """The PDE residual ``[S * n, channels]`` of an output jet at ``coords`` for the samples' ``values``."""
        d = JetDerivatives(out, self.problem.equation.fields, self.names, coords)
        source = None
        if self.problem.source is not None:
            source = self.problem.source.torch(**dict(zip(self.names, coords.unbind(-1)))).unsqueeze(-1)
        p = self.parameters_at_points(values, coords.shape[0] // values.shape[0])
        return self.problem.equation.residual(d, p, source)

    def loss(self) -> tuple[Tensor, dict[str, float]]:
        if self.coords is None:
            self.before_step(0)
        out = self.model.jet(self.coords, self.model.weights(self.values), self.order, self._frame)
        r = self.residual_of(out, self.coords, self.values)
        value = (r * r).mean()
        return value, {"residual": float(value.detach())}

    def evaluate(self) -> dict[str, float]:
        return self._evaluate()

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class HyperPINN(PointSolver, ParametricSolver):
    """``solver: hyper_pinn`` — see :class:`HyperPINNOptions` and ``docs/hypernetworks.md``."""

    name = "hyper_pinn"
    Options = HyperPINNOptions
    parametric: ClassVar[bool] = True

    @classmethod
    def mismatches(cls, problem: Problem) -> list[str]:
        out = pointwise_mismatches(problem, 2, "the PINN's jets")
        if not problem.is_family:
            out.append("it solves parametric families: give a parameter a range (params.NAME: {range: [lo, hi]}), or use solver 'pinn'")
        soft = [bc.label for bc in problem.boundary if bc.kind != "dirichlet"]
        if soft:
            out.append(f"it holds the initial condition and Dirichlet walls exactly and has no loss terms for other conditions, got {soft}")
        if problem.domain.time is None:
            out.append("it solves time-dependent problems (the initial condition is its exact transform)")
        return out

    def __init__(self, problem: Problem, options: HyperPINNOptions, device: torch.device, dtype: torch.dtype | None = None, *,
                 ranks: Ranks | None = None, family: InitialConditionFamily | None = None):
        dtype = dtype or (torch.float64 if options.dtype == "float64" else torch.float32)
        super().__init__(problem, options, device, dtype, ranks=ranks, family=family)
        self.model = HyperPINNModel(problem, options).to(device=device, dtype=dtype)
        free = [n for n in self.model.hard.notes]
        if free:  # an initial condition that disagrees with a wall: the transform drops it, and this solver has no loss for it
            from ..errors import UserError

            raise UserError(f"solver 'hyper_pinn' cannot solve problem {problem.name!r}: " + "; ".join(free))

    def task(self, evaluate: Callable[[], dict[str, float]]) -> HyperPINNTask:
        return HyperPINNTask(self.problem, self.model, self.options, self.device, self.dtype, evaluate)  # type: ignore[arg-type]

    def predict(self, grid: Grid) -> Solution:
        """The family has no single solution: :meth:`predict_members` predicts chosen members."""
        from ..errors import UserError

        raise UserError(f"problem {self.problem.name!r} is a parametric family; predict its members with predict_members(grid, values)")

    def predict_members(self, grid: Grid, members: Sequence[Mapping[str, float]]) -> Solution:
        """The learned solutions of the family's members (parameter values ``members[i]``) on ``grid``, batch = member."""
        pts = torch.as_tensor(grid.points(), dtype=self.dtype, device=self.device)
        keys = list(self.problem.ranges)
        rows = []
        with torch.no_grad():
            for member in members:
                values = torch.as_tensor([[float(member[k]) for k in keys]], dtype=self.dtype, device=self.device)
                rows.append(torch.cat([self.model(chunk, values) for chunk in pts.split(65536)]))
        values_np = torch.stack(rows).double().cpu().numpy().reshape((len(members),) + grid.shape + (-1,))
        values_np = np.moveaxis(values_np, -1, 2 if grid.time is not None else 1)
        return Solution(grid, self.problem.equation.fields, values_np)
