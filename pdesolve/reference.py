"""Trusted reference solutions: closed forms and high-accuracy quadratures, in float64.

Each entry of :data:`REFERENCES` takes a :class:`Problem` and a :class:`Grid` with a time axis and
returns the solution on the grid as ``[time, channel, *space]`` float64, or raises a
:class:`ReferenceError` that says why it does not apply to the problem.

The methods read the physics from the equation: its split (:meth:`pdesolve.equations.Equation.split`)
for the linear methods, its class for the family-specific ones.

- ``characteristics``: pure constant advection on a periodic axis (the split's linear part is advection
  only, no rest), ``u0(x - c t)`` with the speed ``c`` of the split;
- ``logistic``: the pointwise logistic ODE (:class:`Reaction`), ``u0 e^{rho t} / (1 - u0 + u0 e^{rho t})``;
- ``spectral``: equations whose split is linear with constant coefficients and has no rest (heat,
  convection, convection-diffusion, ...): each mode evolves by ``exp(L(k) t)`` with the split's symbol;
  Fourier modes on periodic axes, sine modes on axes with homogeneous Dirichlet walls when the symbol is
  even (no advection, no dispersion);
- ``cole_hopf``: viscous Burgers (:class:`Burgers`) by the Cole-Hopf transform, the heat kernel integral done by the
  trapezoidal rule (exponentially accurate for this smooth, Gaussian-decaying integrand);
- ``splitting``: Fisher-KPP (:class:`ReactionDiffusion`) by Strang splitting with exact sub-steps
  (second order in the splitting step, which is chosen small);
- ``file``: published or experimental data on a uniform grid (``options: {path: data.h5}``, also ``.npz`` / ``.mat``:
  a coordinate vector per axis, an array per field); errors are computed on the file's own grid (:func:`file_grid`),
  where the solver is evaluated.

An inverse problem (unknown coefficients) has a computed reference only when the true values are given: the methods
then solve :meth:`Problem.truth`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import scipy.fft

from .equations.families import Burgers, Reaction, ReactionDiffusion
from .equations.split import Split
from .expr import Expression, ExpressionError
from .grid import Grid
from .problem import Problem


class ReferenceError(ValueError):
    """A reference method that does not apply to the given problem."""


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ReferenceError(msg)


def _times_and_space(problem: Problem, grid: Grid) -> tuple[np.ndarray, list[np.ndarray]]:
    _require(grid.time is not None, "the reference needs a grid with a time axis")
    t0 = problem.domain.time[0]  # type: ignore[index]
    return grid.coords("t") - t0, [a.coords for a in grid.space]


def _u0(problem: Problem) -> Callable[..., np.ndarray]:
    """The initial condition of the (single) field as a function of the space coordinates."""
    fields = problem.equation.fields
    _require(len(fields) == 1, f"the references handle one field, {problem.equation.name!r} has {list(fields)}")
    expr = problem.initial.values[fields[0]]  # type: ignore[union-attr]
    names = problem.domain.space_names
    return lambda *xs: expr.numpy(**dict(zip(names, xs)))


def _linear_split(problem: Problem, method: str) -> Split:
    """The split of a source-free problem whose equation is ``u_t = L u`` exactly (constant coefficients)."""
    eq = problem.equation
    split = eq.split(problem.coefficients)
    _require(split is not None, f"{method!r} needs an equation that states its linear part (Equation.split); {eq.name!r} does not")
    _require(
        split.rest is None,  # type: ignore[union-attr]
        f"{method!r} needs a linear equation with constant coefficients (u_t = L u); {eq.name!r} has further terms",
    )
    _require(problem.source is None, f"{method!r} handles problems without a source term")
    return split  # type: ignore[return-value]


def _zero_walls(problem: Problem, axis: str) -> bool:
    """True when both walls of ``axis`` hold u = 0 (Dirichlet)."""
    walls = [bc for bc in problem.boundary if bc.axis == axis]
    return len(walls) == 2 and all(bc.kind == "dirichlet" and bc.value.is_constant() and bc.value.value() == 0 for bc in walls)


# --------------------------------------------------------------------------- closed forms
def characteristics(problem: Problem, grid: Grid) -> np.ndarray:
    """``u(x, t) = u0(x - c t)`` wrapped into the periodic axis, ``c`` the equation's constant advection speed."""
    linear = _linear_split(problem, "characteristics").linear
    _require(
        linear.pure_advection,
        f"'characteristics' needs pure advection (no diffusion, dispersion or growth); {problem.equation.name!r} has more",
    )
    _require(len(problem.domain.space) == 1, "'characteristics' handles one space axis")
    ax = problem.domain.space[0]
    _require(ax.periodic, f"'characteristics' needs a periodic axis; {ax.name!r} is bounded")
    t, (x,) = _times_and_space(problem, grid)
    beta = linear.advection[0] if linear.advection else 0.0
    xi = ax.lo + np.mod(x[None, :] - beta * t[:, None] - ax.lo, ax.hi - ax.lo)
    return _u0(problem)(xi)[:, None, :]


