"""Plain physics-informed neural network (PINN): the baseline every other back-end is compared with.

An MLP over coordinate features (periodic axes embedded as Fourier modes) whose output is passed
through an automatic exact transform for the initial condition and Dirichlet walls (optional), and
trained on the mean-square PDE residual at collocation points plus the remaining condition losses.
Derivatives come from forward-mode jets (:mod:`pdesolve.nn.jet`): value, gradient and Hessian in one
pass, then one backward pass for the parameters.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import sampling
from ..distributed import Ranks
from ..grid import Grid
from ..metrics import outside_as_nan, region_mask
from ..nn import sparsity
from ..nn.features import CoordinateFeatures
from ..nn.fused_mlp import RowLayout, fusable, fused_forward_rows, stack_rows, unstack_rows
from ..nn.hard import HardConstraint
from ..nn.jet import MAX_ORDER, Jet, JetDerivatives
from ..nn.jet_blocks import JetBlock, JetCarry
from ..problem import BoundaryCondition, Domain, Problem
from ..solution import Solution
from ..task import LOSS, JetBlockTask
from . import pinn_region
from .base import PointSolver, SolverMismatch, pointwise_mismatches
from .pinn_inverse import DATA_TERM, UnknownCoefficients, data_misfit, inverse_mismatches, observation_term, recovered
from .pinn_marching import edges, window_constraints, window_of
from .pinn_options import PINNOptions, build_network, input_features, option_mismatches
from .pinn_training import (
    AdaptiveWeights,
    CausalWeights,
    Curriculum,
)

if TYPE_CHECKING:
    from ..simulate.family import InitialConditionFamily


class FlooredDerivatives:
    """A derivatives accessor that reads the values (not the derivatives) of every field as max(u, floor)."""

    def __init__(self, d: JetDerivatives, floor: float):
        self.d, self.floor, self.space = d, floor, d.space

    def __call__(self, field: str, *axes: str) -> Tensor:
        return self.d(field, *axes) if axes else self.d(field).clamp_min(self.floor)

    def coord(self, name: str) -> Tensor:
        return self.d.coord(name)


class PINNModel(nn.Module):
    """coordinates ``[N, d]`` (t, x, ...) -> fields ``[N, channels]``, with the exact transform applied."""

    def __init__(self, problem: Problem, options: PINNOptions):
        super().__init__()
        self.features = input_features(problem.domain, options.periodic_modes, options.fourier_features)
        marching = options.time_marching
        windows = marching.windows if marching is not None else 1
        nets = [self._network(problem, options) for _ in range(windows)]
        self.net = nets[0]  # the network of the first (or only) time window
        self.later = nn.ModuleList(nets[1:])  # the later windows' networks (time marching; empty otherwise)
        # the exact transform of Dirichlet walls exists on boxes only: with a geometry its conditions are soft terms
        self.hard = HardConstraint(problem, dirichlet=problem.domain.geometry is None) if options.hard_constraints else None
        self.unknowns = UnknownCoefficients(problem)  # an inverse problem's coefficients (none for a forward problem)
        # second derivatives are carried along the space axes only (t is column 0 when present)
        self.hess = slice(1 if problem.domain.time is not None else 0, len(problem.domain.names))
        # and the mixed second derivatives the equation reads (u_xy), as pairs of coordinate columns
        self.mixed = tuple((problem.domain.names.index(a), problem.domain.names.index(b)) for a, b in problem.equation.mixed_derivatives)
        self.names, self.channels = problem.domain.names, len(problem.equation.fields)
        self.active = 0  # the time window being trained
        self.bounds = edges(*problem.domain.time, windows) if marching is not None and problem.domain.time is not None else []
        self.hards = [self.hard] if marching is None or self.hard is None else \
            window_constraints(self.hard, self.bounds, self._solution_of, self.names)
        # a plain MLP's jet pass runs as one autograd Function with a hand-written backward (nn/fused_mlp.py)
        self.fused = all(fusable(net) for net in nets) and not self.mixed  # the fused rows carry no mixed derivatives

    def _network(self, problem: Problem, options: PINNOptions) -> nn.Module:
        net = build_network(options.network, self.features.size, len(problem.equation.fields), options.width, options.depth,
                            options.activation, options.weight_factorization)
        if options.sparsity is not None:  # never with a factorization (option_mismatches)
            sparsity.sparsify(net, options.sparsity, owner="solver 'pinn'")
        return net

    def network(self, window: int) -> nn.Module:
        """The network of a time window (0 without time marching)."""
        return self.net if window == 0 else self.later[window - 1]

    @property
    def windows(self) -> int:
        return 1 + len(self.later)

    def _solution_of(self, window: int) -> Callable[[list[Jet]], Jet]:
        return lambda cols: self.window_jet(window, cols)

    def window_jet(self, window: int, cols: list[Jet], frame: list | None = None, inputs: Tensor | None = None) -> Jet:
        """The fields' jet of one time window's network (and its exact transform) at coordinate jets ``cols``;
        ``inputs``: :meth:`inputs` there, if kept (the fused pass only).

        With time marching, a window's network reads its window stretched onto the whole time interval (as if it
        were the only window): a short window would otherwise be a sliver of the network's input range, across
        which the solution would need steep weights to change as much as it does."""
        net = self.network(window)
        if self.fused and not cols[0].v.requires_grad:  # coordinates that need gradients (nested autograd): generic jets
            layout = RowLayout.of(cols[0])
            rows = stack_rows(self.features.jet(self.window_inputs(window, cols))) if inputs is None else inputs
            out = unstack_rows(fused_forward_rows(net, rows, layout), layout, cols[0])
        else:
            out = net.forward_jet(self.features.jet(self.window_inputs(window, cols)))
        hard = self.hards[window]
        return hard(cols, out, frame) if hard is not None and hard.active else out

    def window_inputs(self, window: int, cols: list[Jet]) -> list[Jet]:
        """The coordinates a window's network reads: with time marching, the window stretched onto the time interval."""
        if not self.bounds:
            return cols
        (t0, t1), lo, hi = (self.bounds[0], self.bounds[-1]), self.bounds[window], self.bounds[window + 1]
        return [(cols[0] - lo) * ((t1 - t0) / (hi - lo)) + t0, *cols[1:]]

    def jet(self, coords: Tensor, order: int = 2, frame: list | None = None, inputs: Tensor | None = None) -> Jet:
        """The fields' jet at ``coords`` (of the window being trained); ``frame``: the exact transform's
        :meth:`HardConstraint.frame` there, ``inputs``: :meth:`inputs` there, if kept."""
        return self.window_jet(self.active, Jet.variables(coords, order, self.hess, self.mixed), frame, inputs)

    def inputs(self, coords: Tensor, order: int = 2) -> Tensor | None:
        """The active window's network input rows ``[R, N, features]`` at ``coords`` for the fused pass (the coordinate
        features' jet stacked, :func:`~pdesolve.nn.fused_mlp.stack_rows`); they have no parameters, so a solver with
        fixed points computes them once. None on the generic path."""
        if not self.fused:
            return None
        with torch.no_grad():
            return stack_rows(self.features.jet(self.window_inputs(self.active, Jet.variables(coords, order, self.hess))))

    def frame(self, coords: Tensor, order: int = 2) -> list | None:
        """The exact transform's parameter-free part at ``coords`` (None without one)."""
        hard = self.hards[self.active]
        if hard is None or not hard.active:
            return None
        with torch.no_grad():
            return hard.frame(Jet.variables(coords, order, self.hess, self.mixed))

    def routed_jet(self, coords: Tensor, order: int = 2) -> Jet:
        """The fields' jet at ``coords``, each point from the time window it falls in (all windows, trained or not)."""
        if self.windows == 1:
            return self.jet(coords, order)
        window = torch.bucketize(coords[:, 0].contiguous(), coords.new_tensor(self.bounds[1:-1]), right=True)
        parts = [(rows, self.window_jet(k, Jet.variables(coords[rows], order, self.hess, self.mixed)))
                 for k in range(self.windows) if (rows := window == k).any()]
        template = parts[0][1].rows()
        out = [r.new_empty((len(coords),) + r.shape[1:]) for r in template]
        for rows, jet in parts:
            for full, part in zip(out, jet.rows()):
                full[rows] = part
        return parts[0][1].from_rows(out)

    def forward(self, coords: Tensor) -> Tensor:
        if self.windows > 1:  # each point from the window its time falls in
            return self.routed_jet(coords, 1).v
        if self.hard is not None and self.hard.active:
            return self.jet(coords, order=1).v
        return self.net(self.features(coords))

    def jet_blocks(self) -> list[JetBlock]:
        """:meth:`jet` block by block: the features with the first layer, each later layer, the exact transform
        (parameter-free, last; absent without one)."""
        first, *rest = self.network(self.active).jet_blocks()  # depth >= 1: at least two blocks
        blocks: list[JetBlock] = [FeatureLayer(self.features, first), *rest]
        hard = self.hards[self.active]
        if hard is not None and hard.active:
            blocks.append(HardTransform(hard))
        return blocks

    def jet_input(self, coords: Tensor, order: int = 2, frame: list | None = None) -> JetCarry:
        """The carry :meth:`jet_blocks` start from: the coordinates' jet ``[N, d]``, their columns and the frame."""
        cols = Jet.variables(coords, order, self.hess, self.mixed)
        return JetCarry(Jet.stack(self.window_inputs(self.active, cols)), tuple(cols), frame)


