"""Plain physics-informed neural network (PINN): the baseline every other back-end is compared with.

An MLP over coordinate features (periodic axes embedded as Fourier modes) whose output is passed
through an automatic exact transform for the initial condition and Dirichlet walls (optional), and
trained on the mean-square PDE residual at collocation points plus the remaining condition losses.
Derivatives come from forward-mode jets (:mod:`pdesolve.nn.jet`): value, gradient and Hessian in one
pass, then one backward pass for the parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from .. import sampling
from ..distributed import Ranks
from ..grid import Grid
from ..nn.features import CoordinateFeatures
from ..nn.hard import HardConstraint
from ..nn.jet import MAX_ORDER, Jet, JetDerivatives
from ..nn.jet_blocks import JetBlock, JetCarry, JetLayer
from ..nn.mlp import MLP, Activation
from ..problem import BoundaryCondition, Problem
from ..sampling import Sampler
from ..solution import Solution
from ..task import JetBlockTask
from .base import PointSolver, pointwise_mismatches

if TYPE_CHECKING:
    from ..simulate.family import InitialConditionFamily


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


class FlooredDerivatives:
    """A derivatives accessor that reads the values (not the derivatives) of every field as max(u, floor)."""

    def __init__(self, d: JetDerivatives, floor: float):
        self.d, self.floor, self.space = d, floor, d.space

    def __call__(self, field: str, *axes: str) -> Tensor:
        return self.d(field, *axes) if axes else self.d(field).clamp_min(self.floor)

    def coord(self, name: str) -> Tensor:
        return self.d.coord(name)


class PINNOptions(BaseModel):
    """Network: ``width``, ``depth``, ``activation``. Advanced: the rest."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    width: int = Field(20, gt=0)
    depth: int = Field(3, gt=0)
    activation: Activation = "tanh"
    periodic_modes: int = Field(1, ge=1, description="Fourier modes per periodic axis in the input embedding")
    hard_constraints: bool = Field(True, description="enforce the IC and Dirichlet walls exactly by an output transform")
    dtype: Literal["float32", "float64"] = "float32"
    u_floor: float | None = Field(None, description="read u as max(u, u_floor) in the PDE residual (not in the conditions): for "
                                  "equations whose coefficients are fractional powers of u (diffusion-sorption), undefined below 0")
    compile: bool = Field(False, description="fuse the loss with torch.compile (needs a C++ compiler; ~1 min once)")
    points: PointsOptions = PointsOptions()
    rar: RAROptions = RAROptions()
    weights: WeightsOptions = WeightsOptions()


class PINNModel(nn.Module):
    """coordinates ``[N, d]`` (t, x, ...) -> fields ``[N, channels]``, with the exact transform applied."""

    def __init__(self, problem: Problem, options: PINNOptions):
        super().__init__()
        self.features = CoordinateFeatures(problem.domain, options.periodic_modes)
        self.net = MLP(self.features.size, len(problem.equation.fields), options.width, options.depth, options.activation)
        self.hard = HardConstraint(problem) if options.hard_constraints else None
        # second derivatives are carried along the space axes only (t is column 0 when present)
        self.hess = slice(1 if problem.domain.time is not None else 0, len(problem.domain.names))

    def jet(self, coords: Tensor, order: int = 2, frame: list | None = None) -> Jet:
        """The fields' jet at ``coords``; ``frame``: the exact transform's :meth:`HardConstraint.frame` there, if kept."""
        cols = Jet.variables(coords, order, self.hess)
        out = self.net.forward_jet(self.features.jet(cols))
        return self.hard(cols, out, frame) if self.hard is not None and self.hard.active else out

    def frame(self, coords: Tensor, order: int = 2) -> list | None:
        """The exact transform's parameter-free part at ``coords`` (None without one)."""
        if self.hard is None or not self.hard.active:
            return None
        with torch.no_grad():
            return self.hard.frame(Jet.variables(coords, order, self.hess))

    def forward(self, coords: Tensor) -> Tensor:
        if self.hard is not None and self.hard.active:
            return self.jet(coords, order=1).v
        return self.net(self.features(coords))

    def jet_blocks(self) -> list[JetBlock]:
        """:meth:`jet` block by block: the features with the first layer, each later layer, the exact transform
        (parameter-free, last; absent without one)."""
        first, *hidden, last = self.net.layers  # depth >= 1: at least two layers
        act = self.net._jet_act
        blocks: list[JetBlock] = [FeatureLayer(self.features, JetLayer(first, act))]
        blocks += [JetLayer(layer, act) for layer in hidden] + [JetLayer(last, None)]
        if self.hard is not None and self.hard.active:
            blocks.append(HardTransform(self.hard))
        return blocks

    def jet_input(self, coords: Tensor, order: int = 2, frame: list | None = None) -> JetCarry:
        """The carry :meth:`jet_blocks` start from: the coordinates' jet ``[N, d]``, their columns and the frame."""
        cols = Jet.variables(coords, order, self.hess)
        return JetCarry(Jet.stack(cols), tuple(cols), frame)