def logistic(problem: Problem, grid: Grid) -> np.ndarray:
    """Exact solution of ``u_t = rho u (1 - u)`` at every point."""
    _require(isinstance(problem.equation, Reaction), f"'logistic' is for the reaction equation, not {problem.equation.name!r}")
    _require(problem.source is None, "'logistic' handles problems without a source term")
    t, xs = _times_and_space(problem, grid)
    u0 = _u0(problem)(*np.meshgrid(*xs, indexing="ij"))
    g = np.exp(problem.coefficients["rho"] * t).reshape((-1,) + (1,) * u0.ndim)
    return (u0 * g / (1 - u0 + u0 * g))[:, None]


# ----------------------------------------------------------------------------- spectral
def spectral(problem: Problem, grid: Grid, oversample: int = 8) -> np.ndarray:
    """Exact modal evolution of a linear constant-coefficient equation (its split's symbol).

    The initial condition is sampled ``oversample`` times finer than the grid (at least 512 points per
    axis in 1D) so that its transform is accurate; modes then evolve exactly.
    """
    linear = _linear_split(problem, "spectral").linear
    t, _ = _times_and_space(problem, grid)
    kinds = []
    for ax in problem.domain.space:
        if ax.periodic:
            kinds.append("fourier")
            continue
        _require(
            _zero_walls(problem, ax.name) and linear.even,
            f"'spectral' needs axis {ax.name!r} periodic, or zero Dirichlet walls with an equation without advection "
            f"or dispersion (its sine modes then evolve independently)",
        )
        kinds.append("sine")
    # fine sampling: periodic -> n*r points (endpoint excluded); bounded -> interior points of (n-1)*r+1
    ratios = [max(oversample, int(math.ceil((512 if grid.ndim == 1 else 64) / max(a.n, 1)))) for a in grid.space]
    fine_x, ks = [], []
    for a, kind, r in zip(grid.space, kinds, ratios):
        if kind == "fourier":
            m = a.n * r
            fine_x.append(a.lo + a.length * np.arange(m) / m)
            ks.append(2 * np.pi * np.fft.fftfreq(m, d=a.length / m))
        else:
            m = (a.n - 1) * r
            fine_x.append(a.lo + a.length * np.arange(1, m) / m)
            ks.append(np.pi * np.arange(1, m) / a.length)
    u0 = _u0(problem)(*np.meshgrid(*fine_x, indexing="ij"))
    coef = u0.astype(np.complex128)
    for d, kind in enumerate(kinds):
        coef = np.fft.fft(coef, axis=d) if kind == "fourier" else _complex(scipy.fft.dst, coef, d)
    symbol = linear.symbol(np.meshgrid(*ks, indexing="ij"))
    out = np.empty((len(t),) + grid.space_shape)
    for i, ti in enumerate(t):
        c = coef * np.exp(symbol * ti)
        for d, kind in enumerate(kinds):
            c = np.fft.ifft(c, axis=d) if kind == "fourier" else _complex(scipy.fft.idst, c, d)
        v = c.real
        index = []
        for kind, r in zip(kinds, ratios):
            # sine axes: fine interior index j-1 stands for grid point j*r; pad the zero walls back
            index.append(slice(None, None, r) if kind == "fourier" else slice(r - 1, None, r))
        v = v[tuple(index)]
        for d, kind in enumerate(kinds):
            if kind == "sine":
                pad = [(0, 0)] * v.ndim
                pad[d] = (1, 1)
                v = np.pad(v, pad)
        out[i] = v
    return out[:, None]


