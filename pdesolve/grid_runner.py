"""Train a grid solver on a trajectory dataset, roll it out, and keep everything in a run folder.

The grid-solver counterpart of :mod:`pdesolve.runner` (which evaluates continuous solvers pointwise).
A run folder holds ``config.yaml`` (the resolved problem file), ``data.json`` (the dataset and its
split), ``checkpoint.pt``, ``history.csv``, ``metrics.json`` (one-step and rollout errors on the
held-out test trajectories, and the error at each rollout step), ``solution.h5`` (full rollouts of a
few test trajectories with their reference) and figures: ``frames_<field>.png`` (prediction, reference
and error at a few times), ``error_vs_step.png`` and ``history.png``.

A grid solver is a :class:`~pdesolve.solvers.base.Solver` that also has ``data_task(data, evaluate)``
(its training task on in-memory trajectories), ``step(frames)`` (one step in evaluation mode),
``history``, ``model`` and ``check_grid(grid)``; see :class:`~pdesolve.solvers.sinenet.SineNetSolver`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from .config import RunConfig
from .data import TrajectoryFile, split_trajectories
from .errors import UserError
from .io import write_json, write_text
from .optim import make_optimizer
from .plot import plot_history, save_figure
from .rollout import (
    DatasetMismatch,
    RolloutReport,
    Trajectories,
    check_dataset,
    evaluate_rollouts,
    full_rollout,
    load_trajectories,
)
from .runner import build_solver, load_run, resolve_device, run_summary, write_history, write_solution
from .solution import Solution
from .solvers import SOLVERS
from .train import RunStatus, TrainSettings, seed_everything, train

log = logging.getLogger(__name__)
SAVED_ROLLOUTS = 4  # test trajectories kept in solution.h5
EVAL_BATCH = 64  # windows per evaluation batch


def is_grid_solver(name: str) -> bool:
    """True for back-ends that learn time steps from trajectory data (False for unknown names)."""
    return name in SOLVERS and callable(getattr(SOLVERS[name], "data_task", None))


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


def _load(cfg: RunConfig, file: TrajectoryFile, indices: Any) -> Trajectories:
    try:
        return load_trajectories(cfg.problem, file, indices, cfg.solver_options.time_stride)  # type: ignore[attr-defined]
    except DatasetMismatch as err:
        raise UserError(str(err)) from None


def evaluate(solver: Any, data: Trajectories, cfg: RunConfig) -> RolloutReport:
    """Rollout errors of ``solver`` on ``data`` with the rollout settings of ``cfg``."""
    o = cfg.solver_options
    try:
        return evaluate_rollouts(solver.step, data, solver.history, o.rollout_steps, o.rollout_starts,  # type: ignore[attr-defined]
                                 batch_size=EVAL_BATCH, device=solver.device, dtype=solver.dtype)
    except ValueError as err:
        raise UserError(f"evaluation rollouts: {err} (see solvers.{cfg.solver}.rollout_steps)") from None


def train_grid(cfg: RunConfig, data: str | Path | None, out: str | Path | None = None, *, resume: bool = False,
               quiet: bool = False, root: str | Path = "runs") -> GridResult:
    """Train ``cfg``'s grid solver on the trajectories in ``data`` and fill the run folder.

    The dataset's trajectories are split into train / val / test (``solvers.<name>.split``); the model
    trains on one-step pairs from the train split, is scored on val rollouts during training
    (``train.eval_every``) and on the test split at the end. With ``resume``, ``out`` is the run folder
    to continue and ``data`` defaults to the dataset it was trained on.
    """
    if not is_grid_solver(cfg.solver):
        raise UserError(f"solver {cfg.solver!r} is not a grid solver; `pdesolve train` trains grid solvers (e.g. sinenet)")
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    run_dir = Path(out) if out is not None else Path(root) / f"{cfg.problem.name}-{cfg.solver}-{time.strftime('%Y%m%d-%H%M%S')}"
    if resume:
        if not (run_dir / "checkpoint.pt").exists():
            raise UserError(f"{run_dir}: no checkpoint.pt to resume from")
        if data is None:
            data = json.loads((run_dir / "data.json").read_text())["path"]
    if data is None:
        raise UserError("no dataset: pass --data DATA.h5 (make one with `pdesolve simulate FILE --out DATA.h5`)")
    file = open_dataset(cfg, data)
    o = cfg.solver_options
    splits = split_trajectories(file.n_trajectories, o.split, o.split_seed)  # type: ignore[attr-defined]
    if len(splits["train"]) == 0 or len(splits["test"]) == 0:
        raise UserError(
            f"{file.path}: {file.n_trajectories} trajectories leave {len(splits['train'])} for training and "
            f"{len(splits['test'])} for testing with split {list(o.split)}; simulate more (--n) or change solvers.{cfg.solver}.split"  # type: ignore[attr-defined]
        )
    train_data = _load(cfg, file, splits["train"])
    val_data = _load(cfg, file, splits["val"][: o.eval_trajectories])  # type: ignore[attr-defined]
    test_data = _load(cfg, file, splits["test"])

    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.raw, sort_keys=False))
    write_json(run_dir / "data.json", {
        "path": str(Path(file.path).resolve()),
        "trajectories": file.n_trajectories,
        "split": {k: [int(i) for i in v] for k, v in splits.items()},
        "frame_dt": train_data.dt,
        "space_shape": list(train_data.grid.space_shape),
    })

    solver = build_solver(cfg, device)

    def validate() -> dict[str, float]:
        if len(val_data) == 0:
            return {}
        r = evaluate(solver, val_data, cfg)
        return {"rel_l2": r.rollout, "one_step_val": r.one_step}

    task = solver.data_task(train_data, validate)  # type: ignore[attr-defined]
    steps = cfg.train.steps
    optimizer = make_optimizer(cfg.train.optimizer.name, cfg.optimizer_options, steps)  # type: ignore[arg-type]
    settings = TrainSettings(steps=steps, eval_every=cfg.train.eval_every, checkpoint_every=cfg.train.checkpoint_every,
                             log_every=cfg.train.log_every, quiet=quiet)
    result = train(task, optimizer, settings, checkpoint=run_dir / "checkpoint.pt", resume=resume)
    if result.resumed_from is not None:
        log.info("resumed %s from step %d", run_dir, result.resumed_from)

    report = evaluate(solver, test_data, cfg)
    n_params = sum(p.numel() for p in solver.model.parameters())  # type: ignore[attr-defined]
    metrics: dict[str, Any] = {
        **run_summary(cfg, result, device),
        "parameters": n_params,
        "network": solver.network.describe(),  # type: ignore[attr-defined]
        "data": str(Path(file.path).resolve()),
        "split": "test",
        **report.as_dict(),
    }
    write_json(run_dir / "metrics.json", metrics)
    write_history(run_dir / "history.csv", result.history)
    write_rollouts(run_dir, solver, test_data, report, result.history)
    return GridResult(metrics, result.status, run_dir, result.history)


def rollout_run(run_dir: str | Path, data: str | Path, *, split: str = "all", out: str | Path | None = None,
                device: str | None = None) -> dict[str, Any]:
    """Roll a trained run out on the trajectories of ``data`` and write metrics, rollouts and figures.

    ``split``: ``all`` trajectories of the file, or its ``test`` split (as the run split its own data).
    Results go to ``out`` (default ``RUN_DIR/rollout-<data file stem>``).
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
    state = torch.load(ckpt, map_location=dev, weights_only=False)
    solver.model.load_state_dict(state["model"])  # type: ignore[attr-defined]
    file = open_dataset(cfg, data)
    if split == "all":
        indices = np.arange(file.n_trajectories)
        trained = run_dir / "data.json"
        if trained.exists() and json.loads(trained.read_text())["path"] == str(Path(file.path).resolve()):
            log.warning("%s is the dataset this run trained on; --split test keeps to its held-out trajectories", file.path)
    elif split == "test":
        o = cfg.solver_options
        indices = split_trajectories(file.n_trajectories, o.split, o.split_seed)["test"]  # type: ignore[attr-defined]
    else:
        raise UserError(f"split: expected 'all' or 'test', got {split!r}")
    test = _load(cfg, file, indices)
    if len(test) == 0:
        raise UserError(f"{file.path}: no trajectories in split {split!r}")
    solver.check_grid(test.grid)  # type: ignore[attr-defined]
    if not np.isclose(test.dt, float(solver.model.frame_dt), rtol=1e-4):  # type: ignore[attr-defined]
        raise UserError(f"{file.path}: frames {test.dt:g} apart, but the model was trained on steps of {float(solver.model.frame_dt):g}")  # type: ignore[attr-defined]
    report = evaluate(solver, test, cfg)
    target = Path(out) if out is not None else run_dir / f"rollout-{Path(file.path).stem}"
    metrics = {"run": str(run_dir), "data": str(Path(file.path).resolve()), "split": split, **report.as_dict()}
    target.mkdir(parents=True, exist_ok=True)
    write_json(target / "metrics.json", metrics)
    write_rollouts(target, solver, test, report, [])
    return {**metrics, "folder": str(target)}


# ----------------------------------------------------------------------------- files and figures
def write_rollouts(folder: Path, solver: Any, data: Trajectories, report: RolloutReport,
                   history: list[dict[str, float]]) -> None:
    """``solution.h5`` (full rollouts of the first few trajectories) and the figures."""
    keep = data.head(min(SAVED_ROLLOUTS, len(data)))
    pred = full_rollout(solver.step, keep, solver.history, device=solver.device, dtype=solver.dtype)
    ref = keep.frames.double().numpy()
    write_solution(folder / "solution.h5", Solution(keep.grid, keep.fields, pred), ref, {})
    for c, name in enumerate(keep.fields):
        plot_frame_strip(folder / f"frames_{name}.png", keep, pred[0, :, c], ref[0, :, c], name, solver.history)
    plot_error_vs_step(folder / "error_vs_step.png", report, keep.dt)
    if history:
        plot_history(folder / "history.png", history)


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
