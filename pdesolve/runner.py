"""Solve a configured problem end to end and keep everything in a run folder.

A run folder holds ``config.yaml`` (the resolved settings: rerunning it reproduces the run),
``checkpoint.pt``, ``history.csv``, ``solution.h5`` (prediction, reference, coordinates),
``metrics.json`` and PNG figures. Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import torch
import yaml

from . import __version__
from .config import RunConfig, load_run_config
from .distributed import Ranks, join_torchrun_group
from .errors import UserError
from .geometry import Geometry
from .grid import Grid
from .io import write_json, write_text, write_with
from .metrics import error_metrics, outside_as_nan, region_mask
from .optim import Optimizer, make_optimizer
from .parametric import HeldOut, ParametricSolver, held_out
from .plot import causal_chunks, plot_causal_weights, plot_fields, plot_history, plot_parameters, plot_residual, plot_slices
from .plot_geometry import plot_region_fields
from .reference import ReferenceError, reference_grid, reference_solution
from .solution import Solution
from .solvers import SOLVERS, get_solver
from .solvers.base import FAMILY, GridSolver, PointSolver, Solver, SolverMismatch
from .task import Task, check_rule
from .train import CheckpointFile, RunStatus, TrainResult, TrainSettings, seed_everything, train

if TYPE_CHECKING:
    from .simulate.family import InitialConditionFamily

log = logging.getLogger(__name__)

# diagnostics a solver may return that belong in metrics.json: condition violations, the constrained
# solve's status (hc, moe_hc), errors on held-out initial conditions (the hc family setting), notes (what the solver
# chose for the user: soft conditions on a region), the recovered coefficients of an inverse problem and the data misfit
METRIC_DIAGNOSTICS = ("violations", "solve", "family", "notes", "recovered", "data_misfit")


@dataclass
class Result:
    """What a solve returns: metrics, the solution on the evaluation grid, the reference, the run folder."""

    metrics: dict[str, Any]
    solution: Solution
    reference: np.ndarray | None
    status: RunStatus
    run_dir: Path | None
    history: list[dict[str, float]] = field(default_factory=list)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    geometry: Geometry | None = None  # the problem's region, if any (figures draw its shape)

    def plot(self, folder: str | Path | None = None) -> list[Path]:
        """Write the figures (to the run folder by default) and return their paths."""
        target = Path(folder) if folder is not None else self.run_dir
        if target is None:
            raise ValueError("this result has no run folder; pass a folder to plot()")
        return write_figures(target, self.solution, self.reference, self.history, self.diagnostics, self.geometry)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for but torch sees no CUDA device; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; expected cpu, cuda or auto")
    return torch.device(name)


def join_ranks(cfg: RunConfig, device: torch.device) -> tuple[Ranks, torch.device]:
    """The process group a solver's options ask for (joined here, before the solver exists) and this rank's device."""
    if not get_solver(cfg.solver).distributed(cfg.solver_options):
        return Ranks.single(), device
    try:
        ranks = Ranks.of(join_torchrun_group(device))
    except RuntimeError as err:
        raise UserError(f"{cfg.path}: solvers.{cfg.solver}.distributed: {err}; or set distributed: false") from None
    if device.type == "cuda":  # this rank's GPU (torchrun's LOCAL_RANK)
        device = torch.device("cuda", torch.cuda.current_device())
    return ranks, device


def family_of(cfg: RunConfig) -> InitialConditionFamily | None:
    """The problem's initial-condition family (its ``simulate:`` section), for a solver whose options use one."""
    if cfg.simulate is None or not get_solver(cfg.solver).needs_family(cfg.solver_options):
        return None
    from .simulate.family import InitialConditionFamily

    try:
        return InitialConditionFamily.from_settings(cfg.problem, cfg.simulate, cfg.seed)
    except (UserError, ValueError) as err:
        raise UserError(f"{cfg.path}: simulate: {err}") from None


def build_solver(cfg: RunConfig, device: torch.device, ranks: Ranks | None = None) -> Solver:
    """The configured solver, with the process group (``ranks``) and the family the runner set up for it."""
    cls = get_solver(cfg.solver)
    try:
        return cls(cfg.problem, cfg.solver_options, device, ranks=ranks, family=family_of(cfg))  # type: ignore[arg-type]
    except SolverMismatch as err:
        raise UserError(f"{cfg.path}: {err}") from None


