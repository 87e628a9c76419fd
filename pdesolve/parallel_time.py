"""Parallel-in-time rollout of a grid time stepper: all frames of a rollout solved at once (ParaRNN).

ParaRNN (Danieli et al., "Unlocking Parallel Training of Nonlinear RNNs", 2025; after DEER, Lim et al. 2024)
treats the states of a nonlinear recurrence ``x_t = f(x_{t-h}, ..., x_{t-1})`` as the root of one system
``R(X) = X - F(X) = 0`` over all ``T`` steps at once. Newton's method linearises it into the *linear* recurrence
``dx_t = sum_j J_{t,j} dx_{t-j} + r_t`` (``J_{t,j} = df/dx_{t-j}`` at the current iterate, ``r = F(X) - X``),
which a parallel scan over affine maps solves in ``log2 T`` levels. Every iteration evaluates the stepper on all
``T`` windows in one batched call. The methods differ in the Jacobian the scan uses (``M = I - L``, ``L`` the
lagged Jacobian operator):

- ``newton``: the exact Jacobians, dense, by ``torch.func`` (``vmap`` of ``jacrev`` over all windows at once);
  quadratic convergence, ``T (h n)^2`` numbers held (refused above ``max_jacobian_mb``);
- ``quasi_newton``: the diagonal of every ``J_{t,j}``, estimated by ``probes**d`` colour probes per channel and
  history slot (forward-mode ``jvp`` batched over all windows; exact for a Jacobian that couples no two points of
  one colour, i.e. within ``probes`` cells per axis), in the spirit of quasi-DEER (Gonzalez et al., NeurIPS 2024).
  A residual stepper ``x + g(x)`` has ``J ~ I``: the diagonal carries the persistence that Picard lacks;
- ``picard``: ``J = 0`` (Jacobi iteration): every frame recomputed from the previous iterate.

Whatever the Jacobian, frame ``k`` is exact after ``k`` iterations (the system is lower triangular in time), so
every method terminates after at most ``T`` iterations; the iterations stop once the residual
``max |F(X) - X| / max |start|`` is at most ``tol``, and the returned frames are ``F(X)`` at that iterate. A
safeguard keeps the (quasi-)Newton iterations from diverging: an update whose residual grows more than ``GROWTH``-fold
over the last accepted one is rejected and a Picard step taken from the accepted iterate instead (the rejected update
does not count as an iteration, so the finite termination holds; the report counts these ``fallbacks``).

Gradients (:meth:`ParallelRollout.unroll`, for rollout training) use implicit differentiation of the converged
root: with ``Y = F(X*)`` the loss gradient ``g`` becomes ``y = (I - dF/dX)^{-T} g``, the adjoint recurrence, solved
by the same iterations backwards in time (a reversed scan with transposed coefficients, each iteration one batched
vector-Jacobian product through the graph of ``F(X*)``); ``y`` then flows into the parameters and the start frames
through that graph. Its result equals backpropagation through the sequential rollout to the tolerances.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from .errors import UserError

if TYPE_CHECKING:
    from .solvers.base import GridSolver

Stepper = Callable[[Tensor], Tensor]
METHODS = ("sequential", "picard", "quasi_newton", "newton")
GROWTH = 10.0  # a (quasi-)Newton update whose residual exceeds GROWTH x the last accepted one is replaced by a Picard step


class ExecutorOptions(BaseModel):
    """How a rollout is executed: ``sequential`` (one step after another) or solved in parallel over time.

    ``tol``: the residual ``max |F(X) - X| / max |start|`` at which the iterations stop (and, for the gradient,
    ``max |adjoint residual| / max |loss gradient|``). ``max_iterations``: at most this many (default: the number of
    steps, after which every method is exact). ``probes``: colours per space axis of the quasi-Newton diagonal
    estimate. ``max_jacobian_mb``: dense Newton refuses Jacobians above this size.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: Literal["sequential", "picard", "quasi_newton", "newton"] = "sequential"
    tol: float = Field(1e-5, gt=0, description="relative residual at which the iterations stop")
    max_iterations: int | None = Field(None, ge=1, description="iteration cap (default: the number of steps)")
    probes: int = Field(1, ge=1, le=8, description="colours per space axis of the quasi-Newton diagonal estimate")
    max_jacobian_mb: float = Field(2048.0, gt=0, description="largest dense Jacobian storage newton accepts (MiB)")


