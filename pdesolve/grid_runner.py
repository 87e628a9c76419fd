"""Train a grid solver, roll it out, and keep everything in a run folder.

The grid-solver counterpart of :mod:`pdesolve.runner` (which evaluates point solvers pointwise); both set
a run up the same way (:func:`pdesolve.runner.start`). A grid solver (:class:`~pdesolve.solvers.base.GridSolver`)
trains on a trajectory dataset (``data_task``: the dataset is split into train / val / test), or with no data on
the problem's initial-condition family (``family_task``: its validation and test trajectories are simulated
from held-out members of the family). A run folder holds ``config.yaml`` (the resolved problem file),
``data.json`` (the dataset and its split, or the simulated held-out sets), ``checkpoint.pt``, ``history.csv``,
``metrics.json`` (one-step and rollout errors on the test trajectories, and the error at each rollout step),
``solution.h5`` (full rollouts of a few test trajectories with their reference) and figures:
``frames_<field>.png`` (prediction, reference and error at a few times), ``error_vs_step.png`` and ``history.png``.
This module reads only the GridSolver interface.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import RunConfig
from .data import TrajectoryFile, split_trajectories
from .errors import UserError
from .grid import Grid
from .io import write_json, write_with
from .parallel_time import ExecutorOptions, executor_for, executor_summary
from .plot import plot_history, save_figure
from .rollout import (
    DatasetMismatch,
    RolloutReport,
    Trajectories,
    check_dataset,
    evaluate_rollouts,
    full_rollout,
    load_trajectories,
    rollout,
)
from .runner import (
    RunCheckpoint,
    build_solver,
    checked_rule,
    is_grid_solver,
    load_run,
    resolve_device,
    run_summary,
    start,
    write_history,
    write_solution,
)
from .solution import Solution
from .solvers.base import DATA, FAMILY, GridSolver
from .train import RunStatus

log = logging.getLogger(__name__)
SAVED_ROLLOUTS = 4  # test trajectories kept in solution.h5
EVAL_BATCH = 64  # windows per evaluation batch
VALIDATION_STREAM, TEST_STREAM = 0x5641, 0x5445  # the family's held-out members (apart from what training draws)


@dataclass
class GridResult:
    """What a grid run returns: test metrics, the saved rollouts, the run folder."""

    metrics: dict[str, Any]
    status: RunStatus
    run_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)


def open_dataset(cfg: RunConfig, path: str | Path) -> TrajectoryFile:
    file = TrajectoryFile(path)
    try:
        check_dataset(cfg.problem, file)
    except DatasetMismatch as err:
        raise UserError(str(err)) from None
    return file


def _load(cfg: RunConfig, solver: GridSolver, file: TrajectoryFile, indices: Any) -> Trajectories:
    try:
        return load_trajectories(cfg.problem, file, indices, solver.data_settings.stride)
    except DatasetMismatch as err:
        raise UserError(str(err)) from None


def evaluate(solver: GridSolver, data: Trajectories, cfg: RunConfig, stepper: Any = None, roll: Any = rollout) -> RolloutReport:
    """Rollout errors of ``solver`` (or of ``stepper``, one of its pieces) on ``data`` with its rollout settings."""
    r = solver.rollout_settings
    try:
        return evaluate_rollouts(stepper or solver.step, data, solver.history, r.steps, r.starts, batch_size=EVAL_BATCH,
                                 device=solver.device, dtype=solver.dtype, roll=roll)
    except ValueError as err:
        raise UserError(f"evaluation rollouts: {err} (see solvers.{cfg.solver}.rollout_steps)") from None


@dataclass(frozen=True)
class HeldOut:
    """What a grid run trains on besides its task, and scores against: validation and test trajectories, and
    the description that goes to ``data.json``."""

    val: Trajectories
    test: Trajectories
    record: dict[str, Any]


def _dataset_sets(cfg: RunConfig, solver: GridSolver, data: str | Path | None, run_dir: Path, resume: bool
                  ) -> tuple[Trajectories, HeldOut]:
    """The train split of the dataset, and its val and test splits."""
    if resume and data is None:
        data = json.loads((run_dir / "data.json").read_text())["path"]
    if data is None:
        raise UserError("no dataset: pass --data DATA.h5 (make one with `pdesolve simulate FILE --out DATA.h5`)")
    file = open_dataset(cfg, data)
    ds = solver.data_settings
    splits = split_trajectories(file.n_trajectories, ds.split, ds.seed)
    if len(splits["train"]) == 0 or len(splits["test"]) == 0:
        raise UserError(
            f"{file.path}: {file.n_trajectories} trajectories leave {len(splits['train'])} for training and "
            f"{len(splits['test'])} for testing with split {list(ds.split)}; simulate more (--n) or change solvers.{cfg.solver}.split"
        )
    train_data = _load(cfg, solver, file, splits["train"])
    val = _load(cfg, solver, file, splits["val"][: solver.rollout_settings.eval_trajectories])
    test = _load(cfg, solver, file, splits["test"])
    record = {
        "path": str(Path(file.path).resolve()),
        "trajectories": file.n_trajectories,
        "split": {k: [int(i) for i in v] for k, v in splits.items()},
        "frame_dt": train_data.dt,
        "space_shape": list(train_data.grid.space_shape),
    }
    return train_data, HeldOut(val, test, record)


def family_grid(cfg: RunConfig) -> Grid:
    """The grid of the problem's ``simulate:`` section: its space resolution and its saved frame times."""
    if cfg.simulate is None:
        raise UserError(f"{cfg.path}: solver {cfg.solver!r} trains without data on the problem's initial-condition family: "
                        "add a simulate: section (initial, parameters, resolution, steps)")
    try:
        return cfg.problem.domain.grid(cfg.simulate.shape(cfg.problem.domain.space_names))
    except ValueError as err:
        raise UserError(f"{cfg.path}: simulate.{err}") from None