def evaluation_grid(cfg: RunConfig) -> Grid:
    """The grid a run is scored on: the reference's own (a ``file`` reference) or ``evaluate.grid``."""
    try:
        own = reference_grid(cfg.problem)
    except ReferenceError as err:
        raise UserError(f"{cfg.path}: reference: {err}") from None
    return own if own is not None else cfg.problem.domain.grid(cfg.eval_grid)


def reference_on(cfg: RunConfig, grid: Grid) -> np.ndarray | None:
    """The reference as ``[batch=1, time, channel, *space]`` (``[1, channel, *space]`` for a steady problem), or None when
    the problem has none; with a geometry, NaN at the grid points outside the region."""
    if cfg.problem.reference is None:
        return None
    try:
        return outside_as_nan(reference_solution(cfg.problem, grid)[None], region_mask(cfg.problem.domain, grid))
    except ReferenceError as err:
        raise UserError(f"{cfg.path}: reference: {err}") from None


@dataclass
class Run:
    """One training run being set up: its device, ranks, folder and solver (the same for point and grid solvers).

    :func:`start` makes it; the runner builds the solver's task, then :meth:`train` checks the training rule
    against the task, opens the folder (only now, so that anything that refuses the run leaves no folder)
    and trains.
    """

    cfg: RunConfig
    device: torch.device
    ranks: Ranks
    folder: Path
    solver: Solver

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoint.pt"

    overwrite: bool = False

    def open_folder(self) -> None:
        """Create the folder (on the primary rank; every rank learns its name; with ``overwrite``, cleared first) and
        write ``config.yaml``. Called once everything that can refuse the run has been checked."""
        self.folder = self.ranks.broadcast(self.folder)
        if self.ranks.primary:
            try:
                if self.overwrite and self.folder.exists():
                    shutil.rmtree(self.folder)
                self.folder.mkdir(parents=True, exist_ok=True)
                write_text(self.folder / "config.yaml", yaml.safe_dump(self.cfg.raw, sort_keys=False))
            except OSError as err:
                raise UserError(f"{self.folder}: cannot write the run folder there ({err.strerror or err}); choose another --out") from None

    def rule(self) -> Optimizer:
        cfg = self.cfg
        return make_optimizer(cfg.train.optimizer.name, cfg.optimizer_options, cfg.train.steps)  # type: ignore[arg-type]

    def train(self, task: Task, rule: Optimizer, *, resume: bool, quiet: bool) -> TrainResult:
        t = self.cfg.train
        settings = TrainSettings(steps=t.steps, eval_every=t.eval_every, checkpoint_every=t.checkpoint_every,
                                 log_every=t.log_every, quiet=quiet or not self.ranks.primary)
        store = RunCheckpoint(self.checkpoint, self.cfg.raw, write=self.ranks.primary)
        result = train(task, rule, settings, checkpoint=store, resume=resume)
        if result.resumed_from is not None:
            log.info("resumed %s from step %d", self.folder, result.resumed_from)
        return result


def start(cfg: RunConfig, out: str | Path | None, *, resume: bool, root: str | Path, overwrite: bool = False) -> Run:
    """Device, process group, seed, run folder and solver of a run; no file is written yet.

    Refused here: everything ``pdesolve validate`` refuses (:func:`pdesolve.preflight.check`: the problem, the
    reference, the solver and its training rule, every reason at once); resuming a folder without a checkpoint, or
    with other settings than the run it holds (only a larger ``train.steps`` and another device may differ); starting
    in a folder that holds a run, unless ``overwrite`` (then it is cleared when the run opens it).
    """
    from .preflight import check  # it builds solvers as this module does (family_of), so it imports this module

    check(cfg)
    device = resolve_device(cfg.device)
    ranks, device = join_ranks(cfg, device)
    seed_everything(cfg.seed)
    folder = Path(out) if out is not None else free_folder(Path(root) / f"{cfg.problem.name}-{cfg.solver}-{time.strftime('%Y%m%d-%H%M%S')}")
    if resume:
        check_resume(folder, cfg)
    elif folder.is_file():
        raise UserError(f"{folder}: a file, not a run folder; choose another --out")
    elif folder.exists() and any(folder.iterdir()) and not overwrite:
        raise UserError(f"{folder} already holds files (a run?); continue it with --resume {folder}, start it over with "
                        "--overwrite (its files are removed), or choose another --out")
    run = Run(cfg, device, ranks, folder, build_solver(cfg, device, ranks))
    run.overwrite = overwrite and not resume
    return run