def _complex(transform: Callable[..., np.ndarray], c: np.ndarray, axis: int) -> np.ndarray:
    """A real sine transform applied to the real and imaginary parts of ``c`` along ``axis``."""
    return transform(c.real, type=1, axis=axis) + 1j * transform(c.imag, type=1, axis=axis)


# ---------------------------------------------------------------------------- Cole-Hopf
def cole_hopf_burgers(
    u0: Callable[[np.ndarray], np.ndarray], nu: float, x: np.ndarray, t: np.ndarray, lo: float, period: float, *, derivative: bool = False
) -> np.ndarray:
    """Viscous Burgers on the real line with a ``period``-periodic initial state, at ``x`` x ``t``.

    ``u(x,t) = int (x-y)/t K w dy / int K w dy`` with ``K = exp(-(x-y)^2/(4 nu t))`` and
    ``w = exp(-U0(y)/(2 nu))``, ``U0`` the antiderivative of ``u0`` (computed spectrally, exact for
    band-limited data). Returns ``[len(t), len(x)]`` (``u_x`` instead with ``derivative=True``).
    """
    m = 1 << 16
    y_tab = lo + period * np.arange(m) / m
    coef = np.fft.fft(u0(y_tab)) / m
    mean = coef[0].real
    k = 2 * np.pi * np.fft.fftfreq(m, d=period / m)
    anti = np.zeros(m, dtype=np.complex128)
    anti[1:] = coef[1:] / (1j * k[1:])
    periodic_part = np.fft.ifft(anti * m).real  # antiderivative minus mean*y, on y_tab
    umax = float(np.max(np.abs(u0(y_tab))))
    dy = period / m
    out = np.empty((len(t), len(x)))
    for i, ti in enumerate(t):
        if ti <= 0:
            out[i] = np.gradient(u0(x), x) if derivative else u0(x)
            continue
        width = math.sqrt(4 * nu * ti)
        h_target = min(width / 8, nu / max(umax, 1e-12))
        stride = max(1, int(h_target / dy))
        h = stride * dy
        half = 2 * ti * umax + 12 * width
        kk = int(math.ceil(half / h))
        j0 = np.round((x - lo) / h).astype(np.int64)
        j = j0[:, None] + np.arange(-kk, kk + 1)[None, :]  # [nx, window] node indices on the h-grid
        y = lo + j * h
        U0 = periodic_part[np.mod(j * stride, m)] + mean * (y - lo)
        r = x[:, None] - y
        e = -(r**2) / (4 * nu * ti) - U0 / (2 * nu)
        w = np.exp(e - e.max(axis=1, keepdims=True))
        b = w.sum(axis=1)
        a = (r * w).sum(axis=1) / ti
        if not derivative:
            out[i] = a / b
        else:
            a_x = ((1 / ti - r**2 / (2 * nu * ti**2)) * w).sum(axis=1)
            b_x = (-r / (2 * nu * ti) * w).sum(axis=1)
            out[i] = a_x / b - a * b_x / b**2
    return out