def _family_sets(cfg: RunConfig, solver: GridSolver, grid: Grid) -> HeldOut:
    """Validation and test trajectories simulated from held-out members of the problem's family."""
    family, settings = solver.family, cfg.simulate
    assert family is not None and settings is not None, "the runner builds the family of a solver that trains on it"
    test_n = max(1, round(solver.data_settings.split[2] * settings.trajectories))
    sets = {}
    for name, n, stream in (("val", solver.rollout_settings.eval_trajectories, VALIDATION_STREAM), ("test", test_n, TEST_STREAM)):
        sol = family.simulate(n, grid, stream, settings.numerics())
        sets[name] = Trajectories(torch.as_tensor(sol.numpy(), dtype=torch.float32), sol.grid, tuple(cfg.problem.equation.fields),
                                  tuple(range(n)))
    record = {"family": True, "validation": {"trajectories": len(sets["val"]), "stream": VALIDATION_STREAM},
              "test": {"trajectories": test_n, "stream": TEST_STREAM}, "frame_dt": grid.time.spacing,  # type: ignore[union-attr]
              "space_shape": list(grid.space_shape)}
    return HeldOut(sets["val"], sets["test"], record)


def train_grid(cfg: RunConfig, data: str | Path | None, out: str | Path | None = None, *, resume: bool = False,
               quiet: bool = False, root: str | Path = "runs", overwrite: bool = False) -> GridResult:
    """Train ``cfg``'s grid solver and fill the run folder.

    On a dataset (``data``, or with ``resume`` the dataset the run was trained on): the trajectories are split
    into train / val / test (``solvers.<name>.split``); the model trains on the train split, is scored on val
    rollouts during training (``train.eval_every``) and on the test split at the end. Without data (a solver
    that trains on the initial-condition family): validation and test trajectories are simulated.
    """
    if not is_grid_solver(cfg.solver):
        raise UserError(f"solver {cfg.solver!r} is not a grid solver; `pdesolve train` trains grid solvers (e.g. sinenet)")
    current = start(cfg, out, resume=resume, root=root, overwrite=overwrite)
    solver = current.solver
    assert isinstance(solver, GridSolver)
    if DATA in solver.trains_on and (data is not None or FAMILY not in solver.trains_on):
        train_data, held = _dataset_sets(cfg, solver, data, current.folder, resume)

        def make_task(validate: Any) -> Any:
            return solver.data_task(train_data, validate)
    else:
        grid = family_grid(cfg)
        held = _family_sets(cfg, solver, grid)

        def make_task(validate: Any) -> Any:
            return solver.family_task(solver.family, grid, validate)  # type: ignore[arg-type]

    def validate() -> dict[str, float]:
        if len(held.val) == 0:
            return {}
        r = evaluate(solver, held.val, cfg)
        return {"rel_l2": r.rollout, "one_step_val": r.one_step}

    task = make_task(validate)
    rule = checked_rule(current, task)
    current.open_folder()
    write_json(current.folder / "data.json", held.record)
    result = current.train(task, rule, resume=resume, quiet=quiet)

    report = evaluate(solver, held.test, cfg)
    metrics: dict[str, Any] = {
        **run_summary(cfg, result, current.device),
        "parameters": sum(p.numel() for p in solver.model.parameters()),
        "network": solver.describe(),
        "data": held.record.get("path", "simulated from the initial-condition family"),
        "split": "test",
        **report.as_dict(),
    }
    residual = held.record.get("family", False) and not any(n in cfg.problem.equation.parameters for n in solver.family.names)  # type: ignore[union-attr]
    metrics.update(write_rollouts(current.folder, solver, held.test, report, result.history, residual=residual))
    write_json(current.folder / "metrics.json", metrics)
    write_history(current.folder / "history.csv", result.history)
    return GridResult(metrics, result.status, current.folder, result.history)


