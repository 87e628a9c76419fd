"""The pieces of the hard-constrained basis model: expert boxes, the backbone's basis, the PDE residual of
``u = b . w`` in terms of feature rows, and the condition rows.

Shapes: points ``[K, m, d]`` (columns (t, x, ...)), feature matrices ``D [K, k, m, N]`` with the k rows u,
du/d(each coordinate), d2u/d(space axis)^2. Used by :mod:`.solver`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from ... import sampling
from ...nn.jet import Jet
from ...problem import Problem
from ..base import SolverMismatch
from ..pinn_options import build_network, input_features
from .options import HCOptions, HCPointsOptions


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
    """The :class:`pdesolve.equations.Derivatives` accessor over feature rows ``f [batch, k, m]``; a system of
    ``fields`` reads field g's rows at ``g k + row`` (``f [batch, F k, m]``)."""

    def __init__(self, f: Tensor, rows: Mapping[tuple[str, ...], int], coords: Tensor, names: tuple[str, ...],
                 u_floor: float | None = None, fields: tuple[str, ...] = ("u",)):
        self.f, self.rows, self.coords, self.names, self.u_floor = f, rows, coords, names, u_floor
        self.space = tuple(n for n in names if n != "t")
        self.offset = {name: g * len(rows) for g, name in enumerate(fields)} if len(fields) > 1 else None

    def __call__(self, field: str, *axes: str) -> Tensor:
        key = tuple(axes)
        if key not in self.rows:
            raise ValueError(f"derivative {field}_{''.join(axes)} is not carried; the basis carries {sorted(self.rows)}")
        start = 0 if self.offset is None else self.offset[field]
        if not key and self.u_floor is not None:
            return self.f[:, start].clamp_min(self.u_floor)
        return self.f[:, start + self.rows[key]]

    def coord(self, name: str) -> Tensor:
        return self.coords[..., self.names.index(name)]


class PDEResidual:
    """F(features [batch, k, m], coords [batch, m, d], source [batch, m]) -> residual [batch, m], pointwise.

    A system of F fields reads features ``[batch, F k, m]`` (field g's rows at g k + row) and returns one
    residual per equation, ``[batch, F, m]`` (the source, if any, is subtracted from each).
    Scaled by the time span so a residual of u_t - F reads as a change of u over the whole horizon.
    """

    def __init__(self, problem: Problem, rows: Mapping[tuple[str, ...], int], u_floor: float | None = None):
        self.eq, self.params, self.rows, self.u_floor = problem.equation, problem.coefficients, rows, u_floor
        self.names, self.fields = problem.domain.names, tuple(problem.equation.fields)
        self.scale = float(problem.domain.time[1] - problem.domain.time[0]) if problem.domain.time else 1.0

    def __call__(self, f: Tensor, coords: Tensor, source: Tensor) -> Tensor:
        d = FeatureDerivatives(f, self.rows, coords, self.names, self.u_floor, self.fields)
        if len(self.fields) == 1:
            return (self.eq.residual(d, self.params)[..., 0] - source) * self.scale
        return ((self.eq.residual(d, self.params) - source[..., None]) * self.scale).movedim(-1, 1)


def feature_rows(names: tuple[str, ...]) -> dict[tuple[str, ...], int]:
    """Row of each carried derivative: u, then d/d(each coordinate), then d2/d(space axis)^2."""
    keys = [()] + [(n,) for n in names] + [(n, n) for n in names if n != "t"]
    return {k: i for i, k in enumerate(keys)}


class BasisNet(nn.Module):
    """coordinates ``[n, d]`` (and, for a family, the initial condition at sensor points ``[n, s]``) -> N basis
    functions ``[n, N]``; :meth:`features` adds their derivatives.

    The backbone is ``options.network`` (one of the PINN's :data:`~pdesolve.solvers.pinn_options.PINN_NETWORKS`) over
    the coordinate features (random Fourier features around them with ``fourier_features``) and the sensor values,
    its dense layers factorized with ``weight_factorization``, as :class:`pdesolve.solvers.pinn.PINNModel` builds its own.
    """

    def __init__(self, problem: Problem, options: HCOptions):
        super().__init__()
        self.features_in = input_features(problem.domain, options.periodic_modes, options.fourier_features)
        self.sensors = 0 if options.family is None else options.family.sensors ** len(problem.domain.space)
        self.net = build_network(options.network, self.features_in.size + self.sensors, options.basis, options.width, options.depth,
                                 options.activation, options.weight_factorization)
        self.hess = slice(1 if problem.domain.time is not None else 0, len(problem.domain.names))

    def forward(self, coords: Tensor, sensors: Tensor | None = None) -> Tensor:
        x = self.features_in(coords)
        return self.net(x if sensors is None else torch.cat([x, sensors], dim=-1))

    def features(self, coords: Tensor, sensors: Tensor | None = None) -> Tensor:
        """``[n, k, N]``: values, gradients and diagonal second space derivatives, rows as :func:`feature_rows`.

        ``sensors [n, s]`` enter as constants (zero derivatives in the coordinates).
        """
        x = self.features_in.jet(Jet.variables(coords, 2, self.hess))
        if sensors is not None:
            zeros = sensors.new_zeros(len(sensors), x.g.shape[1], sensors.shape[1])
            h = None if x.h is None else torch.cat([x.h, sensors.new_zeros(len(sensors), x.h.shape[1], sensors.shape[1])], -1)
            x = Jet(torch.cat([x.v, sensors], -1), torch.cat([x.g, zeros], -1), h, x.hess)
        out = self.net.forward_jet(x)
        return torch.cat([out.v[:, None], out.g, out.h], dim=1)