def cole_hopf(problem: Problem, grid: Grid) -> np.ndarray:
    """Burgers by Cole-Hopf: periodic axes directly; zero Dirichlet walls by odd reflection."""
    _require(isinstance(problem.equation, Burgers), f"'cole_hopf' is for the Burgers equation, not {problem.equation.name!r}")
    _require(problem.source is None, "'cole_hopf' handles Burgers without a source term")
    ax = problem.domain.space[0]
    t, (x,) = _times_and_space(problem, grid)
    u0 = _u0(problem)
    if ax.periodic:
        lo, period, ext = ax.lo, ax.hi - ax.lo, u0
    else:
        _require(_zero_walls(problem, ax.name), "'cole_hopf' on a bounded axis needs u = 0 on both walls (odd reflection)")
        length = ax.hi - ax.lo

        def ext(y: np.ndarray) -> np.ndarray:  # odd about lo, 2L-periodic
            s = np.mod(y - ax.lo, 2 * length)
            inside = s <= length
            return np.where(inside, u0(ax.lo + np.minimum(s, length)), -u0(ax.lo + np.clip(2 * length - s, 0, length)))

        lo, period = ax.lo, 2 * length
    return cole_hopf_burgers(ext, problem.coefficients["nu"], x, t, lo, period)[:, None, :]


# ---------------------------------------------------------------------------- splitting
def splitting(problem: Problem, grid: Grid, steps_per_unit: int = 4000) -> np.ndarray:
    """Fisher-KPP on a periodic axis by Strang splitting: half reaction, full diffusion, half reaction."""
    _require(
        isinstance(problem.equation, ReactionDiffusion),
        f"'splitting' is for the reaction_diffusion equation, not {problem.equation.name!r}",
    )
    _require(problem.source is None, "'splitting' handles problems without a source term")
    ax = problem.domain.space[0]
    _require(ax.periodic, "'splitting' needs a periodic axis")
    t, (x,) = _times_and_space(problem, grid)
    p = problem.coefficients
    r = max(1, int(math.ceil(1024 / len(x))))
    m = len(x) * r
    xf = ax.lo + (ax.hi - ax.lo) * np.arange(m) / m
    k = 2 * np.pi * np.fft.fftfreq(m, d=(ax.hi - ax.lo) / m)
    u = _u0(problem)(xf)

    def react(v: np.ndarray, dt: float) -> np.ndarray:
        g = math.exp(p["rho"] * dt)
        return v * g / (1 - v + v * g)

    out = np.empty((len(t), len(x)))
    now = 0.0
    for i, ti in enumerate(t):
        n = int(math.ceil((ti - now) * steps_per_unit))
        if n > 0:
            dt = (ti - now) / n
            decay = np.exp(-p["nu"] * k**2 * dt)
            for _ in range(n):
                u = react(u, dt / 2)
                u = np.fft.ifft(np.fft.fft(u) * decay).real
                u = react(u, dt / 2)
            now = ti
        out[i] = u[::r]
    return out[:, None]


REFERENCES: dict[str, Callable[[Problem, Grid], np.ndarray]] = {
    "characteristics": characteristics,
    "logistic": logistic,
    "spectral": spectral,
    "cole_hopf": cole_hopf,
    "splitting": splitting,
}


def reference_solution(problem: Problem, grid: Grid) -> np.ndarray:
    """The problem's reference on ``grid`` as ``[time, channel, *space]`` float64."""
    if problem.reference is None:
        raise ReferenceError(f"problem {problem.name!r} declares no reference")
    kind = problem.reference.kind
    if kind not in REFERENCES:
        raise ReferenceError(f"unknown reference {kind!r}; valid references are {sorted(REFERENCES)}")
    fn: Any = REFERENCES[kind]
    options = dict(problem.reference.options)
    if problem.unknowns and kind != "file":
        truth = problem.truth()
        _require(truth is not None, f"{kind!r} needs a value for every coefficient, and {sorted(problem.unknowns)} are unknown; give "
                 "their true values (params.NAME.true_value)")
        problem = truth  # type: ignore[assignment]
    return fn(problem, grid, **options)