def rollout_run(run_dir: str | Path, data: str | Path, *, split: str = "all", out: str | Path | None = None,
                device: str | None = None, piece: tuple[int, ...] | None = None, executor: ExecutorOptions | None = None
                ) -> dict[str, Any]:
    """Roll a trained run out on the trajectories of ``data`` and write metrics, rollouts and figures.

    ``split``: ``all`` trajectories of the file, or its ``test`` split (as the run split its own data).
    ``piece``: roll out one piece's network alone on its sub-grid of the data (a coarse simulator; NeuralStagger).
    Results go to ``out`` (default ``RUN_DIR/rollout-<data file stem>``, plus ``-piece<offsets>``).
    ``executor``: how the rollouts run (sequential, or in parallel over time: :mod:`pdesolve.parallel_time`); its
    iterations and residuals go to ``metrics.json`` under ``executor``.
    """
    run_dir = Path(run_dir)
    cfg = load_run(run_dir)
    ckpt = run_dir / "checkpoint.pt"
    if not ckpt.exists():
        raise UserError(f"{run_dir}: no checkpoint.pt (train it first with `pdesolve train`)")
    if not is_grid_solver(cfg.solver):
        raise UserError(f"{run_dir}: solver {cfg.solver!r} is not a grid solver; use `pdesolve evaluate` for it")
    dev = resolve_device(device or cfg.device)
    solver = build_solver(cfg, dev)
    assert isinstance(solver, GridSolver)
    state = RunCheckpoint(ckpt, write=False).load()
    solver.model.load_state_dict(state["model"])
    file = open_dataset(cfg, data)
    if split == "all":
        indices = np.arange(file.n_trajectories)
        trained = run_dir / "data.json"
        if trained.exists() and json.loads(trained.read_text()).get("path") == str(Path(file.path).resolve()):
            log.warning("%s is the dataset this run trained on; --split test keeps to its held-out trajectories", file.path)
    elif split == "test":
        ds = solver.data_settings
        indices = split_trajectories(file.n_trajectories, ds.split, ds.seed)["test"]
    else:
        raise UserError(f"split: expected 'all' or 'test', got {split!r}")
    test = _load(cfg, solver, file, indices)
    if len(test) == 0:
        raise UserError(f"{file.path}: no trajectories in split {split!r}")
    solver.check_grid(test.grid)
    if not np.isclose(test.dt, solver.frame_dt, rtol=1e-4):
        raise UserError(f"{file.path}: frames {test.dt:g} apart, but the model was trained on steps of {solver.frame_dt:g}")
    stepper = solver.step
    if piece is not None:
        stepper, test = solver.piece_stepper(piece), piece_trajectories(test, solver.piece_factors(), piece)
    parallel = executor_for(solver, executor, piece is not None)
    if parallel is not None and parallel.options.method != "picard":
        stepper = solver.step_with_grad()
    roll = rollout if parallel is None else parallel.rollout
    report = evaluate(solver, test, cfg, stepper, roll)
    name = f"rollout-{Path(file.path).stem}" + ("" if piece is None else "-piece" + "_".join(map(str, piece)))
    target = Path(out) if out is not None else run_dir / name
    metrics = {"run": str(run_dir), "data": str(Path(file.path).resolve()), "split": split, **report.as_dict()}
    if piece is not None:
        metrics["piece"] = list(piece)
    if parallel is not None:
        metrics["executor"] = executor_summary(parallel)
    target.mkdir(parents=True, exist_ok=True)
    write_json(target / "metrics.json", metrics)
    write_rollouts(target, solver, test, report, [], stepper=stepper, roll=roll)
    return {**metrics, "folder": str(target)}


