"""Hard-constrained basis solvers (``hc``, ``moe_hc``): the PDE enforced by a differentiable solve per expert.

A backbone network (an MLP, or another of the PINN's networks: ``network``) over the coordinates (and, in the
family setting of :mod:`.family`, the initial condition at sensor points) outputs N basis functions b(t, x). The
space-time box is split into K experts (boxes of :meth:`Grid.partition`, pieces in :mod:`.basis`); each expert k
finds weights w_k with u_k = b . w_k that

- minimize the PDE residual of u_k at its m solve points (inside its own box), and
- satisfy the initial and boundary conditions at the condition points: exactly (KKT), or as rows weighted
  by ``constraint_weight`` where a smooth basis cannot interpolate them (a jump at a corner).

Experts along the space axes of one time slab are solved as one batch; time slabs are solved in order, each
taking the previous slab's solution at its start time in place of the initial condition. The solves use
:mod:`pdesolve.constrained`: one KKT solve for linear equations, Levenberg-Marquardt with the implicit
backward for nonlinear ones (started from the linear problem obtained by freezing the equation at the mean
initial value). The backbone is trained on the mean-square residual of the solved u_k at fresh points of
each expert's box (plus the weighted condition rows; the training task is :mod:`.task`). A point is
predicted by its own expert. ``hc`` (:class:`HC`) is the case K = 1, ``moe_hc`` (:class:`MoEHC`) any K.
With ``distributed: true`` every batch of solves (and the loss) is split over the ranks of a torchrun
launch, each rank solving its block (:class:`pdesolve.distributed.Ranks`).

Shapes: solve points ``[K, m, d]`` (columns (t, x, ...)), feature matrices ``D [K, k, m, N]`` with the k
rows u, du/d(each coordinate), d2u/d(space axis)^2, weights ``w [K, N]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.func import jvp

from ...constrained import (
    ConstrainedLeastSquares,
    ConstraintSetupError,
    LevenbergMarquardt,
    PointwiseResidual,
    SolveStatus,
    bounds_as_inequalities,
    check_residual,
    solve_nonlinear,
)
from ...distributed import GradientAverager, Ranks
from ...grid import Grid
from ...problem import Problem
from ...solution import Solution
from ..base import PointSolver, SolverMismatch, pointwise_mismatches
from ..pinn_options import method_mismatches
from .basis import Constraints, ExpertBoxes, HCModel, PDEResidual, feature_rows
from .family import ICBatch, ICFamily, family_errors
from .options import HCOptions, MoEHCOptions
from .task import HCSolves, HCTask

if TYPE_CHECKING:
    from ...simulate.family import InitialConditionFamily

log = logging.getLogger(__name__)

STATUS_FIELDS = ("converged", "iterations", "residual", "constraint_violation")


# ----------------------------------------------------------------------------- the shared solver
class HardConstrainedSolver(PointSolver, HCSolves):
    """What ``hc`` and ``moe_hc`` share; a leaf sets ``name``, ``Options`` and :meth:`expert_counts`.

    ``family`` (the problem's initial-condition family, from the runner) supplies the draws of the family
    setting when ``options.family`` gives none of its own; the drawn initial conditions are ``ic_family``.
    """

    @classmethod
    def mismatches(cls, problem: Problem) -> list[str]:
        return pointwise_mismatches(problem, 2, "the basis")

    @classmethod
    def option_mismatches(cls, problem: Problem, options: HCOptions) -> list[str]:  # type: ignore[override]
        """The PINN's training methods that do not fit ``problem`` (:func:`~pdesolve.solvers.pinn_options.method_mismatches`),
        and the family setting on a steady problem."""
        key = f"solvers.{cls.name}"
        out = method_mismatches(problem, key, causal=options.causal, curriculum=options.curriculum,
                                fourier_features=options.fourier_features)
        if options.family is not None and problem.domain.time is None:
            out.append(f"{key}.family: the family setting varies initial conditions; problem {problem.name!r} is steady (no "
                       "initial condition): drop family")
        return out

    def expert_counts(self) -> dict[str, int]:
        return {}

    @classmethod
    def distributed(cls, options: HCOptions) -> bool:  # type: ignore[override]
        return options.distributed

    @classmethod
    def needs_family(cls, options: HCOptions) -> bool:  # type: ignore[override]
        """The family setting without draws of its own takes the problem's (its ``simulate:`` section)."""
        family = options.family
        return family is not None and family.initial is None and family.parameters is None

    def __init__(self, problem: Problem, options: HCOptions, device: torch.device, dtype: torch.dtype | None = None, *,
                 ranks: Ranks | None = None, family: InitialConditionFamily | None = None):
        dtype = dtype or (torch.float64 if options.dtype == "float64" else torch.float32)
        super().__init__(problem, options, device, dtype, ranks=ranks, family=family)
        refused = self.option_mismatches(problem, options)
        if refused:
            raise SolverMismatch(f"solver {self.name!r} cannot use these options on problem {problem.name!r}: " + "; ".join(refused))
        if options.basis > options.width:
            raise SolverMismatch(f"basis={options.basis} functions from a last hidden layer of width={options.width} span at most "
                                 f"{options.width + 1} dimensions (a singular solve); expected basis <= width")
        self.boxes = ExpertBoxes(problem, self.expert_counts())
        self.constraints = Constraints(problem, options.points)
        self.fields = len(problem.equation.fields)  # a system: one block of N weights per field
        exact = int(self.constraints.per_field().max()) if self.constraints.count else 0
        if exact > options.basis and options.constraint_weight is None and not options.soft:
            per = "" if self.fields == 1 else " of one field"
            raise SolverMismatch(f"{exact} exact constraint points{per} on {options.basis} basis functions, expected "
                                 "at most as many; raise basis or lower points.initial / points.boundary")
        self.rows = feature_rows(problem.domain.names)
        self.pde = PDEResidual(problem, self.rows, options.nonlinear.u_floor)
        self.pointwise = PointwiseResidual(self.pde, self.fields)
        self.linear = problem.equation.linear
        if options.bounds is not None and self.fields > 1:
            raise SolverMismatch(f"bounds {options.bounds} bound one field; {problem.equation.name!r} has {self.fields} fields "
                                 f"{list(problem.equation.fields)}: drop solvers.{self.name}.bounds")
        if options.bounds is not None and not self.linear:
            raise SolverMismatch(f"bounds {options.bounds} need the convex path, which takes linear equations; "
                                 f"{problem.equation.name!r} is nonlinear: drop solvers.{self.name}.bounds")
        try:
            self.layer = ConstrainedLeastSquares(inequalities=options.bounds is not None)
            if not self.linear:
                self._check_jacobian_path()
        except ConstraintSetupError as err:
            raise SolverMismatch(str(err)) from None
        if options.distributed and self.ranks.group is None:
            raise SolverMismatch(f"solvers.{self.name}.distributed: true needs the process group the runner joins "
                                 "(pdesolve.runner.build_solver); or set distributed: false")
        rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,)).item()))
        self.model = HCModel(problem, options, self.boxes, rng).to(device=device, dtype=dtype)
        if options.distributed:
            with torch.no_grad():  # every rank starts from rank 0's backbone and solve points
                for x in self.model.state_dict().values():
                    self.ranks.broadcast_tensor(x)
        try:
            self.ic_family = None if options.family is None else ICFamily(problem, options.family, family)
        except ValueError as err:
            raise SolverMismatch(f"solvers.{self.name}.{err}") from None
        self._task: HCTask | None = None
        self.averager: GradientAverager | None = None  # sums the ranks' gradients (distributed)

    @property
    def slabs(self) -> int:
        """Time slabs, solved one after another (1 unless experts split t and there is an initial condition)."""
        return self.boxes.counts[0] if self.problem.domain.names[0] == "t" and self.constraints.n_initial else 1

    def _check_jacobian_path(self) -> None:
        """The nonlinear residual must be differentiable by torch.func (LM iterations and implicit backward)."""
        k, m, n = len(self.rows), 3, 2
        gen = torch.Generator().manual_seed(0)
        D = 0.1 * torch.rand(1, k, m, n, dtype=torch.float64, generator=gen)
        D[:, 0] += 0.5  # positive u: fractional powers stay real
        coords = torch.as_tensor(self.boxes.sample(m, "random", np.random.default_rng(0))[:1])
        w = torch.ones(1, n * self.fields, dtype=torch.float64)  # a system: one block of n weights per field
        check_residual(self.pointwise, w, (D, coords, torch.zeros(1, m, dtype=torch.float64)))

    # ------------------------------------------------------------------ the batched solve
    def source(self, coords: Tensor) -> Tensor:
        """The source term at ``coords [..., d]`` -> ``[...]`` (zeros when the problem has none)."""
        if self.problem.source is None:
            return coords.new_zeros(coords.shape[:-1])
        env = dict(zip(self.problem.domain.names, coords.unbind(-1)))
        return torch.broadcast_to(self.problem.source.torch(**env), coords.shape[:-1])

    def problem_ics(self) -> ICBatch | None:
        """The problem's own initial condition as a batch of one (None outside the family setting)."""
        if self.ic_family is None:
            return None
        sensors = self.problem.initial_numpy(self.ic_family.sensor_grid)[0].reshape(1, -1)
        return ICBatch(torch.as_tensor(sensors, dtype=self.dtype, device=self.device), self.constraints.target[None].to(self.device),
                       torch.tensor([self.constraints.initial_mean], dtype=torch.float64))

    def family_ics(self, index: np.ndarray) -> ICBatch:
        """Drawn initial conditions ``index`` of the family as a batch."""
        assert self.ic_family is not None
        con, fam = self.constraints, self.ic_family
        n0 = con.n_initial
        init = fam.targets(index, con.points[:n0, 1:])  # [S, n0]
        target = torch.cat([init, con.target[n0:].expand(len(index), -1)], dim=1).to(self.device)
        mean = torch.as_tensor(fam.values[index].reshape(len(index), -1).mean(1))
        return ICBatch(torch.as_tensor(fam.sensors[index], dtype=self.dtype, device=self.device), target, mean)

    def basis_features(self, pts: Tensor, ics: ICBatch | None) -> Tensor:
        """Features at ``pts [n, d]`` for every IC of the batch, ``[S, n, k, N]`` (S = 1 without a family)."""
        if ics is None:
            return self.model.basis.features(pts)[None]
        S, n = len(ics.sensors), len(pts)
        sensors = ics.sensors[:, None].expand(S, n, -1).reshape(S * n, -1)
        return self.model.basis.features(pts.repeat(S, 1), sensors).reshape(S, n, *self.feature_shape)

    @property
    def feature_shape(self) -> tuple[int, int]:
        return (len(self.rows), self.options.basis)

    def solve(self, points: Tensor, ics: ICBatch | None = None) -> tuple[Tensor, SolveStatus]:
        """Weights ``w [S K, N]`` of every expert (and initial condition) from the solve points ``[K, m, d]``."""
        w, status, _ = self.solve_with_conditions(points, ics)
        return w, status

    def row_features(self, points: Tensor, ics: ICBatch | None, samples: Tensor) -> Tensor:
        """Features of batch rows, ``[R, k, m, N]``: row r at ``points[r] [m, d]`` with initial condition
        ``samples[r]`` of ``ics`` (ignored without a family)."""
        R, m, d = points.shape
        sensors = None if ics is None else ics.sensors[samples.to(ics.sensors.device)].repeat_interleave(m, 0)
        return self.model.basis.features(points.reshape(R * m, d), sensors).reshape(R, m, *self.feature_shape).transpose(1, 2)

    def solve_with_conditions(self, points: Tensor, ics: ICBatch | None = None
                              ) -> tuple[Tensor, SolveStatus, tuple[Tensor, Tensor] | None]:
        """Weights ``w [S K, N]`` of every expert (and initial condition) from the solve points ``[K, m, d]``,
        their status, and the condition rows each expert was given, ``C [S K, p, N]`` and ``target [S K, p]``.

        Differentiable in the backbone. S initial conditions of a family are solved as one batch with the
        experts (sample-major: row ``s K + k``); S = 1 for a single problem. With experts along t, the time
        slabs are solved in order: a later slab's initial rows hold it to the previous slab's solution at its
        start time (at the initial-condition points), so every expert solves a well-posed problem. With
        ``distributed``, each rank solves its block of a slab's S Ks rows (:class:`pdesolve.distributed.Ranks`).
        """
        K, m, d = points.shape
        con = self.constraints
        S = 1 if ics is None else len(ics.sensors)
        if self.model.soft_w is not None:  # the soft baseline: nothing to solve
            w = self.model.soft_w.repeat(S, 1)
            zero = w.new_zeros(len(w)).detach().double()
            status = SolveStatus(torch.ones(len(w), dtype=torch.bool), torch.zeros(len(w), dtype=torch.int64), zero, zero)
            if not con.count:
                return w, status, None
            C = con.rows(self.basis_features(torch.as_tensor(con.points, dtype=self.dtype, device=self.device), ics))  # [S, p, N]
            target = (con.target[None] if ics is None else ics.targets).to(w)
            return w, status, (C.repeat_interleave(K, 0), target.repeat_interleave(K, 0))
        slabs = self.slabs
        Ks, n0, p = K // slabs, con.n_initial, con.count
        starts = self.boxes.lo[::Ks, 0]  # [slabs] start time of each slab (experts are row-major in (t, x, ...))
        ipts = np.concatenate([np.concatenate([np.full((n0, 1), t0), con.points[:n0, 1:]], 1) for t0 in starts[1:]] or
                              [np.zeros((0, d))])
        C0 = target0 = Dc = None
        if p:  # features at the condition points and the later slabs' start points: [S, p + (slabs-1) n0, k, N]
            Dc = self.basis_features(torch.as_tensor(np.concatenate([con.points, ipts]), dtype=self.dtype, device=self.device), ics)
            C0 = con.rows(Dc[:, :p])  # [S, p, N]
            target0 = (con.target[None] if ics is None else ics.targets).to(self.device)  # [S, p]
        means = torch.full((S,), con.initial_mean, dtype=torch.float64) if ics is None else ics.means
        if self.fields > 1:  # a system: each field's mean initial value, [S, F]
            means = con.initial_means[None].expand(S, -1)
        B = S * Ks
        rows = torch.arange(B)[self.ranks.block(B)]
        samples, local = rows // Ks, rows % Ks  # this rank's rows of every slab
        ws, statuses, conditions = [], [], []
        for j in range(slabs):
            C, target = C0, target0
            if j > 0:  # the previous slab's solution at (t_j, x_i) replaces the initial values
                assert Dc is not None and C0 is not None and target0 is not None
                at = Dc[:, p + (j - 1) * n0:p + j * n0, 0]  # [S, n0, N]
                owner = self.boxes.expert_of(ipts[(j - 1) * n0:j * n0] - np.eye(d)[0] * 1e-9 * (starts[1] - starts[0])) - (j - 1) * Ks
                field = con.field[:n0]  # each initial row's field (a system: its block of the weights)
                prev = ws[-1].reshape(S, Ks, self.fields, -1)[:, owner, field]  # [S, n0, N]
                u_prev = torch.einsum("sin,sin->si", at, prev.to(at))
                C, target = torch.cat([con.place(at, field), C0[:, n0:]], 1), torch.cat([u_prev.to(target0), target0[:, n0:]], 1)
                means = u_prev.detach().double().mean(1)
                if self.fields > 1:
                    means = u_prev.detach().double().reshape(S, self.fields, -1).mean(2)
            experts = j * Ks + local
            D = self.row_features(points[experts], ics, samples)
            w, status = self._solve_rows(D, points[experts], None if C is None else C[samples.to(C.device)],
                                         None if target is None else target[samples.to(target.device)], means[samples],
                                         self.ranks.splits(B))
            ws.append(self.ranks.gather(w, B))  # [S Ks, N], every rank's block
            statuses.append(self._gather_status(status, B))
            conditions.append((C, target))
        w = torch.stack([x.reshape(S, Ks, -1) for x in ws], 1).reshape(S * K, -1)  # [S K, N], row s K + j Ks + i
        order = torch.arange(S * K).reshape(slabs, S, Ks).transpose(0, 1).reshape(-1)  # statuses are slab-major
        status = SolveStatus(*(torch.cat([getattr(st, f) for st in statuses])[order] for f in STATUS_FIELDS))
        if not p:
            return w, status, None
        C = torch.stack([c[:, None].expand(S, Ks, -1, -1) for c, _ in conditions], 1).reshape(S * K, p, -1)  # [S K, p, N]
        target = torch.stack([t[:, None].expand(S, Ks, -1) for _, t in conditions], 1).reshape(S * K, p)  # [S K, p]
        return w, status, (C, target)

    def _solve_rows(self, D: Tensor, pts: Tensor, C: Tensor | None, target: Tensor | None, means: Tensor,
                    split: bool = False) -> tuple[Tensor, SolveStatus]:
        """One batch of independent solves: features ``D [R, k, m, N]``, points ``[R, m, d]``, conditions
        ``C [R, p, N] w = target [R, p]``, mean initial values ``[R]``; ``split``: the batch's other rows are
        on the other ranks."""
        m = pts.shape[1]
        src = self.source(pts)
        if self.linear:
            zero = pts.new_zeros(len(pts), self.options.basis * self.fields)
            A = self.pointwise.jacobian(zero, D, pts, src)  # [R, m, N], exact for a linear residual
            b = -self.pointwise(zero, D, pts, src)
            self.layer.tikhonov = self.options.tikhonov * self._mean_square(A, split)
            self.layer.penalty = self.penalty(m)
            extra = ()
            if self.options.bounds is not None:
                extra = bounds_as_inequalities(D[:, 0], *self.options.bounds)
            w, status = self.layer(A, b, C, target, *extra)
            return w.to(self.dtype), status
        w0, scale = self._linearized_start(D, pts, src, C, target, means.to(self.device), split)
        lm = LevenbergMarquardt(max_iter=self.options.nonlinear.max_iter, xtol=self.options.nonlinear.tol,
                                gtol=self.options.nonlinear.tol, tikhonov=self.options.tikhonov * scale, penalty=self.penalty(m))
        w, status = solve_nonlinear(self.pointwise, w0, (D, pts, src), C, target, jacobian=self.pointwise.jacobian,
                                    hessian=self.pointwise.hessian, options=lm)
        return w.to(self.dtype), status

    def _gather_status(self, status: SolveStatus, n: int) -> SolveStatus:
        """Every rank's block of a status of ``n`` rows (collectives carry float64)."""
        if not self.ranks.splits(n):
            return status
        fields = [getattr(status, f) for f in STATUS_FIELDS]
        with torch.no_grad():  # one collective: the fields as columns of float64
            table = self.ranks.gather(torch.stack([x.detach().double() for x in fields], 1), n)
        return SolveStatus(*(col.to(x.dtype) for col, x in zip(table.unbind(1), fields)))

    def _mean_square(self, A: Tensor, split: bool) -> float:
        """The mean over the batch rows (of every rank when ``split``) and the N columns of sum_i A_ij^2 (the
        normal matrix's mean diagonal), which scales the Tikhonov term: the same whichever rank solves a row."""
        sq = A.detach().double().pow(2).sum()
        local = torch.stack([sq, sq.new_tensor(float(A.shape[0] * A.shape[-1]))])
        total = self.ranks.sum(local) if split else local
        return float(total[0] / total[1])

    def penalty(self, m: int) -> float | None:
        """The absolute weight of the condition rows: rho / p per row against 1 / m per residual row."""
        rho = self.options.constraint_weight
        return None if rho is None or not self.constraints.count else rho * m / self.constraints.count

    def _linearized_start(self, D: Tensor, points: Tensor, src: Tensor, C: Tensor | None, target: Tensor | None,
                          means: Tensor, split: bool = False) -> tuple[Tensor, float]:
        """Start of the iterations: the linear problem of the equation frozen at u = each sample's mean initial value."""
        with torch.no_grad():
            D64, pts, s = D.double(), points.double(), src.double()
            B, k, m, _ = D64.shape
            if self.fields == 1:
                fbar = D64.new_zeros(B, k, m)
                fbar[:, 0] = means.double()[:, None]
                r0 = self.pde(fbar, pts, s)
                slopes = [jvp(lambda f: self.pde(f, pts, s), (fbar,), (torch.zeros_like(fbar).index_fill_(1, torch.tensor([i]), 1.0),))[1]
                          for i in range(k)]  # dF/df_i at the frozen state, [B, m] each
                A = sum(slope[..., None] * D64[:, i] for i, slope in enumerate(slopes))
                b = -(r0 - slopes[0] * fbar[:, 0])
            else:  # a system: every field frozen at its own mean initial value, [B, F] (derivatives zero)
                fbar = D64.new_zeros(B, self.fields, k, m)
                fbar[:, :, 0] = means.double()[:, :, None]
                A, b = self.pointwise.linearization(fbar.reshape(B, self.fields * k, m), D64, pts, s)
            scale = self._mean_square(A, split)
            layer = ConstrainedLeastSquares(tikhonov=self.options.tikhonov * scale, penalty=self.penalty(m))
            w0, _ = layer(A, b, None if C is None else C.double(), None if target is None else target.double())
        return w0, scale

    # ------------------------------------------------------------------ what the training task uses (HCSolves)
    def draw_ics(self, rng: np.random.Generator) -> ICBatch | None:
        if self.ic_family is None:
            return None
        train = self.ic_family.split("train")
        return self.family_ics(rng.choice(train, size=min(self.ic_family.options.batch, len(train)), replace=False))

    def loss_points(self, rng: np.random.Generator) -> Tensor:
        opts = self.options.points
        return torch.as_tensor(self.boxes.sample(opts.loss, opts.sampler, rng), dtype=self.dtype, device=self.device)

    def residual(self, w: Tensor, features: Tensor, points: Tensor) -> Tensor:
        return self.pointwise(w, features, points, self.source(points))

    @property
    def condition_weight(self) -> float | None:
        o = self.options
        return o.constraint_weight if o.constraint_weight is not None else 1.0 if o.soft else None

    def check_gradients(self) -> None:
        if self.averager is not None:  # every parameter got its gradient in the last step (ranks in step)
            self.averager.check()

    def set_coefficient(self, name: str, value: float) -> None:
        self.pde.params = {**self.pde.params, name: value}

    # ------------------------------------------------------------------ the Solver interface
    def task(self, evaluate: Callable[[], dict[str, float]]) -> HCTask:
        self._task = HCTask(self, evaluate)
        if self.ranks.group is not None and self.averager is None:  # one set of gradient hooks, however many tasks
            S = 1 if self.ic_family is None else self.ic_family.options.batch
            space = self.boxes.count // self.slabs
            if not self.ranks.splits(S * space):
                log.warning("%s: %d solves per time slab (%d space experts x %d initial conditions) for %d ranks: every rank "
                            "solves them all; add experts along space axes or raise family.batch to spread them",
                            self.name, S * space, space, S, self.ranks.world)
            self.averager = GradientAverager(self.model, self.ranks.group, reduce="sum")
        return self._task

    def weights(self, ics: ICBatch | None = None) -> tuple[Tensor, SolveStatus]:
        """The experts' weights from the fixed solve points (what prediction uses), ``[S K, N]``.

        Without ``ics``: the problem's own initial condition (also in the family setting).
        """
        with torch.no_grad():
            return self.solve(self.model.solve_points, ics if ics is not None else self.problem_ics())

    def values(self, coords: Tensor, w: Tensor, sensors: Tensor | None = None) -> Tensor:
        """u at ``coords [n, d]``, each point with its own expert's weights ``w [K, N]``, ``[n]``
        (a system: ``w [K, F N]``, every field, ``[n, F]``).

        ``sensors [s]``: the initial condition the weights belong to (family setting).
        """
        expert = torch.as_tensor(self.boxes.expert_of(coords.double().cpu().numpy()), device=self.device)
        out = []
        for c, e in zip(coords.split(65536), expert.split(65536)):
            extra = None if sensors is None else sensors[None].expand(len(c), -1)
            if self.fields == 1:
                out.append((self.model.basis(c, extra) * w[e]).sum(-1))
            else:
                out.append(torch.einsum("nb,nfb->nf", self.model.basis(c, extra), w[e].reshape(len(c), self.fields, -1)))
        return torch.cat(out)

    def _predict(self, grid: Grid, ics: ICBatch | None) -> np.ndarray:
        """``[S, time, 1, *space]`` (``[S, 1, *space]`` steady) for every IC of the batch (the problem's own IC when None)."""
        ics = ics if ics is not None else self.problem_ics()
        w, _ = self.weights(ics)
        K = self.boxes.count
        pts = torch.as_tensor(grid.points(), dtype=self.dtype, device=self.device)
        out = []
        with torch.no_grad():
            for i in range(len(w) // K):
                u = self.values(pts, w[i * K:(i + 1) * K], None if ics is None else ics.sensors[i])
                if self.fields > 1:  # [n, F] -> the channel axis after time (if any)
                    v = np.moveaxis(u.double().cpu().numpy().reshape(*grid.shape, self.fields), -1, 1 if grid.time is not None else 0)
                    out.append(v)
                    continue
                v = u.double().cpu().numpy().reshape(grid.shape)
                out.append(v[:, None] if grid.time is not None else v[None])  # the channel axis after time (if any)
        return np.stack(out)

    def predict(self, grid: Grid) -> Solution:
        return Solution(grid, self.problem.equation.fields, self._predict(grid, None))  # [1, time, 1, *space]

    def predict_family(self, grid: Grid, which: str = "test") -> np.ndarray:
        """Predictions for the family's ``train`` or ``test`` initial conditions, ``[S, time, 1, *space]``."""
        if self.ic_family is None:
            raise ValueError(f"solver {self.name!r} has no family; set solvers.{self.name}.family")
        return self._predict(grid, self.family_ics(self.ic_family.split(which)))

    def family_metrics(self, grid: Grid) -> dict[str, float]:
        """Relative L2 on the held-out initial conditions against the simulator (empty without a family)."""
        if self.ic_family is None or not self.ic_family.options.test:
            return {}
        index = self.ic_family.split("test")
        u = self.predict_family(grid, "test")
        return family_errors({int(i): u[j:j + 1] for j, i in enumerate(index)}, self.ic_family, grid)

    def diagnostics(self, grid: Grid) -> dict[str, Any]:
        """The solve's status and each condition's RMS violation at the constraint points."""
        w, status = self.weights()
        out: dict[str, Any] = {"violations": {"constraints_max": float(status.constraint_violation.max())}}
        out["solve"] = status.as_dict()
        if self.ic_family is not None:
            out["family"] = self.family_metrics(grid)
            log.info("%s: held-out initial conditions on the evaluation grid: %s", self.name, out["family"])
        return out


# ----------------------------------------------------------------------------- the two back-ends
class HC(HardConstrainedSolver):
    """``solver: hc`` — one expert over the whole space-time box; see :class:`HCOptions`."""

    name = "hc"
    Options = HCOptions


class MoEHC(HardConstrainedSolver):
    """``solver: moe_hc`` — ``experts`` boxes per axis, solved as one batch; see :class:`MoEHCOptions`."""

    name = "moe_hc"
    Options = MoEHCOptions

    def expert_counts(self) -> dict[str, int]:
        return dict(self.options.experts)  # type: ignore[attr-defined]
