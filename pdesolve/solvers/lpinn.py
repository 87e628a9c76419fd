"""Lagrangian PINN (LPINN): learn the solution along its characteristics instead of on the fixed grid.

For ``u_t + f(u, x, t) u_x = G(u, u_x, u_xx, x, t)`` (G: diffusion, reaction, sources) two networks of
the label ``s`` (where a characteristic starts) and time learn

- the position ``X(s, t)`` of the characteristic, with ``X_t = f(W, X, t)``;
- the state it carries, ``W(s, t) = u(X, t)``, with ``W_t = G`` evaluated at ``x = X``.

The start of every characteristic is exact by an output transform, ``X = x_s + (t - tau_s) V (N_X + d)``
and ``W = u_s + (t - tau_s) N_W`` (``V`` a velocity scale; the drift ``d`` is 0 on a periodic axis and
+-1 with an inflow wall), so neither the initial condition nor the inflow data needs a loss. The last
layer of each branch starts at zero: training starts from characteristics that keep their spacing
(dX/ds = 1) and their start values. On a periodic axis the labels are the initial positions, embedded
periodically. On a bounded axis, an inflow wall (velocity pointing in, with Dirichlet data) adds labels
beyond the wall: the characteristic that enters at time ``tau`` carries the wall value ``g(tau)``.
Derivatives with respect to x go through the Jacobian ``X_s`` (:mod:`pdesolve.nn.lagrangian`), so
the diffusion term is the physical ``u_xx`` also where characteristics compress.

Linear transport makes the residual along characteristics trivial to fit whatever the speed: this is
why LPINN succeeds where a plain PINN fails on ``u_t + beta u_x = 0`` at large beta.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from ..distributed import Ranks
from ..grid import Grid, GridAxis
from ..nn.features import CoordinateFeatures
from ..nn.jet import Jet
from ..nn.lagrangian import LagrangianDerivatives, to_grid
from ..nn.mlp import MLP, Activation
from ..plot import plot_characteristics
from ..problem import Domain, Problem
from ..sampling import Sampler
from ..solution import Solution
from ..task import Task
from .base import PointSolver, SolverMismatch
from .characteristics import Characteristics, transport_speed, wall_speeds, wall_value
from .pinn_training import AdaptiveWeights, AdaptiveWeightsOptions, CausalOptions, CausalWeights

if TYPE_CHECKING:
    from ..simulate.family import InitialConditionFamily


class LPointsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    interior: int = Field(2000, gt=0, description="collocation points (label, time), shared among the characteristic families")
    sampler: Sampler = "lhs"
    resample_every: int = Field(0, ge=0, description="draw fresh points every N steps (0: never)")


class LWeightsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    characteristic: float = Field(1.0, ge=0, description="weight of (X_t - f)^2 / V^2")
    state: float = Field(1.0, ge=0, description="weight of (W_t - G)^2")
    crossing: float = Field(0.0, ge=0, description="weight of min(dX/ds, 0)^2: characteristics of a viscous problem never cross")


class ConservationOptions(BaseModel):
    """A loss on the conserved total ``int u dx = int u0 dx`` (periodic conservation laws), by quadrature over labels."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    weight: float = Field(0.0, ge=0, description="0: off")
    times: int = Field(16, gt=0, description="equispaced times in (t0, t1] where the total is checked")
    labels: int = Field(256, gt=1, description="uniform labels of the quadrature (trapezoid rule, periodic)")