class FeatureLayer(JetBlock):
    """The coordinate features of the carry's coordinates jet, then the first dense layer."""

    def __init__(self, features: CoordinateFeatures, layer: JetBlock):
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
        self.params = problem.known_coefficients  # the unknown ones come from the model (model.unknowns) at each residual
        self.data = observation_term(problem, device, dtype)
        self.rng = np.random.default_rng(torch.randint(0, 2**31, (1,)).item())
        self.order = max(1, problem.equation.max_space_order)  # the jets carry exactly the orders the equation reads
        self.marching = options.time_marching
        self.domain = self._window_domain(0)  # where the points are drawn: the time window being trained
        hard = model.hard.enforced() if model.hard is not None else set()
        self.soft_initial = problem.initial is not None and problem.domain.time is not None and not any(
            label.startswith("initial:") for label in hard
        )
        self.soft_walls = [bc for bc in problem.boundary if bc.label not in hard]
        self.region = problem.domain.geometry is not None  # points from the geometry, not the box (pinn_region)
        self.interior = self._tensor(self._interior(options.points.interior))
        self.initial_pts = self._tensor(self._initial_points(options.points.initial)) if self.soft_initial else None
        self.walls, self.normals = self._wall_points()
        self.initial_target = self._initial_values(self.initial_pts) if self.initial_pts is not None else None
        w = options.weights
        data = [] if self.data is None else [DATA_TERM]
        self.term_names = ["residual"] + (["initial"] if self.soft_initial else []) + [bc.label for bc in self.soft_walls] + data
        self.term_weights = torch.tensor([w.residual] + ([w.initial] if self.soft_initial else []) + [w.boundary] * len(self.soft_walls)
                                         + ([self.data.weight] if self.data is not None else []), dtype=dtype, device=device)
        time = problem.domain.time
        self.causal = CausalWeights(options.causal, *self.domain.time) if options.causal is not None and time is not None else None
        self.adaptive = AdaptiveWeights(options.adaptive_weights, self.term_names, self.term_weights) \
            if options.adaptive_weights is not None else None
        self._update_weights_at: int | None = None
        cur = options.curriculum
        self.curriculum = Curriculum(cur, float(self.params[cur.parameter])) if cur is not None else None
        # fusing the jet arithmetic into a few loops (torch.compile) pays off from a few hundred steps on
        self._terms = torch.compile(self.loss_terms) if options.compile else self.loss_terms

    # ------------------------------------------------------------------ points
    def _tensor(self, a: np.ndarray) -> Tensor:
        return torch.as_tensor(a, dtype=self.dtype, device=self.device)

    def _interior(self, n: int) -> np.ndarray:
        if self.region:
            return pinn_region.interior(self.domain, n, self.rng)
        return sampling.interior(self.domain, n, self.options.points.sampler, self.rng)

    def _initial_points(self, n: int) -> np.ndarray:
        if self.region:
            return pinn_region.initial(self.domain, n, self.rng)
        return sampling.initial(self.domain, n, self.options.points.sampler, self.rng)

    def _wall_points(self) -> tuple[list[Tensor], list[Tensor | None]]:
        """Points on each soft wall (sharing ``points.boundary``), in the domain being trained, and the outward normals
        there for a condition on a geometry's part (None for a box face: its normal is the axis)."""
        p = self.options.points
        if self.region:
            parts = pinn_region.part_points(self.domain, self.soft_walls, p.boundary, self.rng)
            return [self._tensor(pts) for pts, _ in parts], [self._tensor(n) for _, n in parts]
        per_face = max(p.boundary // max(len(self.soft_walls), 1), 1)
        walls = [self._tensor(sampling.face(self.domain, bc.axis, bc.side, per_face, p.sampler, self.rng)) for bc in self.soft_walls]
        return walls, [None] * len(walls)

    def _window_domain(self, window: int) -> Domain:
        """The problem's domain, its time interval cut to one window of time marching (the whole one without)."""
        if self.marching is None:
            return self.problem.domain
        bounds = self.model.bounds
        return dataclasses.replace(self.problem.domain, time=(bounds[window], bounds[window + 1]))

    def _march(self, step: int) -> None:
        """Time marching: move to the window of ``step``; at its first step, start from the previous window's weights and
        draw the points in the new window (a resumed run finds the weights and points in the checkpoint)."""
        window = window_of(step, self.marching)  # type: ignore[arg-type]
        if window == self.model.active:
            return
        self.model.active, self.domain = window, self._window_domain(window)
        if self.causal is not None:
            self.causal.t0, self.causal.t1 = self.domain.time  # type: ignore[misc]
        if step == window * self.marching.steps:  # type: ignore[union-attr]
            self.model.network(window).load_state_dict(self.model.network(window - 1).state_dict())
            if self.causal is not None:
                self.causal.level = 0
            self.interior = self._tensor(self._interior(self.options.points.interior))
            self.walls, self.normals = self._wall_points()
        else:
            self.interior = self.interior  # the window's cached frame is rebuilt

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
        """PDE residual ``[N, channels]`` at ``coords`` (differentiable in the parameters; with time marching, each
        point's from its own window)."""
        return self._residual(self.model.routed_jet(coords, self.order), coords)

    def _residual(self, out: Jet, coords: Tensor) -> Tensor:
        d = JetDerivatives(out, self.problem.equation.fields, self.names, coords)
        if self.options.u_floor is not None:
            d = FlooredDerivatives(d, self.options.u_floor)
        source = None
        if self.problem.source is not None:
            env = dict(zip(self.names, coords.unbind(-1)))
            source = self.problem.source.torch(**env).unsqueeze(-1)
        return self.problem.equation.residual(d, {**self.params, **self.model.unknowns.values()}, source)

    def wall_violation(self, bc: BoundaryCondition, pts: Tensor, out: Jet | None = None, normals: Tensor | None = None) -> Tensor:
        """``alpha u + beta du/dn - value`` at wall points ``[N]`` (``out``: the jet there, if computed; ``normals``
        ``[N, d]``: the outward normals on a geometry's part, where ``du/dn = grad u . n``)."""
        out = out if out is not None else self.model.routed_jet(pts, order=1)
        c = self.problem.equation.fields.index(bc.field)
        lhs = bc.alpha * out.v[:, c]
        if bc.beta and normals is not None:
            space = [self.names.index(a) for a in self.problem.domain.space_names]
            lhs = lhs + bc.beta * (out.g[:, space, c] * normals).sum(-1)
        elif bc.beta:
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
        self._chunk_of: Tensor | None = None
        self._kept: tuple[Tensor, list[slice], list | None] | None = None
        self._inputs: Tensor | None = None  # the fused pass's input rows at the points of _points()

    def _points(self) -> tuple[Tensor, list[slice], list | None]:
        """All points of one loss pass, the slice of each group, and the exact transform's frame there."""
        if self._kept is None:
            groups = [self.interior] + ([self.initial_pts] if self.initial_pts is not None else []) + self.walls \
                + ([self.data.points] if self.data is not None else [])
            pts = torch.cat(groups) if len(groups) > 1 else self.interior
            ends = np.cumsum([len(g) for g in groups]).tolist()
            self._kept = (pts, [slice(a, b) for a, b in zip([0] + ends[:-1], ends)], self.model.frame(pts, self.order))
            self._inputs = self.model.inputs(pts, self.order)
        return self._kept

    def loss_terms(self) -> Tensor:
        """Mean squares of the residual and of each soft condition, ``[terms]``, from one jet pass over all points."""
        pts, _, frame = self._points()
        return self.terms_of(self.model.jet(pts, self.order, frame, self._inputs if self.model.fused else None))

    def term_values(self, out: Jet) -> list[Tensor]:
        """Each loss term's values per point: the residual ``[N, channels]``, then each soft condition's violations."""
        parts = iter(self._points()[1])
        values = [self._residual(out.points(next(parts)), self.interior)]
        if self.initial_pts is not None:
            values.append(out.v[next(parts)] - self.initial_target)
        for bc, wall, normals in zip(self.soft_walls, self.walls, self.normals):
            values.append(self.wall_violation(bc, wall, out.points(next(parts)), normals))
        if self.data is not None:
            values.append(self.data.misfit(out.v[next(parts)]))
        return values

    def terms_of(self, out: Jet) -> Tensor:
        """:meth:`loss_terms` of an output jet at the points of one loss pass (the model's, or an auxiliary network's)."""
        return self._mean_squares(self.term_values(out))

    def _mean_squares(self, values: list[Tensor]) -> Tensor:
        r = values[0]
        if self.causal is not None:
            terms = [self.causal.loss((r * r).mean(-1), self._chunks())]
        else:
            terms = [(r * r).mean()]
        terms += [(v * v).mean() for v in values[1:]]
        return torch.stack(terms)

    def _chunks(self) -> Tensor:
        assert self.causal is not None
        if self._chunk_of is None:
            self._chunk_of = self.causal.chunk_of(self.interior[:, 0])
        return self._chunk_of

    def loss(self) -> tuple[Tensor, dict[str, float]]:
        """The weighted sum of :meth:`loss_terms`, and each term by name (with what the training methods did)."""
        if self.adaptive is None or self._update_weights_at is None:
            # the point set (and what is kept with it) is built here, eagerly: built inside the compiled loss the
            # first time, it would fail that graph's guards on the next step and compile it again
            self._points()
            return self._weighted(self._terms())
        pts, _, frame = self._points()
        values = self.term_values(self.model.jet(pts, self.order, frame))
        terms = self._mean_squares(values)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.adaptive.update(params, values, terms, seed=self._update_weights_at)
        self.term_weights = self.adaptive.weights
        self._update_weights_at = None  # once per step (L-BFGS evaluates the loss several times)
        return self._weighted(terms)

    def _weighted(self, terms: Tensor) -> tuple[Tensor, dict[str, float]]:
        record = dict(zip(self.term_names, terms.detach().tolist()))
        for method in (self.causal, self.adaptive):
            if method is not None:
                record.update(method.record())
        record.update(self.model.unknowns.record())
        if self.curriculum is not None:
            record[f"curriculum_{self.curriculum.options.parameter}"] = float(self.params[self.curriculum.options.parameter])
        return (terms * self.term_weights).sum(), record

    def before_step(self, step: int) -> None:
        sparsity.before_step(self.model, step)  # N:M masks on their schedule (nothing without sparsity)
        if self.marching is not None:
            self._march(step)
        if self.causal is not None and step:
            self.causal.after_step()  # anneal the tolerance from the last step's weights
        if self.adaptive is not None and self.adaptive.due(step):
            self._update_weights_at = step
        if self.curriculum is not None:
            self.params = {**self.params, self.curriculum.options.parameter: self.curriculum.value(step)}
        p, rar = self.options.points, self.options.rar
        if p.resample_every and step and step % p.resample_every == 0:
            self.interior = self._tensor(self._interior(p.interior))
        if rar.every and step and step % rar.every == 0 and (rar.until is None or step <= rar.until):
            cand = self._tensor(pinn_region.box_interior(self.domain, rar.candidates, "random", self.rng) if self.region
                                else sampling.interior(self.domain, rar.candidates, "random", self.rng))
            with torch.no_grad():
                score = self.residual(cand).abs().sum(-1)
            worst = cand[torch.topk(score, min(rar.add, len(cand))).indices]
            self.interior = torch.cat([self.interior, worst])

    def evaluate(self) -> dict[str, float]:
        return self._evaluate()

    @property
    def provides(self) -> frozenset[str]:
        """An inverse problem's coefficients belong to no block: only rules that train the whole model (loss) fit it."""
        return super().provides if not self.problem.unknowns else frozenset({LOSS})

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"interior": self.interior.cpu(), "rng": self.rng.bit_generator.state}
        if self.causal is not None:
            state["causal"] = self.causal.state_dict()
        if self.adaptive is not None:
            state["adaptive_weights"] = self.adaptive.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.interior = state["interior"].to(self.device, self.dtype)
        self.rng.bit_generator.state = state["rng"]
        if self.causal is not None:
            self.causal.load_state_dict(state["causal"])
        if self.adaptive is not None:
            self.adaptive.load_state_dict(state["adaptive_weights"])
            self.term_weights = self.adaptive.weights