def piece_trajectories(data: Trajectories, factors: tuple[int, ...], piece: tuple[int, ...]) -> Trajectories:
    """The trajectories subsampled to one piece's sub-grid, ``frames[..., i::s_h, j::s_w]``."""
    space = Grid(data.grid.space)
    k = space.stagger_grids(dict(zip(space.names, factors)))[_piece_number(factors, piece)]
    index = (slice(None), slice(None), slice(None)) + tuple(slice(o, None, f) for o, f in zip(piece, factors, strict=True))
    return Trajectories(data.frames[index].contiguous(), Grid(k.space, data.grid.time), data.fields, data.indices)


def _piece_number(factors: tuple[int, ...], piece: tuple[int, ...]) -> int:
    n = 0
    for o, f in zip(piece, factors, strict=True):
        n = n * f + o
    return n


# ----------------------------------------------------------------------------- files and figures
def write_rollouts(folder: Path, solver: GridSolver, data: Trajectories, report: RolloutReport,
                   history: list[dict[str, float]], residual: bool = False, stepper: Any = None, roll: Any = rollout
                   ) -> dict[str, float]:
    """``solution.h5`` (full rollouts of the first few trajectories) and the figures.

    With ``residual`` (the equation's grid form applies to these trajectories: a family that varies no equation
    parameter), also the Crank-Nicolson residual of the rollouts and of the reference (``residual.png``), whose
    sizes it returns: ``rollout_residual_rms`` and ``reference_residual_rms``, each in units of the fields' size
    per step (``dt |r| / std(u)``).
    """
    keep = data.head(min(SAVED_ROLLOUTS, len(data)))
    pred = full_rollout(stepper or solver.step, keep, solver.history, device=solver.device, dtype=solver.dtype, roll=roll)
    ref = keep.frames.double().numpy()
    diagnostics: dict[str, Any] = {}
    sizes: dict[str, float] = {}
    if residual and solver.problem.equation.grid_form:
        r_pred, r_ref = (step_residuals(solver, keep.grid, x) for x in (pred, ref))
        sizes = {"rollout_residual_rms": float(np.sqrt((r_pred**2).mean())), "reference_residual_rms": float(np.sqrt((r_ref**2).mean()))}
        diagnostics["residual_map"] = np.abs(r_pred[0])  # [time - 1, channel, *interior]
        try:
            plot_residual_strip(folder / "residual.png", keep, r_pred[0], r_ref[0], solver.history)
        except Exception as err:  # noqa: BLE001 - as below
            log.warning("figure residual.png not written: %s: %s", type(err).__name__, err)
    write_solution(folder / "solution.h5", Solution(keep.grid, keep.fields, pred), ref, {})
    figures = {f"frames_{name}": partial(plot_frame_strip, data=keep, pred=pred[0, :, c], ref=ref[0, :, c], name=name,
                                         history=solver.history) for c, name in enumerate(keep.fields)}
    figures["error_vs_step"] = partial(plot_error_vs_step, report=report, dt=keep.dt)
    if history:
        figures["history"] = partial(plot_history, history=history)
    for name, draw in figures.items():
        try:
            draw(folder / f"{name}.png")
        except Exception as err:  # noqa: BLE001 - the results are on disk already; a broken figure must not lose them
            log.warning("figure %s.png not written: %s: %s", name, type(err).__name__, err)
    return sizes


def step_residuals(solver: GridSolver, grid: Grid, u: np.ndarray) -> np.ndarray:
    """The Crank-Nicolson residual of every step of trajectories ``u [batch, time, channel, *space]``, scaled by
    ``dt / std(u)`` per channel: ``[batch, time - 1, channel, *interior]``."""
    from .equations.time_discrete import trajectory_residual

    x = torch.as_tensor(u, dtype=torch.float64)
    r = trajectory_residual(solver.problem, x, grid).numpy()
    std = x.transpose(0, 2).flatten(1).std(dim=1).clamp_min(1e-300).numpy()  # [channel]
    return r * grid.time.spacing / std.reshape((1, 1, -1) + (1,) * grid.ndim)  # type: ignore[union-attr]


