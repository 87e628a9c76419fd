"""Offline mode, for comparison: simulate the study to an HDF5 file, read it back, then train.

The dataset is written by pdesolve's own writer (:func:`pdesolve.simulate.generate_dataset`, the
``pdesolve simulate`` format) with ``offline.trajectories`` simulations, read back through
:class:`pdesolve.data.TrajectoryFile`, and trained on with the same surrogate, training rule, batch size,
number of steps and held-out validation set as the online run: mini-batches drawn without replacement,
one epoch after another (:class:`online_training.trainer.EpochSampler`). Training is pdesolve's one loop
(:func:`pdesolve.train.train`): divergence guard, checkpoints every ``train.checkpoint_every`` steps, and
running the same command again resumes exactly where the last run stopped.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml

from pdesolve.data import TrajectoryFile
from pdesolve.io import write_json, write_with
from pdesolve.optim import make_optimizer
from pdesolve.simulate import generate_dataset
from pdesolve.train import TrainSettings, train

from .checkpoint import StudyCheckpoint
from .monitor import Monitor, progress_line, write_figures
from .simulation import SimulationPlan
from .study import Study
from .surrogate import Surrogate
from .trainer import EpochSampler, SurrogateTask

log = logging.getLogger(__name__)


def read_records(path: Path, plan: SimulationPlan, surrogate: Surrogate) -> np.ndarray:
    """Every training record of a pdesolve trajectory file ``[n, record_size]`` float32."""
    tf = TrajectoryFile(path)
    with h5py.File(path, "r") as f:
        values = np.stack([np.asarray(f["params"][k][...], np.float64) for k in plan.names], axis=1) if plan.names else None
    if not np.allclose(tf.times, plan.times):
        raise ValueError(f"{path}: saved times differ from the study's ({len(tf.times)} vs {len(plan.times)} frames)")
    scaled = plan.scaled(values).astype(np.float32) if values is not None else np.zeros((tf.n_trajectories, 0), np.float32)
    frames = np.stack([tf.read(i) for i in range(tf.n_trajectories)])  # [n, time, C, *space]
    tf.close()
    return surrogate.records_of(scaled, plan.scaled_times(), frames)


def run_offline(study: Study, folder: Path, plan: SimulationPlan, surrogate: Surrogate, validation: np.ndarray,
                device: torch.device, *, overwrite: bool) -> int:
    """Simulate, write, read and train (through :func:`pdesolve.train.train`: a rerun resumes from the run
    folder's checkpoint, bit for bit); writes the same run-folder files as the online mode."""
    folder.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    path = folder / "dataset.h5"
    settings = study.simulate.model_copy(update={"trajectories": study.offline.trajectories})
    generate_dataset(path, study.problem, settings, problem_text=yaml.safe_dump(study.problem_raw, sort_keys=False),
                     seed=plan.seed, quiet=True, overwrite=overwrite)
    t_written = time.perf_counter()
    records = read_records(path, plan, surrogate)
    t_read = time.perf_counter()
    log.info("offline: %d simulations written in %.1f s and read back in %.1f s (%d records)",
             settings.trajectories, t_written - t_start, t_read - t_written, len(records))

    train_spec = study.train
    monitor = Monitor(folder, 0)
    sampler = EpochSampler(records, train_spec.batch_size, [study.seed, 0x4F46])
    task = SurrogateTask(surrogate, device, study.seed, sampler, monitor, validation=validation, validate_every=train_spec.validate_every)
    rule = make_optimizer(train_spec.optimizer.name, study.optimizer_options, train_spec.steps)  # type: ignore[arg-type]
    store = StudyCheckpoint(folder / "checkpoint.pt", study.digest())
    n = settings.trajectories

    def log_row(step: int, row: dict[str, float]) -> None:
        line = monitor.row(step, row, len(records), len(records), n, 0, n)
        log.info(progress_line(line, train_spec.steps, task.monitor.validation[-1]["val_rel_l2"] if task.monitor.validation else None))

    t_train = time.perf_counter()
    result = train(task, rule, TrainSettings(steps=train_spec.steps, checkpoint_every=train_spec.checkpoint_every,
                                             log_every=train_spec.log_every, quiet=True),
                   checkpoint=store, resume=store.exists(), callbacks=[log_row])
    t_end = time.perf_counter()
    monitor.write(np.bincount(sampler.seen))
    write_with(folder / "model.pt", lambda p: torch.save({"model": task.model.state_dict(), "study": study.raw}, p))
    val = monitor.validation[-1]["val_rel_l2"] if monitor.validation else None
    write_json(folder / "summary.json", {
        "mode": "offline", "status": result.status.kind, "status_message": result.status.message, "steps": result.status.step,
        "resumed_from": result.resumed_from, "simulations": n,
        "records": len(records), "time_s": round(t_end - t_start, 3), "simulate_write_s": round(t_written - t_start, 3),
        "read_s": round(t_read - t_written, 3), "training_s": round(t_end - t_train, 3),
        "samples_trained": monitor.trained, "trained_per_s": monitor.trained / max(t_end - t_train, 1e-9),
        "dataset_bytes": path.stat().st_size, "val_rel_l2": val,
    })
    write_figures(folder, 1)
    log.info("offline: %s; validation relative L2 %s; run folder %s", result.status, f"{val:.3e}" if val is not None else "-", folder)
    return 0 if result.status.ok else (4 if result.status.kind == "diverged" else 3)

