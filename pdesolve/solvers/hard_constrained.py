"""Hard-constrained basis solvers (``hc``, ``moe_hc``): the PDE enforced by a differentiable solve per expert.

A backbone MLP over the coordinates outputs N basis functions b(t, x). The space-time box is split into
K experts (boxes of :meth:`Grid.partition`); each expert k finds weights w_k with u_k = b . w_k that

- minimize the PDE residual of u_k at its m solve points (inside its own box), and
- satisfy the *global* initial and boundary conditions exactly at the constraint points (the same rows in
  every expert: the basis functions live on the whole domain, and an expert of a later time slab without
  the initial condition would otherwise solve a homogeneous PDE by w = 0).

All experts are solved as one batch by :mod:`pdesolve.constrained`: one KKT solve for linear equations,
Levenberg-Marquardt with the implicit backward for nonlinear ones (started from the linear problem
obtained by freezing the equation at the mean initial value). The backbone is trained on the mean-square
residual of the solved u_k at fresh points of each expert's box. A point is predicted by its own expert.
``hc`` is the case K = 1.

Shapes: solve points ``[K, m, d]`` (columns (t, x, ...)), feature matrices ``D [K, k, m, N]`` with the k
rows u, du/d(each coordinate), d2u/d(space axis)^2, weights ``w [K, N]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.func import jvp

from .. import sampling
from ..constrained import (
    ConstrainedLeastSquares,
    ConstraintSetupError,
    LevenbergMarquardt,
    PointwiseResidual,
    SolveStatus,
    bounds_as_inequalities,
    check_residual,
    solve_nonlinear,
)
from ..grid import Grid
from ..nn.features import CoordinateFeatures
from ..nn.jet import Jet
from ..nn.mlp import MLP
from ..problem import Problem
from ..solution import Solution
from .base import Solver, SolverMismatch


class HCPointsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    solve: int = Field(512, gt=0, description="points per expert where the inner solve fits the PDE (fixed)")
    loss: int = Field(512, gt=0, description="fresh points per expert for the backbone's loss, each step")
    initial: int = Field(12, ge=0, description="initial-condition constraint points (exact, shared by all experts)")
    boundary: int = Field(8, ge=0, description="constraint points per boundary condition (exact, shared by all experts)")
    sampler: Literal["uniform", "random", "lhs", "sobol"] = "lhs"


class NonlinearOptions(BaseModel):
    """The Levenberg-Marquardt solve for nonlinear equations."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_iter: int = Field(30, gt=0)
    tol: float = Field(1e-9, ge=0, description="xtol and gtol of the iterations")
    u_floor: float | None = Field(None, description="read u as max(u, u_floor) in the residual: for equations where u "
                                  "enters only through a coefficient with a fractional power (diffusion-sorption's "
                                  "retardation), which is undefined below 0")