class PINN(PointSolver):
    """``solver: pinn`` — see :class:`PINNOptions`."""

    name = "pinn"
    Options = PINNOptions
    takes_geometry = True  # interior and part points from the geometry, soft conditions (pinn_region)
    learns_coefficients = True  # unknown coefficients and observations: solvers/pinn_inverse.py

    @classmethod
    def mismatches(cls, problem: Problem) -> list[str]:
        return pointwise_mismatches(problem, MAX_ORDER, "the PINN's jets", mixed=True)

    @classmethod
    def option_mismatches(cls, problem: Problem, options: PINNOptions) -> list[str]:  # type: ignore[override]
        return option_mismatches(problem, options) + inverse_mismatches(problem, options)

    def __init__(self, problem: Problem, options: PINNOptions, device: torch.device, dtype: torch.dtype | None = None, *,
                 ranks: Ranks | None = None, family: InitialConditionFamily | None = None):
        dtype = dtype or (torch.float64 if options.dtype == "float64" else torch.float32)
        super().__init__(problem, options, device, dtype, ranks=ranks, family=family)
        refused = self.option_mismatches(problem, options)
        if refused:
            raise SolverMismatch(f"solver 'pinn' cannot use these options on problem {problem.name!r}: " + "; ".join(refused))
        self.model = PINNModel(problem, options).to(device=device, dtype=dtype)
        self.notes = [pinn_region.SOFT_NOTE] if problem.domain.geometry is not None and problem.boundary else []
        for note in self.notes:
            warnings.warn(f"solver 'pinn' on problem {problem.name!r}: {note}", stacklevel=2)
        if options.time_marching is not None and self.model.hard is not None and \
                not {f"initial:{f}" for f in problem.equation.fields} <= self.model.hard.enforced():
            raise SolverMismatch(f"solver 'pinn' cannot march in time on problem {problem.name!r}: its initial condition is not "
                                 "held exactly by the output transform (" + "; ".join(self.model.hard.notes or ["no initial condition"])
                                 + "), and each window starts from the last one through it")
        self._task: PINNTask | None = None

    def task(self, evaluate: Callable[[], dict[str, float]]) -> PINNTask:
        self._task = PINNTask(self.problem, self.model, self.options, self.device, self.dtype, evaluate)  # type: ignore[arg-type]
        return self._task

    def _points(self, grid: Grid) -> Tensor:
        return torch.as_tensor(grid.points(), dtype=self.dtype, device=self.device)

    def predict(self, grid: Grid) -> Solution:
        """The fields on ``grid``; with a geometry, NaN at the points outside the region."""
        pts = self._points(grid)
        with torch.no_grad():
            out = torch.cat([self.model(chunk) for chunk in pts.split(65536)])
        values = out.double().cpu().numpy().reshape(grid.shape + (-1,))
        values = np.moveaxis(values, -1, 1 if grid.time is not None else 0)[None]
        return Solution(grid, self.problem.equation.fields, outside_as_nan(values, region_mask(self.problem.domain, grid)))

    def diagnostics(self, grid: Grid) -> dict[str, Any]:
        """The residual map on ``grid`` and each condition's RMS violation."""
        task = self._task or self.task(lambda: {})
        pts = self._points(grid)
        with torch.no_grad():
            res = torch.cat([task.residual(c) for c in pts.split(16384)])
        res_map = np.moveaxis(res.abs().double().cpu().numpy().reshape(grid.shape + (-1,)), -1, 0)
        res_map = outside_as_nan(res_map, region_mask(self.problem.domain, grid))  # the region's points only
        out: dict[str, Any] = {"residual_map": res_map, "violations": {}}
        rng = np.random.default_rng(0)
        dom = self.problem.domain
        region = dom.geometry is not None
        with torch.no_grad():
            if self.problem.initial is not None and dom.time is not None:
                ip = pinn_region.initial(dom, 2000, rng) if region else sampling.initial(dom, 2000, "random", rng)
                ip = torch.as_tensor(ip, dtype=self.dtype, device=self.device)
                out["violations"]["initial"] = float(((self.model(ip) - task._initial_values(ip)) ** 2).mean().sqrt())
            parts = pinn_region.part_points(dom, list(self.problem.boundary), 4000, rng) if region else []
            for i, bc in enumerate(self.problem.boundary):
                fp, normals = parts[i] if region else (sampling.face(dom, bc.axis, bc.side, 1000, "random", rng), None)
                fp = torch.as_tensor(fp, dtype=self.dtype, device=self.device)
                normals = None if normals is None else torch.as_tensor(normals, dtype=self.dtype, device=self.device)
                out["violations"][bc.label] = float((task.wall_violation(bc, fp, normals=normals) ** 2).mean().sqrt())
        out["violations"]["residual_rms"] = float(np.sqrt(np.nanmean(res_map**2)))
        if self.notes:
            out["notes"] = list(self.notes)
        if self.problem.unknowns:
            out["recovered"] = recovered(self.problem, self.model.unknowns)
        if task.data is not None:
            out["data_misfit"] = data_misfit(self.model, task.data, self.problem.observations.noise)  # type: ignore[union-attr]
        return out