@dataclass
class ExecutorReport:
    """What one parallel solve did: iterations (updates), batched stepper calls, residual after each call."""

    method: str
    steps: int
    iterations: int = 0
    evaluations: int = 0
    residuals: list[float] = field(default_factory=list)
    converged: bool = False
    fallbacks: int = 0  # (quasi-)Newton updates rejected (residual grew more than GROWTH-fold) and replaced by Picard steps
    adjoint_iterations: int = 0
    adjoint_residuals: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "steps": self.steps, "iterations": self.iterations, "evaluations": self.evaluations,
                "residuals": list(self.residuals), "converged": self.converged, "fallbacks": self.fallbacks,
                "adjoint_iterations": self.adjoint_iterations, "adjoint_residuals": list(self.adjoint_residuals)}


# ------------------------------------------------------------------------------------------- windows
def windows(start: Tensor, frames: Tensor) -> Tensor:
    """The stepper inputs of all steps: ``[B * T, h, C, *space]`` from ``start [B, h, ...]`` and ``frames [B, T, ...]``.

    Window ``t`` holds the ``h`` frames before predicted frame ``t`` (start frames, then earlier predictions).
    """
    h, steps = start.shape[1], frames.shape[1]
    full = torch.cat([start, frames[:, : steps - 1]], dim=1)  # [B, h + T - 1, ...]
    w = full.unfold(1, h, 1)  # [B, T, C, *space, h]
    return w.movedim(-1, 2).flatten(0, 1)


def apply(step: Stepper, start: Tensor, frames: Tensor) -> Tensor:
    """``F(X)``: the stepper on every window in one batched call, ``[B, T, C, *space]``."""
    b, steps = frames.shape[:2]
    out = step(windows(start, frames))
    want = (b * steps, *frames.shape[2:])
    if tuple(out.shape) != want:
        raise UserError(f"parallel rollout: the stepper returned {tuple(out.shape)} for {b * steps} windows, expected {want} "
                        "(one frame per call; a stepper that returns several frames runs with the sequential executor)")
    return out.view(frames.shape)


# -------------------------------------------------------------------------------------- Jacobians
def dense_jacobians(step: Stepper, start: Tensor, frames: Tensor) -> Tensor:
    """Exact ``J [B, T, h, n, n]``: ``J[:, t, j - 1] = d x_t / d x_{t-j}`` (``n`` = channels x points), by ``torch.func``."""
    b, steps = frames.shape[:2]
    h, n = start.shape[1], frames[0, 0].numel()

    def one(w: Tensor) -> Tensor:
        return step(w[None])[0]

    with torch.enable_grad():
        jac = torch.func.vmap(torch.func.jacrev(one))(windows(start, frames))  # [B*T, C, *space, h, C, *space]
    jac = jac.reshape(b, steps, n, h, n).movedim(3, 2)  # [B, T, slot, n, n]; slot k holds frame t - h + k
    return jac.flip(2)  # lag j = h - k


def diagonal_jacobians(step: Stepper, start: Tensor, frames: Tensor, probes: int) -> Tensor:
    """Estimated diagonals ``D [B, T, h, n]`` of every ``J_{t,j}``: ``sum_c v_c * (J v_c)`` over colour probes ``v_c``.

    The colours: one per channel and per residue of every space index modulo ``probes``; each probe is one
    forward-mode product batched over all windows. Exact where ``J`` couples no two distinct points of one colour.
    """
    b, steps = frames.shape[:2]
    h = start.shape[1]
    w = windows(start, frames)
    space = tuple(frames.shape[3:])
    channels = frames.shape[2]
    grids = torch.meshgrid(*[torch.arange(s, device=w.device) % probes for s in space], indexing="ij")
    colour = torch.zeros(space, dtype=torch.long, device=w.device)
    for g in grids:
        colour = colour * probes + g
    diag = w.new_zeros((b * steps, h, channels, *space))
    for k in range(h):  # a loop over probes (h * channels * probes**d of them), each batched over all windows
        for c in range(channels):
            for p in range(probes ** len(space)):
                v = torch.zeros_like(w)
                v[:, k, c] = (colour == p).to(w.dtype)
                _, jv = torch.func.jvp(step, (w,), (v,))
                diag[:, k] += v[:, k] * jv
    return diag.view(b, steps, h, -1).flip(2)