class HCModel(nn.Module):
    """The backbone plus the fixed points of the inner solves (buffers, so checkpoints restore predictions)."""

    def __init__(self, problem: Problem, options: HCOptions, boxes: ExpertBoxes, rng: np.random.Generator):
        super().__init__()
        self.basis = BasisNet(problem, options)
        # soft baseline: the output layer's weights per expert, trained (not solved for)
        n = options.basis * len(problem.equation.fields)  # a system: one block of N weights per field
        self.soft_w = nn.Parameter(torch.randn(boxes.count, n) / options.basis**0.5) if options.soft else None
        self.register_buffer("solve_points", torch.as_tensor(boxes.sample(options.points.solve, options.points.sampler, rng)))

    def forward(self, coords: Tensor) -> Tensor:
        return self.basis(coords)


# ----------------------------------------------------------------------------- constraints
class Constraints:
    """Initial and boundary conditions at fixed points as rows ``C w = d`` (alpha u + beta du/dn = value).

    A system of F fields has one row per (point, field): the initial rows are field-major (field 0 at the
    initial points, then field 1, ...), a boundary condition's rows belong to its ``field``; ``field [p]``
    says which, and a row's coefficients sit in that field's block of the F N weights (:meth:`place`).
    """

    def __init__(self, problem: Problem, options: HCPointsOptions):
        dom, names = problem.domain, problem.domain.names
        fields = tuple(problem.equation.fields)
        rng = np.random.default_rng(0)
        pts, alpha, beta, axis, field, values = [], [], [], [], [], []
        if problem.initial is not None and dom.time is not None and options.initial:
            p = sampling.initial(dom, options.initial, "uniform", rng)  # cell centres: never a corner
            for g in range(len(fields)):
                pts.append(p)
                alpha += [1.0] * len(p)
                beta += [0.0] * len(p)
                axis += [0] * len(p)
                field += [g] * len(p)
                values.append(("initial", fields[g], len(p)))
        for bc in problem.boundary:
            if not options.boundary:
                break
            p = face_points(problem, bc.axis, bc.side, options.boundary)
            pts.append(p)
            alpha += [bc.alpha] * len(p)
            beta += [bc.beta * (-1.0 if bc.side == "lo" else 1.0)] * len(p)  # outward normal derivative
            axis += [names.index(bc.axis)] * len(p)
            field += [fields.index(bc.field) if len(fields) > 1 else 0] * len(p)
            values.append(("boundary", bc, len(p)))
        self.fields = len(fields)
        self.points = np.concatenate(pts) if pts else np.zeros((0, len(names)))
        self.alpha, self.beta, self.axis = np.array(alpha), np.array(beta), np.array(axis, dtype=int)
        self.field = np.array(field, dtype=int)
        self.count = len(self.points)
        env = dict(zip(names, torch.as_tensor(self.points, dtype=torch.float64).unbind(-1)))
        target, start = [], 0
        for kind, what, n in values:
            part = {k: v[start:start + n] for k, v in env.items()}
            expr = problem.initial.values[what] if kind == "initial" else what.value  # type: ignore[union-attr]
            target.append(torch.broadcast_to(torch.as_tensor(expr.torch(**part), dtype=torch.float64), (n,)))
            start += n
        self.target = torch.cat(target) if target else torch.zeros(0, dtype=torch.float64)
        n_initial = options.initial * self.fields if values and values[0][0] == "initial" else 0
        self.n_initial = n_initial  # initial rows (points times fields)
        if n_initial:
            per_field = self.target[:n_initial].reshape(self.fields, -1).mean(1)
        else:
            per_field = torch.full((self.fields,), float(self.target.mean()) if self.count else 0.0, dtype=torch.float64)
        self.initial_means = per_field  # [F]
        if self.fields == 1:
            self.initial_mean = float(self.target[:n_initial].mean()) if n_initial else float(self.target.mean()) if self.count else 0.0
        else:
            self.initial_mean = float(per_field.mean())

    def per_field(self) -> np.ndarray:
        """Condition rows of each field, ``[F]`` (each field's block must hold its exact rows)."""
        return np.bincount(self.field, minlength=self.fields)

    def place(self, X: Tensor, field: np.ndarray) -> Tensor:
        """Rows ``X [..., r, N]`` of the fields ``field [r]`` in their blocks of the weights, ``[..., r, F N]``
        (X itself for one field)."""
        if self.fields == 1:
            return X
        onehot = torch.as_tensor(np.eye(self.fields)[field], dtype=X.dtype, device=X.device)  # [r, F]
        return (onehot[:, :, None] * X[..., None, :]).flatten(-2)

    def rows(self, D: Tensor) -> Tensor:
        """C ``[..., p, N]`` from the features ``[..., p, k, N]`` at the constraint points (a system: ``[..., p, F N]``)."""
        alpha = torch.as_tensor(self.alpha, dtype=D.dtype, device=D.device)[:, None]
        beta = torch.as_tensor(self.beta, dtype=D.dtype, device=D.device)[:, None]
        grad = D[..., torch.arange(self.count, device=D.device), 1 + torch.as_tensor(self.axis, device=D.device), :]  # [..., p, N]
        return self.place(alpha * D[..., 0, :] + beta * grad, self.field)


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