# ----------------------------------------------------------------------------- data files
def file_grid(problem: Problem, path: str | None = None) -> tuple[Grid, np.ndarray]:
    """The grid of a ``file`` reference and its values there, ``[time, channel, *space]`` (``[channel, *space]``
    without time), checked against the problem: an axis per coordinate of the domain, inside its bounds, uniform."""
    from .datafiles import DataFileError, read_gridded
    from .grid import GridAxis

    _require(path is not None, "the 'file' reference needs options: {path: DATA.h5} (.h5, .npz or .mat)")
    names, fields = problem.domain.names, problem.equation.fields
    try:
        coords, values = read_gridded(path, names, fields)  # type: ignore[arg-type]
    except DataFileError as err:
        raise ReferenceError(str(err)) from None
    bounds = problem.domain.bounds
    axes = []
    for n in names:
        c, (lo, hi) = coords[n], bounds[n]
        tol = 1e-9 * max(1.0, abs(lo), abs(hi))
        _require(c[0] >= lo - tol and c[-1] <= hi + tol, f"{path}: coordinate {n!r} spans [{c[0]:g}, {c[-1]:g}], outside the "
                 f"domain's [{lo:g}, {hi:g}]")
        axis = GridAxis(n, float(c[0]), float(c[-1]), len(c))
        _require(bool(np.allclose(c, axis.coords, rtol=0, atol=1e-6 * axis.spacing)),
                 f"{path}: coordinate {n!r} is not uniformly spaced; the file reference needs a uniform grid")
        axes.append(axis)
    time = axes[0] if problem.domain.time is not None else None
    grid = Grid(tuple(axes[1:] if time is not None else axes), time)
    lead = 1 if time is not None else 0
    return grid, np.moveaxis(values, -1, lead)


def file(problem: Problem, grid: Grid, path: str | None = None) -> np.ndarray:
    """Data from a file on its own grid (``grid`` must be that grid: :func:`file_grid`)."""
    own, values = file_grid(problem, path)
    same = own.names == grid.names and all(a.n == b.n and np.allclose(a.coords, b.coords) for a, b in zip(own.axes, grid.axes))
    _require(same, f"{path}: the file holds the reference on its own grid {dict(zip(own.names, own.shape))}; evaluate on that "
             f"grid, not {dict(zip(grid.names, grid.shape))}")
    return values


def reference_grid(problem: Problem) -> Grid | None:
    """The grid a problem's reference lives on when it has one of its own (a ``file`` reference), else None."""
    if problem.reference is None or problem.reference.kind != "file":
        return None
    return file_grid(problem, **dict(problem.reference.options))[0]


def simulator(problem: Problem, grid: Grid, **options: Any) -> np.ndarray:
    """The problem's numerical simulator (:mod:`pdesolve.simulate`), one trajectory from its initial condition."""
    from .simulate.reference import simulator_reference

    try:
        return simulator_reference(problem, grid, **options)
    except TypeError as err:  # an option the simulator reference does not take
        raise ReferenceError(f"'simulator' options: {err}") from None
    except ValueError as err:  # no simulator for the problem (SimulationError), one that failed on it, a bad option value
        raise ReferenceError(str(err)) from None


REFERENCES["simulator"] = simulator


def fd_masked(problem: Problem, grid: Grid, **options: Any) -> np.ndarray:
    """A steady linear problem on a region whose edges lie on grid lines (:mod:`pdesolve.reference_geometry`)."""
    from .reference_geometry import fd_masked as solve

    try:
        return solve(problem, grid, **options)
    except TypeError as err:  # an option it does not take
        raise ReferenceError(f"'fd_masked' options: {err}") from None