class HCOptions(BaseModel):
    """Network: ``width``, ``depth``, ``activation``, ``basis`` (N). Advanced: the rest."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    width: int = Field(64, gt=0)
    depth: int = Field(3, gt=0)
    activation: Literal["tanh", "sin", "gelu", "silu", "sigmoid"] = "tanh"
    basis: int = Field(48, gt=0, description="N basis functions (the last layer's outputs), at most width")
    periodic_modes: int = Field(1, ge=1)
    dtype: Literal["float32", "float64"] = Field("float64", description="float32 bases lose the exact conditions to cancellation in b . w")
    tikhonov: float = Field(1e-9, ge=0, description="lambda relative to the mean diagonal of the normal matrix")
    bounds: tuple[float, float] | None = Field(None, description="lo <= u <= hi at the solve points (cvxpylayers)")
    points: HCPointsOptions = HCPointsOptions()
    nonlinear: NonlinearOptions = NonlinearOptions()


class MoEHCOptions(HCOptions):
    experts: dict[str, int] = Field(default_factory=lambda: {"t": 2, "x": 2},
                                    description="experts along each axis (t and space axes); their product is K")


# ----------------------------------------------------------------------------- experts
class ExpertBoxes:
    """K boxes tiling the space-time domain, from :meth:`Grid.partition`; ``lo``/``hi`` are ``[K, d]``."""

    def __init__(self, problem: Problem, counts: Mapping[str, int]):
        dom = problem.domain
        unknown = set(counts) - set(dom.names)
        if unknown:
            raise SolverMismatch(f"experts along {sorted(unknown)}, expected axes among {list(dom.names)}")
        self.names = dom.names
        self.counts = tuple(int(counts.get(n, 1)) for n in self.names)
        # a grid of 2k points per axis read as 2k cells: piece i covers cells [2i, 2i + 2), i.e. lo + [i, i+1) L / k
        shape = {n: 2 * k for n, k in zip(self.names, self.counts)}
        grid = dom.grid(shape)
        parts = grid.partition(dict(zip(self.names, self.counts)))
        order = [grid.names.index(n) for n in self.names]
        span = np.array([dom.bounds[n][1] - dom.bounds[n][0] for n in self.names])
        start = np.array([dom.bounds[n][0] for n in self.names])
        cells = np.array([shape[n] for n in self.names])
        lo = np.array([[p.slices[i].start for i in order] for p in parts]) / cells * span + start
        width = (span / np.array(self.counts))[None]
        self.index = [tuple(p.index[i] for i in order) for p in parts]
        # experts in row-major order of (t, x, ...) so that a point's expert is a ravel of its cell index
        perm = np.argsort([np.ravel_multi_index(ix, self.counts) for ix in self.index])
        self.lo, self.hi = lo[perm], lo[perm] + width
        self.bounds = np.array([dom.bounds[n] for n in self.names])  # [d, 2]

    @property
    def count(self) -> int:
        return len(self.lo)

    def sample(self, m: int, sampler: str, rng: np.random.Generator) -> np.ndarray:
        """m points in every box, ``[K, m, d]``."""
        u = np.stack([sampling.unit_samples(m, len(self.names), sampler, rng) for _ in range(self.count)])
        return self.lo[:, None] + u * (self.hi - self.lo)[:, None]

    def expert_of(self, pts: np.ndarray) -> np.ndarray:
        """The expert owning each point ``[n, d]`` -> ``[n]`` (points on a shared face go to the upper box)."""
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        cell = np.floor((pts - lo) / (hi - lo) * np.array(self.counts)).astype(int)
        cell = np.clip(cell, 0, np.array(self.counts) - 1)
        return np.ravel_multi_index(tuple(cell.T), self.counts)


# ----------------------------------------------------------------------------- residual of u = b . w
class FeatureDerivatives:
    """The :class:`pdesolve.equations.Derivatives` accessor over feature rows ``f [batch, k, m]``."""

    def __init__(self, f: Tensor, rows: Mapping[tuple[str, ...], int], coords: Tensor, names: tuple[str, ...],
                 u_floor: float | None = None):
        self.f, self.rows, self.coords, self.names, self.u_floor = f, rows, coords, names, u_floor
        self.space = tuple(n for n in names if n != "t")

    def __call__(self, field: str, *axes: str) -> Tensor:
        key = tuple(axes)
        if key not in self.rows:
            raise ValueError(f"derivative {field}_{''.join(axes)} is not carried; the basis carries {sorted(self.rows)}")
        if not key and self.u_floor is not None:
            return self.f[:, 0].clamp_min(self.u_floor)
        return self.f[:, self.rows[key]]

    def coord(self, name: str) -> Tensor:
        return self.coords[..., self.names.index(name)]


class PDEResidual:
    """F(features [batch, k, m], coords [batch, m, d], source [batch, m]) -> residual [batch, m], pointwise.

    Scaled by the time span so a residual of u_t - F reads as a change of u over the whole horizon.
    """

    def __init__(self, problem: Problem, rows: Mapping[tuple[str, ...], int], u_floor: float | None = None):
        self.eq, self.params, self.rows, self.u_floor = problem.equation, problem.coefficients, rows, u_floor
        self.names = problem.domain.names
        self.scale = float(problem.domain.time[1] - problem.domain.time[0]) if problem.domain.time else 1.0

    def __call__(self, f: Tensor, coords: Tensor, source: Tensor) -> Tensor:
        d = FeatureDerivatives(f, self.rows, coords, self.names, self.u_floor)
        return (self.eq.residual(d, self.params)[..., 0] - source) * self.scale


def feature_rows(names: tuple[str, ...]) -> dict[tuple[str, ...], int]:
    """Row of each carried derivative: u, then d/d(each coordinate), then d2/d(space axis)^2."""
    keys = [()] + [(n,) for n in names] + [(n, n) for n in names if n != "t"]
    return {k: i for i, k in enumerate(keys)}


class BasisNet(nn.Module):
    """coordinates ``[n, d]`` -> N basis functions ``[n, N]``; :meth:`features` adds their derivatives."""

    def __init__(self, problem: Problem, options: HCOptions):
        super().__init__()
        self.features_in = CoordinateFeatures(problem.domain, options.periodic_modes)
        self.net = MLP(self.features_in.size, options.basis, options.width, options.depth, options.activation)
        self.hess = slice(1 if problem.domain.time is not None else 0, len(problem.domain.names))

    def forward(self, coords: Tensor) -> Tensor:
        return self.net(self.features_in(coords))

    def features(self, coords: Tensor) -> Tensor:
        """``[n, k, N]``: values, gradients and diagonal second space derivatives, rows as :func:`feature_rows`."""
        out = self.net.forward_jet(self.features_in.jet(Jet.variables(coords, 2, self.hess)))
        return torch.cat([out.v[:, None], out.g, out.h], dim=1)


class HCModel(nn.Module):
    """The backbone plus the fixed points of the inner solves (buffers, so checkpoints restore predictions)."""

    def __init__(self, problem: Problem, options: HCOptions, boxes: ExpertBoxes, rng: np.random.Generator):
        super().__init__()
        self.basis = BasisNet(problem, options)
        self.register_buffer("solve_points", torch.as_tensor(boxes.sample(options.points.solve, options.points.sampler, rng)))

    def forward(self, coords: Tensor) -> Tensor:
        return self.basis(coords)

    def blocks(self) -> list[nn.Module]:
        return list(self.basis.net.blocks())


# ----------------------------------------------------------------------------- constraints
class Constraints:
    """Initial and boundary conditions at fixed points as rows ``C w = d`` (alpha u + beta du/dn = value)."""

    def __init__(self, problem: Problem, options: HCPointsOptions):
        dom, names = problem.domain, problem.domain.names
        rng = np.random.default_rng(0)
        pts, alpha, beta, axis, values = [], [], [], [], []
        if problem.initial is not None and dom.time is not None and options.initial:
            p = sampling.initial(dom, options.initial, "uniform", rng)  # cell centres: never a corner
            pts.append(p)
            alpha += [1.0] * len(p)
            beta += [0.0] * len(p)
            axis += [0] * len(p)
            values.append(("initial", None, len(p)))
        for bc in problem.boundary:
            if not options.boundary:
                break
            p = face_points(problem, bc.axis, bc.side, options.boundary)
            pts.append(p)
            alpha += [bc.alpha] * len(p)
            beta += [bc.beta * (-1.0 if bc.side == "lo" else 1.0)] * len(p)  # outward normal derivative
            axis += [names.index(bc.axis)] * len(p)
            values.append(("boundary", bc, len(p)))
        self.points = np.concatenate(pts) if pts else np.zeros((0, len(names)))
        self.alpha, self.beta, self.axis = np.array(alpha), np.array(beta), np.array(axis, dtype=int)
        self.count = len(self.points)
        env = dict(zip(names, torch.as_tensor(self.points, dtype=torch.float64).unbind(-1)))
        target, start = [], 0
        for kind, bc, n in values:
            part = {k: v[start:start + n] for k, v in env.items()}
            expr = problem.initial.values["u"] if kind == "initial" else bc.value  # type: ignore[union-attr]
            target.append(torch.broadcast_to(torch.as_tensor(expr.torch(**part), dtype=torch.float64), (n,)))
            start += n
        self.target = torch.cat(target) if target else torch.zeros(0, dtype=torch.float64)
        n_initial = options.initial if values and values[0][0] == "initial" else 0
        self.initial_mean = float(self.target[:n_initial].mean()) if n_initial else float(self.target.mean()) if self.count else 0.0

    def rows(self, D: Tensor) -> Tensor:
        """C ``[p, N]`` from the features ``[p, k, N]`` at the constraint points."""
        alpha = torch.as_tensor(self.alpha, dtype=D.dtype, device=D.device)[:, None]
        beta = torch.as_tensor(self.beta, dtype=D.dtype, device=D.device)[:, None]
        grad = D[torch.arange(len(D), device=D.device), 1 + torch.as_tensor(self.axis, device=D.device)]  # [p, N]
        return alpha * D[:, 0] + beta * grad


def face_points(problem: Problem, axis: str, side: str, n: int) -> np.ndarray:
    """n distinct cell-centred points on the face ``axis = lo | hi``, ``[n, d]`` (no corner, no repeats)."""
    dom = problem.domain
    others = [a for a in dom.names if a != axis]
    unit = sampling.unit_samples(n, len(others), "uniform", np.random.default_rng(0))
    pts = np.empty((n, len(dom.names)))
    for j, name in enumerate(others):
        lo, hi = dom.bounds[name]
        pts[:, dom.names.index(name)] = lo + unit[:, j] * (hi - lo)
    pts[:, dom.names.index(axis)] = dom.bounds[axis][0 if side == "lo" else 1]
    return pts


# ----------------------------------------------------------------------------- the shared solver
class HardConstrainedSolver(Solver):
    """What ``hc`` and ``moe_hc`` share; a leaf sets ``name``, ``Options`` and :meth:`expert_counts`."""

    @classmethod
    def mismatches(cls, problem: Problem) -> list[str]:
        eq, out = problem.equation, []
        if not eq.pointwise:
            out.append(f"the {eq.name!r} equation has no pointwise residual (grids only); use a grid solver")
        if eq.max_space_order > 2:
            out.append(f"the {eq.name!r} equation needs space derivatives of order {eq.max_space_order}; the basis carries up to 2")
        if len(eq.fields) != 1:
            out.append(f"got {len(eq.fields)} fields {list(eq.fields)}, expected one (the basis solve is scalar)")
        if problem.domain.time is None:
            out.append("got a steady problem, expected a time axis")
        return out

    def expert_counts(self) -> dict[str, int]:
        return {}

    def __init__(self, problem: Problem, options: HCOptions, device: torch.device, dtype: torch.dtype | None = None):
        dtype = dtype or (torch.float64 if options.dtype == "float64" else torch.float32)
        super().__init__(problem, options, device, dtype)
        if options.basis > options.width:
            raise SolverMismatch(f"basis={options.basis} functions from a last hidden layer of width={options.width} span at most "
                                 f"{options.width + 1} dimensions (a singular solve); expected basis <= width")
        self.boxes = ExpertBoxes(problem, self.expert_counts())
        self.constraints = Constraints(problem, options.points)
        if self.constraints.count > options.basis:
            raise SolverMismatch(f"{self.constraints.count} exact constraint points on {options.basis} basis functions, expected "
                                 "at most as many; raise basis or lower points.initial / points.boundary")
        self.rows = feature_rows(problem.domain.names)
        self.pde = PDEResidual(problem, self.rows, options.nonlinear.u_floor)
        self.pointwise = PointwiseResidual(self.pde)
        self.linear = problem.equation.linear
        if options.bounds is not None and not self.linear:
            raise SolverMismatch(f"bounds {options.bounds} need the convex path, which takes linear equations; "
                                 f"{problem.equation.name!r} is nonlinear: drop solvers.{self.name}.bounds")
        try:
            self.layer = ConstrainedLeastSquares(inequalities=options.bounds is not None)
            if not self.linear:
                self._check_jacobian_path()
        except ConstraintSetupError as err:
            raise SolverMismatch(str(err)) from None
        rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,)).item()))
        self.model = HCModel(problem, options, self.boxes, rng).to(device=device, dtype=dtype)
        self._task: HCTask | None = None

    def _check_jacobian_path(self) -> None:
        """The nonlinear residual must be differentiable by torch.func (LM iterations and implicit backward)."""
        k, m, n = len(self.rows), 3, 2
        gen = torch.Generator().manual_seed(0)
        D = 0.1 * torch.rand(1, k, m, n, dtype=torch.float64, generator=gen)
        D[:, 0] += 0.5  # positive u: fractional powers stay real
        coords = torch.as_tensor(self.boxes.sample(m, "random", np.random.default_rng(0))[:1])
        check_residual(self.pointwise, torch.ones(1, n, dtype=torch.float64), (D, coords, torch.zeros(1, m, dtype=torch.float64)))

    # ------------------------------------------------------------------ the batched solve
    def source(self, coords: Tensor) -> Tensor:
        """The source term at ``coords [..., d]`` -> ``[...]`` (zeros when the problem has none)."""
        if self.problem.source is None:
            return coords.new_zeros(coords.shape[:-1])
        env = dict(zip(self.problem.domain.names, coords.unbind(-1)))
        return torch.broadcast_to(self.problem.source.torch(**env), coords.shape[:-1])

    def solve(self, points: Tensor) -> tuple[Tensor, SolveStatus]:
        """Weights ``w [K, N]`` of every expert from the solve points ``[K, m, d]``; differentiable in the backbone."""
        K, m, d = points.shape
        con = self.constraints
        cpts = torch.as_tensor(con.points, dtype=self.dtype, device=self.device)
        D_all = self.model.basis.features(torch.cat([points.reshape(K * m, d), cpts]))  # [K m + p, k, N]
        D = D_all[: K * m].reshape(K, m, *D_all.shape[1:]).transpose(1, 2)  # [K, k, m, N]
        C = con.rows(D_all[K * m:]).expand(K, -1, -1) if con.count else None  # [K, p, N]
        target = con.target.to(self.device).expand(K, -1) if con.count else None
        src = self.source(points)
        if self.linear:
            zero = points.new_zeros(K, self.options.basis)
            A = self.pointwise.jacobian(zero, D, points, src)  # [K, m, N], exact for a linear residual
            b = -self.pointwise(zero, D, points, src)
            self.layer.tikhonov = self.options.tikhonov * float(A.detach().double().pow(2).sum(1).mean())
            extra = ()
            if self.options.bounds is not None:
                extra = bounds_as_inequalities(D[:, 0], *self.options.bounds)
            w, status = self.layer(A, b, C, target, *extra)
            return w.to(self.dtype), status
        w0, scale = self._linearized_start(D, points, src, C, target)
        lm = LevenbergMarquardt(max_iter=self.options.nonlinear.max_iter, xtol=self.options.nonlinear.tol,
                                gtol=self.options.nonlinear.tol, tikhonov=self.options.tikhonov * scale)
        w, status = solve_nonlinear(self.pointwise, w0, (D, points, src), C, target, jacobian=self.pointwise.jacobian,
                                    hessian=self.pointwise.hessian, options=lm)
        return w.to(self.dtype), status

    def _linearized_start(self, D: Tensor, points: Tensor, src: Tensor, C: Tensor | None, target: Tensor | None) -> tuple[Tensor, float]:
        """Start of the iterations: the linear problem of the equation frozen at u = mean initial value."""
        with torch.no_grad():
            D64, pts, s = D.double(), points.double(), src.double()
            K, k, m, _ = D64.shape
            fbar = D64.new_zeros(K, k, m)
            fbar[:, 0] = self.constraints.initial_mean
            r0 = self.pde(fbar, pts, s)
            slopes = [jvp(lambda f: self.pde(f, pts, s), (fbar,), (torch.zeros_like(fbar).index_fill_(1, torch.tensor([i]), 1.0),))[1]
                      for i in range(k)]  # dF/df_i at the frozen state, [K, m] each
            A = sum(slope[..., None] * D64[:, i] for i, slope in enumerate(slopes))
            b = -(r0 - slopes[0] * self.constraints.initial_mean)
            scale = float(A.pow(2).sum(1).mean())
            layer = ConstrainedLeastSquares(tikhonov=self.options.tikhonov * scale)
            w0, _ = layer(A, b, None if C is None else C.double(), None if target is None else target.double())
        return w0, scale

    # ------------------------------------------------------------------ the Solver interface
    def task(self, evaluate: Callable[[], dict[str, float]]) -> HCTask:
        self._task = HCTask(self, evaluate)
        return self._task

    def weights(self) -> tuple[Tensor, SolveStatus]:
        """The experts' weights from the fixed solve points (what prediction uses), ``[K, N]``."""
        with torch.no_grad():
            return self.solve(self.model.solve_points)

    def values(self, coords: Tensor, w: Tensor) -> Tensor:
        """u at ``coords [n, d]``, each point with its own expert's weights, ``[n]``."""
        expert = torch.as_tensor(self.boxes.expert_of(coords.double().cpu().numpy()), device=self.device)
        return torch.cat([(self.model(c) * w[e]).sum(-1) for c, e in zip(coords.split(65536), expert.split(65536))])

    def predict(self, grid: Grid) -> Solution:
        w, _ = self.weights()
        pts = torch.as_tensor(grid.points(), dtype=self.dtype, device=self.device)
        with torch.no_grad():
            u = self.values(pts, w)
        values = u.double().cpu().numpy().reshape(grid.shape)[:, None][None]  # [1, time, 1, *space]
        return Solution(grid, self.problem.equation.fields, values)

    def diagnostics(self, grid: Grid) -> dict[str, Any]:
        """The solve's status and each condition's RMS violation at the constraint points."""
        w, status = self.weights()
        out: dict[str, Any] = {"violations": {"constraints_max": float(status.constraint_violation.max())}}
        out["solve"] = status.as_dict()
        return out