# ------------------------------------------------------------------------------------------- scans
def affine_scan(a: Tensor, b: Tensor) -> Tensor:
    """``s_t = a_t s_{t-1} + b_t`` from ``s_{-1} = 0`` for all ``t``: ``a [..., T, m, m]``, ``b [..., T, m]``.

    Recursive doubling (Hillis-Steele): ``ceil(log2 T)`` levels, each composing every affine map with the one
    ``d`` steps before it; ``T log T`` compositions of work, ``log T`` depth. ``m = 1`` runs elementwise.
    """
    steps = b.shape[-2]
    scalar = a.shape[-1] == 1
    d = 1
    while d < steps:
        if scalar:
            b = torch.cat([b[..., :d, :], b[..., d:, :] + a[..., d:, :, 0] * b[..., :-d, :]], dim=-2)
            if 2 * d < steps:
                a = torch.cat([a[..., :d, :, :], a[..., d:, :, :] * a[..., :-d, :, :]], dim=-3)
        else:
            b = torch.cat([b[..., :d, :], b[..., d:, :] + (a[..., d:, :, :] @ b[..., :-d, :, None])[..., 0]], dim=-2)
            if 2 * d < steps:
                a = torch.cat([a[..., :d, :, :], a[..., d:, :, :] @ a[..., :-d, :, :]], dim=-3)
        d *= 2
    return b


def solve_lagged(coef: Tensor, rhs: Tensor, dense: bool) -> Tensor:
    """Solve ``v_t = sum_{j=1..h} J_{t,j} v_{t-j} + r_t`` (``v_{<0} = 0``) by a scan over the companion form.

    ``coef``: dense ``[B, T, h, n, n]`` or diagonal ``[B, T, h, n]``; ``rhs [B, T, n]``. The state of the scan is the
    last ``h`` values ``(v_{t-h+1}, ..., v_t)``; its map is the block companion matrix of the ``J_{t,j}``.
    """
    bsz, steps, h = coef.shape[:3]
    n = rhs.shape[-1]
    if dense:
        blocks, r = coef, rhs  # [B, T, h, n, n], [B, T, n]
    else:  # every point is its own scalar recurrence: batch over points, m = 1 per frame
        blocks, r = coef.movedim(-1, 1)[..., None, None], rhs.movedim(-1, 1)[..., None]  # [B, n, T, h, 1, 1], [B, n, T, 1]
    m = blocks.shape[-1]
    lead = blocks.shape[:-3]
    a = blocks.new_zeros((*lead, h * m, h * m))
    for i in range(h - 1):  # shift: the state keeps the last h values
        a[..., i * m:(i + 1) * m, (i + 1) * m:(i + 2) * m] = torch.eye(m, dtype=a.dtype, device=a.device)
    for j in range(1, h + 1):  # lag j multiplies v_{t-j}, block h - j of the previous state
        a[..., (h - 1) * m:, (h - j) * m:(h - j + 1) * m] = blocks[..., j - 1, :, :]
    rhs_state = r.new_zeros((*r.shape[:-1], h * m))
    rhs_state[..., (h - 1) * m:] = r
    s = affine_scan(a, rhs_state)[..., (h - 1) * m:]
    return s if dense else s[..., 0].movedim(1, -1).reshape(bsz, steps, n)