REFERENCES["fd_masked"] = fd_masked


# ------------------------------------------------------------------------ steady and exact
def sparse_fd(problem: Problem, grid: Grid, **options: Any) -> np.ndarray:
    """A steady problem by second-order finite differences and a sparse direct (Newton) solve (:mod:`pdesolve.sparse_fd`);
    ``[channel, *space]``. Options: ``refine`` (solve on a grid that many times finer, default 1), ``tol``, ``max_newton``."""
    from . import sparse_fd as fd

    try:
        return fd.solve(problem, grid, **options)
    except TypeError as err:  # an option it does not take
        raise ReferenceError(f"'sparse_fd' options: {err}") from None
    except fd.FDError as err:
        raise ReferenceError(str(err)) from None


def exact_expressions(problem: Problem, options: Mapping[str, Any]) -> dict[str, Expression]:
    """The ``exact`` reference's expression of each field (of t, when the problem has a time axis, and the space
    coordinates; the problem's parameters are constants); raises :class:`ReferenceError` naming what is wrong."""
    fields = problem.equation.fields
    missing = [f for f in fields if f not in options]
    extra = [k for k in options if k not in fields]
    _require(not missing and not extra, f"'exact' takes one expression per field {list(fields)} (options: {{{fields[0]}: EXPRESSION}}); "
             + (f"missing {missing}" if missing else "") + ("; " if missing and extra else "") + (f"unknown {extra}" if extra else ""))
    constants = {k: float(v) for k, v in problem.params.items()}
    constants.update({k: float(s.default) for k, s in problem.equation.parameters.items() if s.default is not None and k not in constants})
    out = {}
    for f in fields:
        try:
            out[f] = Expression.parse(options[f], problem.domain.names, constants)
        except ExpressionError as err:
            raise ReferenceError(f"'exact' options.{f}: {err}") from None
    return out


def exact(problem: Problem, grid: Grid, **options: Any) -> np.ndarray:
    """A manufactured (closed-form) solution given as expressions, ``{u: "sin(pi*x)*exp(-t)"}``: ``[time, channel, *space]``
    (``[channel, *space]`` for a steady problem)."""
    exprs = exact_expressions(problem, options)
    mesh = grid.mesh()
    values = [np.broadcast_to(e.numpy(**{k: v for k, v in mesh.items() if k in e.variables}), grid.shape) for e in exprs.values()]
    return np.stack(values, axis=1 if grid.time is not None else 0).astype(np.float64)


REFERENCES["sparse_fd"] = sparse_fd
REFERENCES["exact"] = exact


def reference_errors(problem: Problem) -> list[str]:
    """What ``validate`` can tell about the problem's reference before a run: the ``exact`` expressions (unknown symbols,
    one per field, finite on a probe grid) and whether ``sparse_fd`` takes the problem."""
    ref = problem.reference
    if ref is None:
        return []
    if ref.kind == "exact":
        try:
            exprs = exact_expressions(problem, ref.options)
        except ReferenceError as err:
            return [f"reference: {err}"]
        probe = problem.domain.grid({n: 9 for n in problem.domain.names}).mesh()
        found = []
        for f, e in exprs.items():
            with np.errstate(all="ignore"):
                values = e.numpy(**{k: v for k, v in probe.items() if k in e.variables})
            if not np.all(np.isfinite(values)):
                found.append(f"reference: 'exact' options.{f}: {e.text!r} is not finite everywhere on the domain")
        return found
    if ref.kind == "sparse_fd":
        from . import sparse_fd as fd

        why = fd.check(problem)
        unknown = sorted(set(ref.options) - {"refine", "tol", "max_newton"})
        return ([f"reference: {why}"] if why else []) + ([f"reference.options: unknown {unknown}; 'sparse_fd' takes refine, tol, "
                                                          "max_newton"] if unknown else [])
    return []


REFERENCES["file"] = file