class HCTask:
    """The training task: solve every expert, then the residual of the solved u at fresh points."""

    def __init__(self, solver: HardConstrainedSolver, evaluate: Callable[[], dict[str, float]]):
        self.solver, self.model, self._evaluate = solver, solver.model, evaluate
        self.rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,)).item()))

    def loss(self) -> tuple[Tensor, dict[str, float]]:
        s = self.solver
        w, status = s.solve(self.model.solve_points)  # [K, N]
        opts = s.options.points
        pts = torch.as_tensor(s.boxes.sample(opts.loss, opts.sampler, self.rng), dtype=s.dtype, device=s.device)
        K, m, d = pts.shape
        D = s.model.basis.features(pts.reshape(K * m, d)).reshape(K, m, len(s.rows), -1).transpose(1, 2)
        r = s.pointwise(w, D, pts, s.source(pts))  # [K, m]
        loss = (r * r).mean()
        info = {"residual": float(loss.detach()), "solve_residual_max": float(status.residual.max()),
                "constraint_violation_max": float(status.constraint_violation.max())}
        if not s.linear:
            info["lm_iterations_max"] = float(status.iterations.max())
            info["lm_converged"] = float(status.converged.double().mean())
        return loss, info

    def before_step(self, step: int) -> None:
        pass

    def evaluate(self) -> dict[str, float]:
        return self._evaluate()

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def grid_counts(names: tuple[str, ...], counts: Mapping[str, int]) -> str:
    """'t2 x4' for logs and tables."""
    return " ".join(f"{n}{counts.get(n, 1)}" for n in names)