def transposed(coef: Tensor, dense: bool) -> Tensor:
    """The coefficients of the adjoint recurrence in reversed time.

    ``(L^T u)_s = sum_j J_{s+j,j}^T u_{s+j}``; with ``tau = T - 1 - s`` this is ``sum_j K_{tau,j} u'_{tau-j}`` with
    ``K_{tau,j} = J_{T-1-tau+j, j}^T`` (zero where ``tau < j``).
    """
    flipped = coef.flip(1)
    if dense:
        flipped = flipped.transpose(-1, -2)
    out = torch.zeros_like(flipped)
    steps = coef.shape[1]
    for j in range(1, coef.shape[2] + 1):  # a loop over the h lags
        if j < steps:
            out[:, j:, j - 1] = flipped[:, : steps - j, j - 1]
    return out


# ---------------------------------------------------------------------------------------- executor
class ParallelRollout:
    """Rollouts solved for all steps at once; :meth:`rollout` matches :func:`pdesolve.rollout.rollout`."""

    def __init__(self, options: ExecutorOptions) -> None:
        if options.method == "sequential":
            raise ValueError("ParallelRollout runs picard, quasi_newton or newton; sequential is pdesolve.rollout.rollout")
        self.options = options
        self.reports: list[ExecutorReport] = []

    def check_size(self, start: Tensor, steps: int) -> None:
        """Refuse dense Newton when the Jacobians of all steps would exceed ``max_jacobian_mb``."""
        if self.options.method != "newton":
            return
        b, h = start.shape[:2]
        n = start[0, 0].numel()
        mb = b * steps * (h * n) ** 2 * start.element_size() / 2**20 * 2  # the companion matrices and one product
        if mb > self.options.max_jacobian_mb:
            raise UserError(
                f"executor newton: dense Jacobians of {b} rollouts x {steps} steps of a state of {h} x {n} numbers need "
                f"{mb:,.0f} MiB, above max_jacobian_mb = {self.options.max_jacobian_mb:g}; use method quasi_newton or picard, "
                "fewer rollouts at once, or raise max_jacobian_mb")

    def _coefficients(self, step: Stepper, start: Tensor, frames: Tensor) -> Tensor | None:
        o = self.options
        if o.method == "newton":
            return dense_jacobians(step, start, frames).detach()
        if o.method == "quasi_newton":
            return diagonal_jacobians(step, start, frames, o.probes).detach()
        return None

    def solve(self, step: Stepper, start: Tensor, steps: int) -> tuple[Tensor, ExecutorReport, Tensor | None]:
        """The ``steps`` frames after ``start [B, h, C, *space]``, ``[B, steps, C, *space]``, without a graph.

        Returns the frames, the report, and the last Jacobian coefficients (None for Picard).
        """
        o = self.options
        self.check_size(start, steps)
        report = ExecutorReport(o.method, steps)
        cap = o.max_iterations if o.max_iterations is not None else steps
        scale = float(start.detach().abs().max()) or 1.0
        start = start.detach()
        x = start[:, -1:].expand(-1, steps, *start.shape[2:]).clone()  # persistence: the first guess
        coef = None
        dense = o.method == "newton"
        accepted: tuple[Tensor, Tensor, float] = (x, x, math.inf)  # the last accepted iterate, its F, its residual
        safe = True  # the iterate comes from a Picard step (or is the first guess): accepted whatever its residual
        with torch.no_grad():
            while True:
                f = apply(step, start, x)
                report.evaluations += 1
                res = float((f - x).abs().max()) / scale
                report.residuals.append(res)
                if safe or res <= GROWTH * accepted[2]:
                    accepted, picard = (x, f, res), o.method == "picard"
                else:  # the update made the residual grow (or overflow): a Picard step from the last accepted iterate
                    (x, f, res), picard = accepted, True
                    report.fallbacks += 1
                    report.iterations -= 1  # the rejected update made no progress
                if res <= o.tol or report.iterations >= cap or not math.isfinite(res):
                    report.converged = res <= o.tol
                    x = f
                    break
                if picard:
                    x, safe = f, True
                else:
                    coef = self._coefficients(step, start, x)
                    x, safe = x + solve_lagged(coef, (f - x).flatten(2), dense).view_as(x), False
                report.iterations += 1
        self.reports.append(report)
        return x, report, coef

    def rollout(self, step: Stepper, start: Tensor, steps: int) -> Tensor:
        """Like :func:`pdesolve.rollout.rollout` (no graph); its report is appended to :attr:`reports`."""
        if steps < 1:
            return start.new_empty((start.shape[0], 0, *start.shape[2:]))
        x, _, _ = self.solve(step, start, steps)
        return x

    def unroll(self, step: Stepper, start: Tensor, steps: int) -> tuple[Tensor, ExecutorReport]:
        """The frames with a graph whose backward is the implicit (adjoint) gradient of the converged rollout.

        The forward is one batched call ``F(X*)`` on the solved frames ``X*``; a hook on its output replaces the
        incoming gradient ``g`` by the adjoint ``y = (I - dF/dX)^{-T} g`` (solved by the executor's method backwards
        in time), so that the parameters and the start frames receive the gradient of the sequential rollout. The
        products with ``dF/dX`` go through a second batched graph of ``F`` at ``X*`` (a backward through the graph
        being backpropagated, from its own hook, would re-enter it).
        """
        x_star, report, coef = self.solve(step, start, steps)
        with torch.enable_grad():
            out = apply(step, start, x_star)  # the graph to the parameters and the start frames
            if not out.requires_grad:
                return out, report
            leaf = x_star.clone().requires_grad_(True)
            lagged = apply(step, start.detach(), leaf)  # a second graph, for the products with dF/dX
        coef_t = None if coef is None else transposed(coef, self.options.method == "newton")
        dense = self.options.method == "newton"
        o = self.options
        cap = o.max_iterations if o.max_iterations is not None else steps

        def adjoint(g: Tensor) -> Tensor:
            scale = float(g.abs().max()) or 1.0
            y = torch.zeros_like(g)
            report.adjoint_residuals.clear()
            report.adjoint_iterations = 0
            while True:
                first = report.adjoint_iterations == 0
                jty = torch.zeros_like(y) if first else torch.autograd.grad(lagged, leaf, y, retain_graph=True)[0]
                res_t = g + jty - y
                res = float(res_t.abs().max()) / scale
                report.adjoint_residuals.append(res)
                if res <= o.tol or report.adjoint_iterations > cap or res != res:
                    return y
                if coef_t is None:
                    y = g + jty
                else:
                    rev = res_t.flip(1).flatten(2)
                    y = y + solve_lagged(coef_t, rev, dense).flip(1).view_as(y)
                report.adjoint_iterations += 1

        out.register_hook(adjoint)
        return out, report