class FeatureLayer(JetBlock):
    """The coordinate features of the carry's coordinates jet, then the first dense layer."""

    def __init__(self, features: CoordinateFeatures, layer: JetLayer):
        super().__init__()
        self.features, self.layer = features, layer

    def forward(self, carry: JetCarry) -> JetCarry:
        cols = [carry.h[..., i] for i in range(carry.h.v.shape[-1])]
        return self.layer(carry.with_h(self.features.jet(cols)))


class HardTransform(JetBlock):
    """The exact IC/BC transform ``u = G + phi N`` of the network's jet (no parameters)."""

    def __init__(self, hard: HardConstraint):
        super().__init__()
        self.hard = hard

    def forward(self, carry: JetCarry) -> JetCarry:
        return carry.with_h(self.hard(list(carry.inputs), carry.h, carry.frame))


class PINNTask(JetBlockTask):
    """Collocation points, the loss and adaptive refinement for one problem."""

    owner = "solver 'pinn'"

    def __init__(self, problem: Problem, model: PINNModel, options: PINNOptions, device: torch.device, dtype: torch.dtype,
                 evaluate: Callable[[], dict[str, float]]):
        self.problem, self.model, self.options = problem, model, options
        self.device, self.dtype, self._evaluate = device, dtype, evaluate
        self.names = problem.domain.names
        self.params = problem.coefficients
        self.rng = np.random.default_rng(torch.randint(0, 2**31, (1,)).item())
        self.order = max(1, problem.equation.max_space_order)  # the jets carry exactly the orders the equation reads
        hard = model.hard.enforced() if model.hard is not None else set()
        self.soft_initial = problem.initial is not None and problem.domain.time is not None and not any(
            label.startswith("initial:") for label in hard
        )
        self.soft_walls = [bc for bc in problem.boundary if bc.label not in hard]
        self.interior = self._tensor(self._interior(options.points.interior))
        self.initial_pts = self._tensor(sampling.initial(problem.domain, options.points.initial, options.points.sampler, self.rng)) \
            if self.soft_initial else None
        per_face = options.points.boundary // max(len(self.soft_walls), 1)
        self.walls = [
            self._tensor(sampling.face(problem.domain, bc.axis, bc.side, max(per_face, 1), options.points.sampler, self.rng))
            for bc in self.soft_walls
        ]
        self.initial_target = self._initial_values(self.initial_pts) if self.initial_pts is not None else None
        w = options.weights
        self.term_names = ["residual"] + (["initial"] if self.soft_initial else []) + [bc.label for bc in self.soft_walls]
        self.term_weights = torch.tensor([w.residual] + ([w.initial] if self.soft_initial else []) + [w.boundary] * len(self.soft_walls),
                                         dtype=dtype, device=device)
        # fusing the jet arithmetic into a few loops (torch.compile) pays off from a few hundred steps on
        self._terms = torch.compile(self.loss_terms) if options.compile else self.loss_terms

    # ------------------------------------------------------------------ points
    def _tensor(self, a: np.ndarray) -> Tensor:
        return torch.as_tensor(a, dtype=self.dtype, device=self.device)

    def _interior(self, n: int) -> np.ndarray:
        return sampling.interior(self.problem.domain, n, self.options.points.sampler, self.rng)

    def _initial_values(self, pts: Tensor) -> Tensor:
        env = dict(zip(self.names, pts.unbind(-1)))
        vals = [self.problem.initial.values[f].torch(**env) for f in self.problem.equation.fields]  # type: ignore[union-attr]
        return torch.stack(vals, dim=-1)

    # ------------------------------------------------------------------ the residual-task members
    def points(self) -> Tensor:
        return self.interior

    def jet(self, points: Tensor) -> Jet:
        return self.model.jet(points, self.order)

    def jet_blocks(self) -> list[JetBlock]:
        return self.model.jet_blocks()

    def jet_input(self) -> JetCarry:
        """At all points of one loss pass (interior, initial, walls), with the exact transform's frame there."""
        pts, _, frame = self._points()
        return self.model.jet_input(pts, self.order, frame)

    def loss_of(self, out: Jet) -> tuple[Tensor, dict[str, float]]:
        return self._weighted(self.terms_of(out))

    # ------------------------------------------------------------------ loss
    def residual(self, coords: Tensor) -> Tensor:
        """PDE residual ``[N, channels]`` at ``coords`` (differentiable in the parameters)."""
        return self._residual(self.model.jet(coords, self.order), coords)

    def _residual(self, out: Jet, coords: Tensor) -> Tensor:
        d = JetDerivatives(out, self.problem.equation.fields, self.names, coords)
        if self.options.u_floor is not None:
            d = FlooredDerivatives(d, self.options.u_floor)
        source = None
        if self.problem.source is not None:
            env = dict(zip(self.names, coords.unbind(-1)))
            source = self.problem.source.torch(**env).unsqueeze(-1)
        return self.problem.equation.residual(d, self.params, source)

    def wall_violation(self, bc: BoundaryCondition, pts: Tensor, out: Jet | None = None) -> Tensor:
        """``alpha u + beta du/dn - value`` at wall points ``[N]`` (``out``: the jet there, if computed)."""
        out = out if out is not None else self.model.jet(pts, order=1)
        c = self.problem.equation.fields.index(bc.field)
        lhs = bc.alpha * out.v[:, c]
        if bc.beta:
            sign = -1.0 if bc.side == "lo" else 1.0  # outward normal
            lhs = lhs + bc.beta * sign * out.g[:, self.names.index(bc.axis), c]
        env = dict(zip(self.names, pts.unbind(-1)))
        return lhs - bc.value.torch(**env)

    @property
    def interior(self) -> Tensor:
        """Interior collocation points ``[N, d]``; setting them rebuilds what :meth:`_points` keeps."""
        return self._interior_pts

    @interior.setter
    def interior(self, pts: Tensor) -> None:
        self._interior_pts = pts
        self._kept: tuple[Tensor, list[slice], list | None] | None = None

    def _points(self) -> tuple[Tensor, list[slice], list | None]:
        """All points of one loss pass, the slice of each group, and the exact transform's frame there."""
        if self._kept is None:
            groups = [self.interior] + ([self.initial_pts] if self.initial_pts is not None else []) + self.walls
            pts = torch.cat(groups) if len(groups) > 1 else self.interior
            ends = np.cumsum([len(g) for g in groups]).tolist()
            self._kept = (pts, [slice(a, b) for a, b in zip([0] + ends[:-1], ends)], self.model.frame(pts, self.order))
        return self._kept

    def loss_terms(self) -> Tensor:
        """Mean squares of the residual and of each soft condition, ``[terms]``, from one jet pass over all points."""
        pts, _, frame = self._points()
        return self.terms_of(self.model.jet(pts, self.order, frame))

    def terms_of(self, out: Jet) -> Tensor:
        """:meth:`loss_terms` of an output jet at the points of one loss pass (the model's, or an auxiliary network's)."""
        parts = iter(self._points()[1])
        r = self._residual(out.points(next(parts)), self.interior)
        terms = [(r * r).mean()]
        if self.initial_pts is not None:
            terms.append(((out.v[next(parts)] - self.initial_target) ** 2).mean())
        for bc, wall in zip(self.soft_walls, self.walls):
            v = self.wall_violation(bc, wall, out.points(next(parts)))
            terms.append((v * v).mean())
        return torch.stack(terms)

    def loss(self) -> tuple[Tensor, dict[str, float]]:
        """The weighted sum of :meth:`loss_terms`, and each term by name."""
        return self._weighted(self._terms())

    def _weighted(self, terms: Tensor) -> tuple[Tensor, dict[str, float]]:
        return (terms * self.term_weights).sum(), dict(zip(self.term_names, terms.detach().tolist()))

    def before_step(self, step: int) -> None:
        p, rar = self.options.points, self.options.rar
        if p.resample_every and step and step % p.resample_every == 0:
            self.interior = self._tensor(self._interior(p.interior))
        if rar.every and step and step % rar.every == 0 and (rar.until is None or step <= rar.until):
            cand = self._tensor(sampling.interior(self.problem.domain, rar.candidates, "random", self.rng))
            with torch.no_grad():
                score = self.residual(cand).abs().sum(-1)
            worst = cand[torch.topk(score, min(rar.add, len(cand))).indices]
            self.interior = torch.cat([self.interior, worst])

    def evaluate(self) -> dict[str, float]:
        return self._evaluate()

    def state_dict(self) -> dict[str, Any]:
        return {"interior": self.interior.cpu(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.interior = state["interior"].to(self.device, self.dtype)
        self.rng.bit_generator.state = state["rng"]


class PINN(PointSolver):
    """``solver: pinn`` — see :class:`PINNOptions`."""

    name = "pinn"
    Options = PINNOptions

    @classmethod
    def mismatches(cls, problem: Problem) -> list[str]:
        return pointwise_mismatches(problem, MAX_ORDER, "the PINN's jets")

    def __init__(self, problem: Problem, options: PINNOptions, device: torch.device, dtype: torch.dtype | None = None, *,
                 ranks: Ranks | None = None, family: InitialConditionFamily | None = None):
        dtype = dtype or (torch.float64 if options.dtype == "float64" else torch.float32)
        super().__init__(problem, options, device, dtype, ranks=ranks, family=family)
        self.model = PINNModel(problem, options).to(device=device, dtype=dtype)
        self._task: PINNTask | None = None

    def task(self, evaluate: Callable[[], dict[str, float]]) -> PINNTask:
        self._task = PINNTask(self.problem, self.model, self.options, self.device, self.dtype, evaluate)  # type: ignore[arg-type]
        return self._task

    def _points(self, grid: Grid) -> Tensor:
        return torch.as_tensor(grid.points(), dtype=self.dtype, device=self.device)

    def predict(self, grid: Grid) -> Solution:
        pts = self._points(grid)
        with torch.no_grad():
            out = torch.cat([self.model(chunk) for chunk in pts.split(65536)])
        values = out.double().cpu().numpy().reshape(grid.shape + (-1,))
        values = np.moveaxis(values, -1, 1 if grid.time is not None else 0)[None]
        return Solution(grid, self.problem.equation.fields, values)

    def diagnostics(self, grid: Grid) -> dict[str, Any]:
        """The residual map on ``grid`` and each condition's RMS violation."""
        task = self._task or self.task(lambda: {})
        pts = self._points(grid)
        with torch.no_grad():
            res = torch.cat([task.residual(c) for c in pts.split(16384)])
        res_map = res.abs().double().cpu().numpy().reshape(grid.shape + (-1,))
        out: dict[str, Any] = {"residual_map": np.moveaxis(res_map, -1, 0), "violations": {}}
        rng = np.random.default_rng(0)
        dom = self.problem.domain
        with torch.no_grad():
            if self.problem.initial is not None and dom.time is not None:
                ip = torch.as_tensor(sampling.initial(dom, 2000, "random", rng), dtype=self.dtype, device=self.device)
                out["violations"]["initial"] = float(((self.model(ip) - task._initial_values(ip)) ** 2).mean().sqrt())
            for bc in self.problem.boundary:
                fp = torch.as_tensor(sampling.face(dom, bc.axis, bc.side, 1000, "random", rng), dtype=self.dtype, device=self.device)
                out["violations"][bc.label] = float((task.wall_violation(bc, fp) ** 2).mean().sqrt())
        out["violations"]["residual_rms"] = float(np.sqrt((res_map**2).mean()))
        return out
