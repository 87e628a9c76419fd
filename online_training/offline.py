"""Offline mode, for comparison: simulate the study to an HDF5 file, read it back, then train.

The dataset is written by pdesolve's own writer (:func:`pdesolve.simulate.generate_dataset`, the
``pdesolve simulate`` format) with ``offline.trajectories`` simulations, read back through
:class:`pdesolve.data.TrajectoryFile`, and trained on with the same surrogate, training rule, batch size,
number of steps and held-out validation set as the online run: mini-batches drawn without replacement,
one epoch after another.
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
from pdesolve.simulate import generate_dataset

from .monitor import Monitor, progress_line, write_figures
from .simulation import SimulationPlan
from .study import Study
from .surrogate import Surrogate
from .trainer import Trainer

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


def run_offline(study: Study, folder: Path, plan: SimulationPlan, trainer: Trainer, validation: np.ndarray, *, overwrite: bool) -> int:
    """Simulate, write, read and train; writes the same run-folder files as the online mode."""
    folder.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    path = folder / "dataset.h5"
    settings = study.simulate.model_copy(update={"trajectories": study.offline.trajectories})
    generate_dataset(path, study.problem, settings, problem_text=yaml.safe_dump(study.problem_raw, sort_keys=False),
                     seed=plan.seed, quiet=True, overwrite=overwrite)
    t_written = time.perf_counter()
    records = read_records(path, plan, trainer.surrogate)
    t_read = time.perf_counter()
    log.info("offline: %d simulations written in %.1f s and read back in %.1f s (%d records)",
             settings.trajectories, t_written - t_start, t_read - t_written, len(records))

    train = study.train
    monitor = Monitor(folder, 0)
    trainer.fit_normalization(records)
    monitor.validated(0, trainer.evaluate(validation))
    rng = np.random.default_rng([study.seed, 0x4F46])
    order, at = rng.permutation(len(records)), 0
    seen = np.zeros(len(records), np.int64)
    monitor.train_started = monitor.now()
    t_train = time.perf_counter()
    while trainer.step < train.steps:
        if at + train.batch_size > len(order):  # next epoch; a batch never repeats a record
            order, at = rng.permutation(len(records)), 0
        index = order[at : at + train.batch_size]
        seen[index] += 1
        batch = records[index]
        at += train.batch_size
        record = trainer.train_step(batch)
        monitor.trained += len(batch)
        step = trainer.step
        val = None
        if train.validate_every and step % train.validate_every == 0 or step == train.steps:
            val = trainer.evaluate(validation)
            monitor.validated(step, val)
        if step % train.log_every == 0 or step == train.steps:
            row = monitor.row(step, record, len(records), len(records), settings.trajectories, 0, settings.trajectories)
            log.info(progress_line(row, train.steps, val))
    t_end = time.perf_counter()
    monitor.write(np.bincount(seen))
    write_with(folder / "model.pt", lambda p: torch.save(
        {"model": trainer.model.state_dict(), "mean": trainer.mean, "std": trainer.std, "study": study.raw}, p
    ))
    write_json(folder / "summary.json", {
        "mode": "offline", "status": "complete", "steps": trainer.step, "simulations": settings.trajectories,
        "records": len(records), "time_s": round(t_end - t_start, 3), "simulate_write_s": round(t_written - t_start, 3),
        "read_s": round(t_read - t_written, 3), "training_s": round(t_end - t_train, 3),
        "samples_trained": monitor.trained, "trained_per_s": monitor.trained / max(t_end - t_train, 1e-9),
        "dataset_bytes": path.stat().st_size, "val_rel_l2": monitor.validation[-1]["val_rel_l2"],
    })
    write_figures(folder, 1)
    log.info("offline: %d steps in %.1f s; validation relative L2 %.3e; run folder %s",
             trainer.step, t_end - t_train, monitor.validation[-1]["val_rel_l2"], folder)
    return 0