# ------------------------------------------------------------------------------------- for runners
def executor_for(solver: GridSolver, options: ExecutorOptions | None, piece: bool = False) -> ParallelRollout | None:
    """The parallel executor that ``options`` ask for on ``solver``'s rollouts (None: sequential), or a refusal."""
    if options is None or options.method == "sequential":
        return None
    if solver.frames_per_step != 1:
        raise UserError(f"executor {options.method}: solver {solver.name!r} returns {solver.frames_per_step} frames per call; "
                        "the parallel executors take one-frame steppers (use --executor sequential)")
    if options.method != "picard" and (piece or solver.step_with_grad() is None):
        what = "a piece's stepper" if piece else f"solver {solver.name!r}"
        raise UserError(f"executor {options.method}: {what} has no differentiable stepper to take Jacobians of; "
                        "use --executor picard or sequential")
    return ParallelRollout(options)


def executor_summary(parallel: ParallelRollout) -> dict[str, Any]:
    """What ``metrics.json`` records of the executor: its options and every rollout batch's iterations and residuals."""
    reports = parallel.reports
    return {
        **parallel.options.model_dump(),
        "converged": all(r.converged for r in reports),
        "iterations": [r.iterations for r in reports],
        "final_residuals": [r.residuals[-1] for r in reports],
        "residual_histories": [r.residuals for r in reports],
    }
