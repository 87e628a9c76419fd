"""Kill, stop and resume an online study under mpiexec: finished simulations are never run again.

Launch 1 is killed outright (SIGKILL to the whole job) once a checkpoint exists; launch 2, the same
command, must resume from that checkpoint, and is stopped cleanly with SIGUSR1 (which Open MPI's mpiexec
forwards to every rank) after it has checkpointed again; launch 3, ``python -m online_training``,
completes the study. No simulation finished at a launch's checkpoint is streamed by a later launch, and
every simulation ends up finished exactly once.
"""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch
from test_online_mpi import mpiexec, needs_mpiexec, rows, study_file

pytestmark = [pytest.mark.mpi, needs_mpiexec]

SLOW = """
import sys
import time

from online_training.entry import main

delay = float(sys.argv[1])


def runner(plan):
    def frames(sim, params):
        for step, frame in plan.frames(sim, params):
            time.sleep(delay)  # slow clients, so that the job can be killed half way
            yield step, frame

    return frames


sys.exit(main(sys.argv[2:], runner=runner))
"""


def checkpointed(run) -> tuple[int, set[int]]:
    """The manifest's step and the simulations finished in the checkpoint."""
    step = json.loads((run / "checkpoint.json").read_text())["step"]
    state = torch.load(run / "checkpoints" / f"step{step:09d}-server0.pt", weights_only=False)["task"]["source"]["scheduler"]
    return step, {int(s) for s in state["ids"][np.asarray(state["state"]) == 2]}


def sent_since(run, skip: dict[str, int]) -> tuple[set[int], dict[str, int]]:
    """Simulations streamed after the first ``skip[file]`` audit rows, and the new row counts."""
    sims, counts = set(), {}
    for path in sorted((run / "audit").glob("sent-rank*.csv")):
        table = rows(path)
        sims |= {int(r["sim"]) for r in table[skip.get(path.name, 0) :]}
        counts[path.name] = len(table)
    return sims, counts


def test_kill_stop_and_resume_run_each_simulation_once(tmp_path):
    study = study_file(
        tmp_path, simulate={"trajectories": 16},
        buffer={"kind": "fifo", "capacity": 64, "watermark": 8},
        train={"steps": 100000, "checkpoint_every": 4, "validate_every": 8, "log_every": 4},
    )
    (tmp_path / "slow.py").write_text(SLOW)
    run = tmp_path / "run"
    manifest = run / "checkpoint.json"
    command = ["slow.py", "0.05", str(study), "--out", str(run)]

    # 1. killed outright once a checkpoint exists
    code, out = mpiexec(3, command, timeout=300, cwd=tmp_path, signal_when=(manifest.exists, signal.SIGKILL))
    assert code != 0, out[-3000:]
    step1, finished1 = checkpointed(run)
    assert 0 < len(finished1) < 16, (step1, finished1)
    _, seen = sent_since(run, {})

    # 2. the same command resumes from it; stopped cleanly after one more checkpoint
    def later() -> bool:
        return manifest.exists() and json.loads(manifest.read_text())["step"] > step1

    code, out = mpiexec(3, command, timeout=300, cwd=tmp_path, signal_when=(later, signal.SIGUSR1))
    assert f"resuming from the checkpoint at step {step1}: {len(finished1)} simulations finished" in out, out[-3000:]
    assert code == 3, out[-3000:]  # stopped before the end: the exit code says so
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "stopped by SIGUSR1" and summary["steps"] > step1
    step2, finished2 = checkpointed(run)
    assert step2 == summary["steps"] and finished1 <= finished2
    rerun, seen = sent_since(run, seen)
    assert rerun and not rerun & finished1, (rerun, finished1)

    # 3. the package's entry point completes the study
    code, out = mpiexec(3, ["-m", "online_training", str(study), "--out", str(run)], timeout=300, cwd=tmp_path)
    assert code == 0, out[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"].startswith("complete") and summary["simulations_finished"] == 16, summary
    rerun, _ = sent_since(run, seen)
    assert not rerun & finished2, (rerun, finished2)
    assert finished2 | rerun == set(range(16))
    # the metrics history runs on across the three launches, without repeated steps
    steps = [int(r["step"]) for r in rows(run / "metrics" / "server0.csv") if r["loss"] not in ("", "nan")]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