def free_folder(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``, ... : the first that does not exist (two runs started in one second)."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


RESUMABLE = ("train.steps", "device")  # what a resumed run may change: a longer budget, another device


class RunCheckpoint(CheckpointFile):
    """A run folder's ``checkpoint.pt``: with the resolved settings of the run, which resume compares against."""

    def __init__(self, path: Path, config: dict[str, Any] | None = None, write: bool = True):
        super().__init__(path, write)
        self.config = config

    def save(self, state: dict[str, Any]) -> None:
        assert self.config is not None, "a checkpoint written by a run carries its settings"
        super().save({**state, "config": self.config})

    def load(self) -> dict[str, Any]:
        try:
            return super().load()
        except Exception as err:  # noqa: BLE001 - any unreadable file is the same user-facing fact
            raise UserError(f"{self.path}: not a readable checkpoint ({type(err).__name__}: {err}); start the run over "
                            "with --overwrite") from None


def check_resume(folder: Path, cfg: RunConfig) -> None:
    """Refuse to resume ``folder`` unless its checkpoint is a run of these settings (up to :data:`RESUMABLE`) and
    ``train.steps`` does not fall below the step it reached."""
    store = RunCheckpoint(folder / "checkpoint.pt", cfg.raw, write=False)
    if not store.exists():
        raise UserError(f"{folder}: no checkpoint.pt to resume from")
    state = store.load()
    stored = state.get("config")
    if stored is not None:
        differ = [k for k in setting_differences(stored, cfg.raw) if k not in RESUMABLE]
        if differ:
            raise UserError(f"{folder}: --resume continues the run as it was configured, and these settings differ from "
                            f"its checkpoint's: {', '.join(differ)}; start a new run (another --out) to change them")
    if cfg.train.steps < int(state["step"]):
        raise UserError(f"{folder}: its checkpoint is at step {state['step']}; --steps / train.steps {cfg.train.steps} is "
                        "below it (a resumed run can only go on)")


def setting_differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted keys where two resolved configurations differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in a or k not in b:
                out.append(key)
            else:
                out += setting_differences(a[k], b[k], key)
        return out
    return [] if a == b else [prefix or "(the whole file)"]


def checked_rule(run: Run, task: Task) -> Optimizer:
    """The run's training rule, refused (as a user error, before any folder exists) if ``task`` lacks what it needs."""
    rule = run.rule()
    check_rule(rule, task)
    return rule


def run(cfg: RunConfig, out: str | Path | None = None, *, resume: bool = False, quiet: bool = False, root: str | Path = "runs",
        overwrite: bool = False) -> Result:
    """Train ``cfg``'s point solver on its problem, evaluate against the reference and fill the run folder."""
    if is_grid_solver(cfg.solver):
        raise UserError(f"solver {cfg.solver!r} is a grid solver that learns from data: train it with `pdesolve train FILE "
                        "--data DATA.h5` (make data with `pdesolve simulate FILE --out DATA.h5`)")
    current = start(cfg, out, resume=resume, root=root, overwrite=overwrite)
    solver = current.solver
    assert isinstance(solver, PointSolver)
    grid = evaluation_grid(cfg)
    members = held_out(cfg, grid)  # a parametric family is scored on held-out members (pdesolve/parametric.py)
    ref = reference_on(cfg, grid) if members is None else members.reference
    inside = region_mask(cfg.problem.domain, grid)  # a geometry's points of the grid (None: the whole box)

    def evaluate() -> dict[str, float]:
        if ref is None:
            return {}
        if members is not None:
            return HeldOut.scalars(members.metrics(predicted(solver, grid, members).numpy()))
        return error_metrics(solver.predict(grid).numpy(), ref, inside)

    task = solver.task(evaluate)
    rule = checked_rule(current, task)
    current.open_folder()
    result = current.train(task, rule, resume=resume, quiet=quiet)
    solution = predicted(solver, grid, members)
    diagnostics = solver.diagnostics(grid)
    metrics = run_summary(cfg, result, current.device)
    metrics["parameters"] = sum(p.numel() for p in solver.model.parameters())
    if ref is not None:
        metrics.update(error_metrics(solution.numpy(), ref, region_mask(cfg.problem.domain, grid)) if members is None
                       else family_scores(members, solution, diagnostics))
    metrics.update({k: diagnostics[k] for k in METRIC_DIAGNOSTICS if k in diagnostics})
    if not current.ranks.primary:
        return Result(metrics, solution, ref, result.status, None, result.history, diagnostics, cfg.problem.domain.geometry)
    run_dir = current.folder
    write_json(run_dir / "metrics.json", metrics)
    write_history(run_dir / "history.csv", result.history)
    write_solution(run_dir / "solution.h5", solution, ref, diagnostics)
    res = Result(metrics, solution, ref, result.status, run_dir, result.history, diagnostics, cfg.problem.domain.geometry)
    res.plot()
    return res


def predicted(solver: Solver, grid: Grid, members: HeldOut | None) -> Solution:
    """The solver's prediction on ``grid``, or of a parametric family's held-out ``members``."""
    if members is None:
        return solver.predict(grid)
    assert isinstance(solver, ParametricSolver), "the configuration refuses a family for a solver that is not parametric"
    return members.predict(solver)


def family_scores(members: HeldOut, solution: Solution, diagnostics: dict[str, Any]) -> dict[str, Any]:
    """The held-out members' errors, and their figure (error against the parameter) added to ``diagnostics``."""
    scores = members.metrics(solution.numpy())
    diagnostics.setdefault("figures", {})["held_out_error"] = members.figure(scores)
    return scores


def is_grid_solver(name: str) -> bool:
    """True for back-ends that learn time steps on a grid (False for unknown names)."""
    return name in SOLVERS and issubclass(SOLVERS[name], GridSolver)


def trains_without_data(name: str) -> bool:
    """True for grid solvers that train on the problem's initial-condition family alone (``pdesolve solve`` runs them)."""
    cls = SOLVERS.get(name)
    return cls is not None and issubclass(cls, GridSolver) and FAMILY in cls.trains_on


def run_summary(cfg: RunConfig, result: Any, device: torch.device) -> dict[str, Any]:
    """What every run's metrics.json starts with: what ran, how it ended, where and how long."""
    return {
        "problem": cfg.problem.name,
        "solver": cfg.solver,
        "status": result.status.kind,
        "status_message": result.status.message,
        "steps": result.status.step,
        "wall_time_s": round(result.wall_time, 3),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "seed": cfg.seed,
        "pdesolve_version": __version__,
    }


# ----------------------------------------------------------------------------- files
def write_history(path: Path, history: list[dict[str, float]]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    write_text(path, buf.getvalue())


def read_history(path: Path) -> list[dict[str, float]]:
    """A run's ``history.csv`` (empty when there is none); a damaged file is a user error naming it."""
    if not path.exists():
        return []
    try:
        with open(path) as fh:
            return [{k: float(v) for k, v in row.items() if k is not None and v not in ("", None)} for row in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as err:
        raise UserError(f"{path}: not a readable history ({type(err).__name__}: {err}); rerun the run or remove the file") from None


def write_solution(path: Path, solution: Solution, ref: np.ndarray | None, diagnostics: dict[str, Any]) -> None:
    def writer(p: Path) -> None:
        with h5py.File(p, "w") as f:
            f.create_dataset("prediction", data=solution.numpy())
            if ref is not None:
                f.create_dataset("reference", data=ref)
            if "residual_map" in diagnostics:
                f.create_dataset("residual", data=diagnostics["residual_map"])
            for a in solution.grid.axes:
                f.create_dataset(f"coords/{a.name}", data=a.coords).attrs["periodic"] = a.periodic
            f.attrs["fields"] = list(solution.fields)
            f.attrs["axes"] = list(solution.grid.names)
            f.attrs["layout"] = "[batch, time, channel, *space]" if solution.grid.time is not None else "[batch, channel, *space]"

    write_with(path, writer)


def read_solution(path: Path) -> tuple[Solution, np.ndarray | None, dict[str, Any]]:
    """A run's ``solution.h5``; a damaged or foreign file is a user error naming it."""
    try:
        return _read_solution(path)
    except (OSError, KeyError, ValueError, IndexError, TypeError) as err:
        raise UserError(f"{path}: not a readable pdesolve solution ({type(err).__name__}: {err}); recompute it with "
                        "`pdesolve evaluate RUN_DIR`") from None


def _read_solution(path: Path) -> tuple[Solution, np.ndarray | None, dict[str, Any]]:
    from .grid import GridAxis

    with h5py.File(path, "r") as f:
        axes = []
        for name in f.attrs["axes"]:
            c = f[f"coords/{name}"][()]
            periodic = bool(f[f"coords/{name}"].attrs["periodic"])
            hi = c[-1] + (c[1] - c[0]) if periodic else c[-1]
            axes.append(GridAxis(name, float(c[0]), float(hi), len(c), periodic))
        pred = f["prediction"][()]
        ref = f["reference"][()] if "reference" in f else None
        diag = {"residual_map": f["residual"][()]} if "residual" in f else {}
        fields = tuple(f.attrs["fields"])
    time_axis = next((a for a in axes if a.name == "t"), None)
    space = tuple(a for a in axes if a.name != "t")
    return Solution(Grid(space, time_axis), fields, pred), ref, diag


def write_figures(folder: Path, solution: Solution, ref: np.ndarray | None, history: list[dict[str, float]],
                  diagnostics: dict[str, Any], geometry: Geometry | None = None) -> list[Path]:
    """Draw the standard figures and the solver's own; a figure that fails is logged and skipped, never the run.
    A steady 2D solution on a ``geometry`` is drawn on the region's shape (blank outside, its parts outlined)."""
    folder = Path(folder)
    grid = solution.grid
    pred = solution.numpy()[0]
    lead = 1 if grid.time is not None else 0
    figures: dict[str, Callable[[Path], None]] = {}
    on_region = geometry is not None and grid.time is None and grid.ndim == 2
    for c, name in enumerate(solution.fields):
        draw = partial(plot_region_fields, geometry=geometry) if on_region else plot_fields
        figures[f"fields_{name}"] = partial(draw, grid=grid, pred=np.take(pred, c, axis=lead),
                                            ref=None if ref is None else np.take(ref[0], c, axis=lead), field=name)
    if grid.time is not None and grid.ndim == 1:
        figures["slices"] = partial(plot_slices, grid=grid, pred=pred[:, 0], ref=None if ref is None else ref[0][:, 0])
    if history:
        figures["history"] = partial(plot_history, history=history)
    if causal_chunks(history or []):
        figures["causal_weights"] = partial(plot_causal_weights, history=history)
    if "residual_map" in diagnostics:
        figures["residual"] = partial(plot_residual, grid=grid, residual=diagnostics["residual_map"])
    if history and diagnostics.get("recovered"):
        figures["parameters"] = partial(plot_parameters, history=history, recovered=diagnostics["recovered"])
    figures.update(diagnostics.get("figures", {}))  # a solver's own figures, e.g. LPINN's characteristics
    paths = []
    for name, draw in figures.items():
        p = folder / f"{name}.png"
        try:
            draw(p)
        except Exception as err:  # noqa: BLE001 - the results are already on disk; a broken figure must not lose them
            log.warning("figure %s not written: %s: %s", p, type(err).__name__, err)
            continue
        paths.append(p)
    return paths


def load_run(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise UserError(f"{run_dir}: not a run folder (no config.yaml)")
    return load_run_config(path)


def evaluate_run(run_dir: str | Path) -> dict[str, Any]:
    """Recompute a run's prediction from its checkpoint and its metrics against the reference."""
    run_dir = Path(run_dir)
    cfg = load_run(run_dir)
    if is_grid_solver(cfg.solver):
        raise UserError(f"{run_dir}: a run of the grid solver {cfg.solver!r}; score it on trajectories with "
                        f"`pdesolve rollout {run_dir} --data DATA.h5`")
    ckpt = run_dir / "checkpoint.pt"
    if not ckpt.exists():
        raise UserError(f"{run_dir}: no checkpoint.pt")
    device = resolve_device(cfg.device)
    solver = build_solver(cfg, device)
    state = RunCheckpoint(ckpt, write=False).load()
    solver.model.load_state_dict(state["model"])
    grid = evaluation_grid(cfg)
    members = held_out(cfg, grid)
    ref = reference_on(cfg, grid) if members is None else members.reference
    solution = predicted(solver, grid, members)
    metrics_path = run_dir / "metrics.json"
    import json

    try:
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        log.warning("%s: not readable JSON; it is written anew", metrics_path)
        metrics = {}
    if not isinstance(metrics, dict):
        metrics = {}
    diagnostics = solver.diagnostics(grid)
    if ref is not None:
        metrics.update(error_metrics(solution.numpy(), ref, region_mask(cfg.problem.domain, grid)) if members is None
                       else family_scores(members, solution, diagnostics))
    metrics.update({k: diagnostics[k] for k in METRIC_DIAGNOSTICS if k in diagnostics})
    write_json(metrics_path, metrics)
    write_solution(run_dir / "solution.h5", solution, ref, diagnostics)
    return metrics