def _figure(nrows: int, ncols: int, width: float = 2.6, height: float = 2.3) -> tuple[Any, Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return plt, fig, axes


def plot_frame_strip(path: Path, data: Trajectories, pred: np.ndarray, ref: np.ndarray, name: str, history: int,
                     columns: int = 5) -> None:
    """Prediction, reference and |error| (rows) at a few times (columns) of one rollout ``[time, *space]``.

    2D fields are shown as images, 1D fields as curves, 3D fields by their middle slice along the last axis.
    """
    t = data.grid.time.coords  # type: ignore[union-attr]
    idx = np.unique(np.linspace(history - 1, len(t) - 1, columns).round().astype(int))
    plt, fig, axes = _figure(3, len(idx))
    if pred.ndim == 4:  # 3D: middle slice
        pred, ref = pred[..., pred.shape[-1] // 2], ref[..., ref.shape[-1] // 2]
    vmax = float(np.abs(ref[idx]).max()) or 1.0
    emax = float(np.abs(pred[idx] - ref[idx]).max()) or 1.0
    for j, i in enumerate(idx):
        rows = (("prediction", pred[i]), ("reference", ref[i]), ("|error|", np.abs(pred[i] - ref[i])))
        for r, (label, img) in enumerate(rows):
            ax = axes[r, j]
            if img.ndim == 1:
                ax.plot(data.grid.space[0].coords, img, "k-" if r == 1 else ("r-" if r == 0 else "m-"), lw=1)
                ax.set_ylim(*((-vmax, vmax) if r < 2 else (0, emax)))
            else:
                kw = dict(cmap="RdBu_r", vmin=-vmax, vmax=vmax) if r < 2 else dict(cmap="magma", vmin=0, vmax=emax)
                ax.imshow(img.T, origin="lower", **kw)
                ax.set_xticks([])
                ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t = {t[i]:.3g}" + (" (start)" if i < history else ""), fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{label} {name}", fontsize=9)
    save_figure(plt, fig, path)


def plot_residual_strip(path: Path, data: Trajectories, pred: np.ndarray, ref: np.ndarray, history: int, columns: int = 5) -> None:
    """|Crank-Nicolson residual| of one rollout (top) and of the reference (bottom) at a few steps, ``[time - 1, channel,
    *interior]`` each (first channel; 1D fields as curves, 2D as images on a shared log colour scale)."""
    from matplotlib.colors import LogNorm

    t = data.grid.time.coords  # type: ignore[union-attr]
    idx = np.unique(np.linspace(history - 1, len(t) - 2, columns).round().astype(int))
    plt, fig, axes = _figure(2, len(idx))
    rows = (("rollout", np.abs(pred[:, 0])), ("reference", np.abs(ref[:, 0])))
    top = max(float(rows[0][1][idx].max()), float(rows[1][1][idx].max()), 1e-300)
    norm = LogNorm(vmin=max(top * 1e-6, 1e-300), vmax=top)
    image = None
    for j, i in enumerate(idx):
        for r, (label, res) in enumerate(rows):
            ax = axes[r, j]
            if res.ndim == 2:
                ax.semilogy(res[i], "m-" if r == 0 else "k-", lw=1)
            else:
                image = ax.imshow(np.maximum(res[i].T, norm.vmin), origin="lower", cmap="magma", norm=norm)
                ax.set_xticks([])
                ax.set_yticks([])
            if r == 0:
                ax.set_title(f"step to t = {t[i + 1]:.3g}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"|residual|, {label}", fontsize=9)
    fig.tight_layout()
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="dt |residual| / std(u)")
    write_with(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def plot_error_vs_step(path: Path, report: RolloutReport, dt: float) -> None:
    """Relative L2 error against rollout step, averaged over trajectories, start times and fields."""
    plt, fig, axes = _figure(1, 1, width=5, height=3.4)
    ax = axes[0, 0]
    steps = np.arange(1, report.steps + 1)
    ax.semilogy(steps, report.per_step, "o-", ms=3)
    ax.set_xlabel(f"rollout step (dt = {dt:.3g})")
    ax.set_ylabel("relative L2 error")
    ax.set_title(f"{report.trajectories} trajectories x {len(report.starts)} start times")
    ax.grid(True, which="both", alpha=0.3)
    save_figure(plt, fig, path)