class LPINNOptions(BaseModel):
    """Network: ``width``, ``depth``, ``activation``. Advanced: the rest."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    width: int = Field(32, gt=0)
    depth: int = Field(3, gt=0)
    activation: Activation = "tanh"
    shared: bool = Field(False, description="one network with two outputs instead of one network per branch")
    periodic_modes: int = Field(1, ge=1, description="Fourier modes of the periodic label embedding")
    diffusion: Literal["physical", "label"] = Field(
        "physical", description="u_xx through the Jacobian dX/ds (physical) or as W_ss (label; exact only where dX/ds = 1)")
    jacobian_power: int = Field(3, ge=0, le=3, description=(
        "multiply the state residual by (dX/ds)^k: k = 3 clears the divisions by dX/ds in u_x and u_xx, so that "
        "compressing characteristics (shocks) cannot blow the loss up"))
    frame: Literal["rest", "mean"] = Field("rest", description=(
        "periodic axis: characteristics start at rest (the position branch learns all of the motion) or moving with "
        "the mean initial transport speed (mean: a Galilean frame, the position branch learns the deviation)"))
    labels: int = Field(0, ge=0, description="labels per family when mapping back to a grid (0: 8 per grid point, at least 2048)")
    dtype: Literal["float32", "float64"] = "float32"
    points: LPointsOptions = LPointsOptions()
    weights: LWeightsOptions = LWeightsOptions()
    conservation: ConservationOptions = ConservationOptions()
    causal: CausalOptions | None = Field(None, description="weight both residuals by time chunks, respecting causality (as the "
                                         "pinn's; one weight per chunk from the two residuals together)")
    adaptive_weights: AdaptiveWeightsOptions | None = Field(None, description="balance the loss terms by gradient norms or NTK "
                                                            "traces (as the pinn's)")


# ----------------------------------------------------------------------------- physics along characteristics
def residuals(problem: Problem, t: Jet, X: Jet, W: Jet, speed: float = 1.0, label_derivatives: bool = False,
              jacobian_power: int = 0) -> dict[str, Tensor]:
    """The LPINN residuals of ``u_t + f u_x = G`` from label jets ``t, X, W`` ``[N]`` (over ``(t, s)``), each ``[N]``.

    ``characteristic``: ``(X_t - f) / speed``; ``state``: ``W_t - G`` with ``G = F + f u_x`` (``F`` the
    equation's forcing, plus the source), times ``X_s ** jacobian_power``; ``eulerian``: the PDE residual ``u_t - F`` itself (it equals
    ``state - speed * characteristic * u_x``); ``inside``: the point lies in the domain; ``jacobian``: ``X_s``.
    """
    eq, ax = problem.equation, problem.domain.space[0]
    d = LagrangianDerivatives(W, X, t.v, eq.fields[0], ax.name, label_derivatives=label_derivatives)
    f = eq.velocity(d, problem.coefficients)
    forcing = eq.forcing(d, problem.coefficients)[:, 0]
    if problem.source is not None:
        forcing = forcing + problem.source.torch(t=t.v, **{ax.name: X.v})
    inside = torch.ones_like(X.v, dtype=torch.bool) if ax.periodic else (X.v >= ax.lo) & (X.v <= ax.hi)
    return {
        "characteristic": (X.g[:, 0] - f) / speed,
        "state": (W.g[:, 0] - (forcing + f * d.u_x)) * X.g[:, 1] ** jacobian_power if jacobian_power else W.g[:, 0] - (forcing + f * d.u_x),
        "eulerian": d.u_t - forcing,
        "inside": inside,
        "jacobian": X.g[:, 1],
    }


class _Recorder:
    """A Derivatives accessor that notes which derivatives an equation reads."""

    def __init__(self, axis: str):
        self.space, self.orders = (axis,), {0}

    def __call__(self, field: str, *axes: str) -> Tensor:
        self.orders.add(len([a for a in axes if a != "t"]))
        return torch.zeros(1, dtype=torch.float64)

    def coord(self, name: str) -> Tensor:
        return torch.zeros(1, dtype=torch.float64)


def derivative_order(problem: Problem) -> int:
    """The jet order the equation needs: 2 when its forcing reads u_xx, else 1 (a third cheaper jet pass)."""
    rec = _Recorder(problem.domain.space[0].name)
    problem.equation.forcing(rec, problem.coefficients)
    problem.equation.velocity(rec, problem.coefficients)
    return 2 if max(rec.orders) >= 2 else 1


def conserves(problem: Problem, n: int = 64) -> bool:
    """Whether the equation keeps ``int u dx`` on its periodic axis: its grid right-hand side integrates to zero
    for a few random smooth periodic states (true of convection, convection-diffusion and Burgers; not of reactions)."""
    ax = problem.domain.space[0]
    if not ax.periodic or problem.source is not None:
        return False
    grid = Grid((GridAxis(ax.name, ax.lo, ax.hi, n, True),))
    theta = 2 * np.pi * (grid.coords(ax.name) - ax.lo) / (ax.hi - ax.lo)
    rng = np.random.default_rng(0)
    for _ in range(3):
        a, b = rng.normal(size=(2, 4))
        u = 0.5 + sum(a[k] * np.cos(k * theta) + b[k] * np.sin(k * theta) for k in range(1, 4)) / 3
        rhs = problem.equation.rhs(torch.as_tensor(u[None]), grid, problem.coefficients).numpy()
        if abs(rhs.mean()) > 1e-9 * (np.abs(rhs).mean() + 1e-300):
            return False
    return True


# ----------------------------------------------------------------------------- model
class LPINNModel(nn.Module):
    """``(t, s) [N, 2]`` -> raw branch outputs ``(N_W, N_X)``, each ``[N]``; the start transform is applied by the task."""

    def __init__(self, label_domain: Domain, options: LPINNOptions):
        super().__init__()
        self.features = CoordinateFeatures(label_domain, options.periodic_modes)
        size, o = self.features.size, options
        if o.shared:
            self.branches = nn.ModuleList([MLP(size, 2, o.width, o.depth, o.activation)])
        else:
            self.branches = nn.ModuleList([MLP(size, 1, o.width, o.depth, o.activation) for _ in range(2)])
        # start from characteristics at rest carrying their start values: dX/ds = 1 everywhere, so no crossing
        # (dX/ds <= 0) blows up the Jacobian divisions before training has begun
        for b in self.branches:
            nn.init.zeros_(b.layers[-1].weight)

    def jet(self, cols: list[Jet]) -> tuple[Jet, Jet]:
        feats = self.features.jet(cols)
        outs = [b.forward_jet(feats) for b in self.branches]
        return (outs[0][..., 0], outs[0][..., 1]) if len(outs) == 1 else (outs[0][..., 0], outs[1][..., 0])

    def forward(self, coords: Tensor) -> tuple[Tensor, Tensor]:
        feats = self.features(coords)
        outs = [b(feats) for b in self.branches]
        return (outs[0][:, 0], outs[0][:, 1]) if len(outs) == 1 else (outs[0][:, 0], outs[1][:, 0])


# ----------------------------------------------------------------------------- task
class LPINNTask(Task):
    """Collocation points along the characteristic families, and the two residual losses."""

    owner = "solver 'lpinn'"

    def __init__(self, problem: Problem, model: LPINNModel, chars: Characteristics, options: LPINNOptions,
                 device: torch.device, dtype: torch.dtype, evaluate: Callable[[], dict[str, float]]):
        self.problem, self.model, self.chars, self.options = problem, model, chars, options
        self.device, self.dtype, self._evaluate = device, dtype, evaluate
        self.params = problem.coefficients
        self.rng = np.random.default_rng(torch.randint(0, 2**31, (1,)).item())
        self.points = self._sample()
        self.order = derivative_order(problem)
        w = options.weights
        c = options.conservation
        self.names = ["characteristic", "state"] + (["crossing"] if w.crossing else []) + (["conservation"] if c.weight else [])
        self.weights = torch.tensor([w.characteristic, w.state] + ([w.crossing] if w.crossing else []) + ([c.weight] if c.weight else []),
                                    dtype=dtype, device=device)
        if c.weight:
            ax, (t0, t1) = chars.axis, (chars.t0, chars.t1)
            labels = ax.lo + (ax.hi - ax.lo) * np.arange(c.labels) / c.labels
            times = t0 + (t1 - t0) * np.arange(1, c.times + 1) / c.times
            tt, ss = np.meshgrid(times, labels, indexing="ij")
            self.quadrature = torch.as_tensor(np.stack([tt.ravel(), ss.ravel()], 1), dtype=dtype, device=device)
            u0 = chars.u0.numpy(**{ax.name: labels})
            self.total0 = float(u0.mean() * (ax.hi - ax.lo))
            self.total_scale = float(max(np.sqrt((u0**2).mean()), 1e-12) * (ax.hi - ax.lo))
        self.causal = CausalWeights(options.causal, chars.t0, chars.t1) if options.causal is not None else None
        self.adaptive = AdaptiveWeights(options.adaptive_weights, self.names, self.weights) \
            if options.adaptive_weights is not None else None
        self._update_weights_at: int | None = None

    def _sample(self) -> list[Tensor]:
        p = self.options.points
        return [torch.as_tensor(a, dtype=self.dtype, device=self.device) for a in self.chars.sample(p.interior, p.sampler, self.rng)]

    # ------------------------------------------------------------------ the Lagrangian fields
    def fields(self, groups: list[Tensor], order: int = 2) -> list[tuple[Jet, Jet, Jet]]:
        """``(t, X, W)`` jets per family for the points ``groups`` (one network pass over all of them)."""
        coords = torch.cat(groups) if len(groups) > 1 else groups[0]
        cols = Jet.variables(coords, order, slice(1, 2))
        n_w, n_x = self.model.jet(cols)
        out, start = [], 0
        for fam, g in zip(self.chars.families, groups):
            part = slice(start, start + len(g))
            start += len(g)
            t, s = cols[0].points(part), cols[1].points(part)
            x_s, tau, u_s = self.chars.start(fam, s)
            age = t - tau
            X = x_s + age * (n_x.points(part) + fam.drift) * self.chars.speed
            W = u_s + age * n_w.points(part)
            out.append((t, X, W))
        return out

    def residuals(self, groups: list[Tensor], order: int | None = None) -> dict[str, Tensor]:
        """:func:`residuals` at the points ``groups`` (all families concatenated), each ``[N]``."""
        o = self.options
        parts = [residuals(self.problem, t, X, W, self.chars.speed, o.diffusion == "label", o.jacobian_power)
                 for t, X, W in self.fields(groups, order or self.order)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def totals(self) -> Tensor:
        """``int u dx = int W X_s ds`` at the quadrature times, ``[times]`` (trapezoid rule over periodic labels)."""
        c = self.options.conservation
        _, X, W = self.fields([self.quadrature], order=1)[0]
        length = self.chars.axis.hi - self.chars.axis.lo
        return (W.v * X.g[:, 1]).reshape(c.times, c.labels).mean(-1) * length

    def loss(self) -> tuple[Tensor, dict[str, float]]:
        r = self.residuals(self.points)
        values = [r["characteristic"], r["state"]]  # each term's values per point
        if self.options.weights.crossing:
            values.append(torch.relu(-r["jacobian"]))
        squares = [v * v for v in values]
        # characteristics that left a bounded domain carry nothing the problem asks for
        m = None if self.chars.axis.periodic else r["inside"].detach().to(squares[0].dtype)
        if self.causal is not None:
            chunk = self.causal.chunk_of(torch.cat([g[:, 0] for g in self.points]))
            stacked = torch.stack(squares, -1)
            terms = list(self.causal.losses(stacked if m is None else stacked * m[:, None], chunk, m))
        elif m is None:
            terms = [q.mean() for q in squares]
        else:
            terms = [(q * m).sum() / m.sum().clamp_min(1.0) for q in squares]
        if self.options.conservation.weight:
            misfit = (self.totals() - self.total0) / self.total_scale
            values.append(misfit)
            terms.append((misfit**2).mean())
        stacked = torch.stack(terms)
        if self.adaptive is not None and self._update_weights_at is not None:
            params = [p for p in self.model.parameters() if p.requires_grad]
            self.adaptive.update(params, values, stacked, seed=self._update_weights_at)
            self.weights = self.adaptive.weights
            self._update_weights_at = None  # once per step (L-BFGS evaluates the loss several times)
        record = dict(zip(self.names, stacked.detach().tolist()))
        for method in (self.causal, self.adaptive):
            if method is not None:
                record.update(method.record())
        return (stacked * self.weights).sum(), record

    def before_step(self, step: int) -> None:
        every = self.options.points.resample_every
        if every and step and step % every == 0:
            self.points = self._sample()
        if self.causal is not None and step:
            self.causal.after_step()  # anneal the tolerance from the last step's weights
        if self.adaptive is not None and self.adaptive.due(step):
            self._update_weights_at = step

    def evaluate(self) -> dict[str, float]:
        return self._evaluate()

    def state_dict(self) -> dict[str, Any]:
        state = {"points": [p.cpu() for p in self.points], "rng": self.rng.bit_generator.state}
        if self.causal is not None:
            state["causal"] = self.causal.state_dict()
        if self.adaptive is not None:
            state["adaptive_weights"] = self.adaptive.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.points = [p.to(self.device, self.dtype) for p in state["points"]]
        self.rng.bit_generator.state = state["rng"]
        if self.causal is not None:
            self.causal.load_state_dict(state["causal"])
        if self.adaptive is not None:
            self.adaptive.load_state_dict(state["adaptive_weights"])
            self.weights = self.adaptive.weights


# ----------------------------------------------------------------------------- solver
class LPINN(PointSolver):
    """``solver: lpinn`` — see :class:`LPINNOptions` and the module docstring."""

    name = "lpinn"
    Options = LPINNOptions

    def __init__(self, problem: Problem, options: LPINNOptions, device: torch.device, dtype: torch.dtype | None = None, *,
                 ranks: Ranks | None = None, family: InitialConditionFamily | None = None):
        dtype = dtype or (torch.float64 if options.dtype == "float64" else torch.float32)
        super().__init__(problem, options, device, dtype, ranks=ranks, family=family)
        if options.conservation.weight and not conserves(problem):
            raise SolverMismatch(f"solver 'lpinn' cannot solve problem {problem.name!r} with conservation.weight > 0: "
                                 f"{problem.equation.name!r} does not keep int u dx here (it needs a periodic axis, no source "
                                 "and an equation in conservation form); set solvers.lpinn.conservation.weight: 0")
        self.chars = Characteristics(problem, options.frame)
        self.model = LPINNModel(self.chars.label_domain, options).to(device=device, dtype=dtype)
        self._task: LPINNTask | None = None

    @classmethod
    def mismatches(cls, problem: Problem) -> list[str]:
        dom, eq = problem.domain, problem.equation
        if dom.time is None:
            return ["LPINN follows characteristics in time; the problem has no time axis"]
        out = []
        if len(dom.space) != 1:
            out.append(f"LPINN handles one space axis, got {len(dom.space)} ({', '.join(dom.space_names)})")
        if len(eq.fields) != 1:
            out.append(f"LPINN carries one field along characteristics, got {len(eq.fields)} ({', '.join(eq.fields)})")
        if eq.max_space_order > 2:
            out.append(f"equation {eq.name!r} has space derivatives of order {eq.max_space_order}; LPINN carries them up to order 2")
        if out:
            return out
        ax = dom.space[0]
        s = np.linspace(ax.lo, ax.hi, 9)
        if transport_speed(problem, np.zeros_like(s), s, np.full_like(s, dom.time[0])) is None:
            return [f"equation {eq.name!r} has no transport term u_t + f u_{ax.name} (its velocity() is None), "
                    "so it has no characteristics to follow; use solver 'pinn'"]
        for bc in problem.boundary:
            if bc.kind != "dirichlet":
                out.append(f"LPINN takes Dirichlet data at inflow walls, got a {bc.kind} condition on {bc.axis}.{bc.side}")
        if out or ax.periodic:
            return out
        for side, sign in (("lo", 1.0), ("hi", -1.0)):
            inward = sign * wall_speeds(problem, side)
            if np.any(inward > 0) and not np.all(inward > 0):
                out.append(f"the flow through {ax.name}.{side} changes direction over time; LPINN needs a wall that is "
                           "either inflow or not over the whole run")
            elif np.all(inward > 0) and wall_value(problem, side) is None:
                out.append(f"characteristics enter through {ax.name}.{side} but it has no Dirichlet condition to carry in")
        return out

    def task(self, evaluate: Callable[[], dict[str, float]]) -> LPINNTask:
        self._task = LPINNTask(self.problem, self.model, self.chars, self.options, self.device, self.dtype, evaluate)  # type: ignore[arg-type]
        return self._task

    # ------------------------------------------------------------------ prediction
    def _labels(self, grid: Grid) -> list[np.ndarray]:
        ax = grid.axis(self.chars.axis.name)
        per_length = max(8 * ax.n, 2048) / (self.chars.axis.hi - self.chars.axis.lo)
        if self.options.labels:
            per_length = self.options.labels / (self.chars.axis.hi - self.chars.axis.lo)
        return self.chars.labels(per_length)

    def lagrangian(self, times: np.ndarray, labels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``X`` and states ``W`` at ``times`` x labels, ``[time, labels]`` float64 (NaN before a start)."""
        xs, ws = [], []
        for fam, s in zip(self.chars.families, labels):
            tt, ss = np.meshgrid(times, s, indexing="ij")
            coords = torch.as_tensor(np.stack([tt.ravel(), ss.ravel()], 1), dtype=self.dtype, device=self.device)
            X, W = [], []
            with torch.no_grad():
                for c in coords.split(65536):
                    n_w, n_x = self.model(c)
                    x_s, tau, u_s = self.chars.start(fam, c[:, 1])
                    age = c[:, 0] - tau
                    X.append(x_s + age * (n_x + fam.drift) * self.chars.speed)
                    W.append(u_s + age * n_w)
            X_, W_ = (torch.cat(v).double().cpu().numpy().reshape(tt.shape) for v in (X, W))
            early = tt < self.chars.start_time(fam, ss) - 1e-12
            X_[early], W_[early] = np.nan, np.nan
            xs.append(X_)
            ws.append(W_)
        return np.concatenate(xs, axis=1), np.concatenate(ws, axis=1)

    def predict(self, grid: Grid) -> Solution:
        if grid.time is None:
            raise ValueError("LPINN predicts on grids with a time axis, got one without")
        ax = self.chars.axis
        positions, states = self.lagrangian(grid.coords("t"), self._labels(grid))
        u = to_grid(positions, states, grid.coords(ax.name), ax.lo, ax.hi, ax.periodic)
        return Solution(grid, self.problem.equation.fields, u[None, :, None, :])

    def diagnostics(self, grid: Grid) -> dict[str, Any]:
        """The PDE residual on ``grid`` (from the labels), each loss residual's RMS, and the characteristics."""
        task = self._task or self.task(lambda: {})
        ax, times = self.chars.axis, grid.coords("t")
        labels = self.chars.labels(grid.axis(ax.name).n / (ax.hi - ax.lo))
        meshes = [np.meshgrid(times, s, indexing="ij") for s in labels]  # [time, labels] per family
        groups = [torch.as_tensor(np.stack([tt.ravel(), ss.ravel()], 1), dtype=self.dtype, device=self.device) for tt, ss in meshes]
        res = task.residuals(groups)
        table = {k: np.concatenate(_split(v.detach().double().cpu().numpy(), labels, len(times)), axis=1) for k, v in res.items()}
        valid = np.concatenate([tt >= self.chars.start_time(fam, ss) - 1e-12 for fam, (tt, ss) in zip(self.chars.families, meshes)], 1)
        valid &= table["inside"] > 0
        positions, states = self.lagrangian(times, labels)
        residual = np.where(valid, np.abs(table["eulerian"]), np.nan)
        res_map = to_grid(np.where(valid, positions, np.nan), residual, grid.coords(ax.name), ax.lo, ax.hi, ax.periodic)
        u0 = self.chars.u0.numpy(**{ax.name: labels[0]})
        violations = {
            "residual_rms": float(np.sqrt(np.mean(res_map**2))),
            "characteristic_rms": float(np.sqrt(np.mean(table["characteristic"][valid] ** 2))),
            "state_rms": float(np.sqrt(np.mean(table["state"][valid] ** 2))),
            "initial": float(np.sqrt(np.mean((states[0, : len(labels[0])] - u0) ** 2))),
            "min_jacobian": float(np.min(table["jacobian"][valid])),
        }
        few = [s[:: max(1, len(s) // 32)] for s in labels]
        pos_few, _ = self.lagrangian(times, few)
        chars = {"t": times, "positions": pos_few, "lo": ax.lo, "hi": ax.hi, "periodic": ax.periodic, "axis": ax.name}
        return {"residual_map": res_map[None], "violations": violations, "characteristics": chars,
                "figures": {"characteristics": partial(plot_characteristics, chars=chars)}}


def _split(flat: np.ndarray, labels: list[np.ndarray], nt: int) -> list[np.ndarray]:
    """Undo the per-family flattening of ``[time, labels]`` meshes."""
    out, start = [], 0
    for s in labels:
        n = nt * len(s)
        out.append(flat[start : start + n].reshape(nt, len(s)))
        start += n
    return out
