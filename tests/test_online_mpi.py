"""The online trainer under mpiexec: a whole study with failing clients, every sample received exactly once.

Two servers (one data-parallel model over gloo) and two clients on 16x16 fields, with injected faults:
simulation 2 raises after five time steps, simulation 5 makes NaN at step 3 (both on their first run
only), simulation 7 always raises. The study must complete with 11 simulations, re-run the first two,
give up the third after ``max_retries``, remove every partial time step the failed runs had streamed,
and receive every frame that was sent exactly once with an intact CRC-32.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("mpi4py")
# on PATH, or beside this Python (the [mpi] extra installs Open MPI into the environment's bin folder)
MPIEXEC = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))
ROOT = Path(__file__).resolve().parents[1]
needs_mpiexec = pytest.mark.skipif(
    MPIEXEC is None, reason="mpiexec is not on PATH nor beside this Python (pip install -e '.[mpi]' provides Open MPI)"
)
pytestmark = [pytest.mark.mpi, needs_mpiexec]

# a client-side simulator with faults, injected through online_training.entry.main(runner=...)
FAULTY = """
import sys
from pathlib import Path

import numpy as np

from online_training.entry import main

marks = Path(sys.argv[1])
delay = float(sys.argv[2])


def runner(plan):
    import time

    def frames(sim, params):
        first = not (marks / f"ran-{sim}").exists()
        (marks / f"ran-{sim}").touch()
        for step, frame in plan.frames(sim, params):
            time.sleep(delay)
            if sim == 2 and first and step == 5:
                raise RuntimeError("injected failure of simulation 2")
            if sim == 5 and first and step == 3:
                frame = frame * np.nan
            if sim == 7 and step == 4:
                raise RuntimeError("simulation 7 always fails")
            yield step, frame

    return frames


code = main(sys.argv[3:], runner=runner)
assert "deepxde" not in sys.modules, "the online path imported deepxde"
sys.exit(code)
"""


def kill_job(session: int) -> None:
    """SIGKILL every process of the session mpiexec leads (each rank runs in a process group of its own)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # after the command name: state, ppid, pgrp, session
            try:
                os.kill(int(stat.parent.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def mpiexec(n: int, args: list[str], timeout: float, *, cwd: Path, signal_when=None, flags: tuple[str, ...] = ()) -> tuple[int, str]:
    """Run ``python ARGS`` on ``n`` ranks (oversubscribed); kill the whole job on timeout.

    ``signal_when``: optional ``(predicate, signal)``, polled every 50 ms; the first time it is true the
    signal goes to every process of the job (SIGKILL: a crash) or to mpiexec only (which forwards it).
    """
    root = ["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    cmd = [MPIEXEC, *root, "--oversubscribe", *flags, "-n", str(n), sys.executable, *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        if signal_when is not None:
            predicate, sig = signal_when
            while proc.poll() is None and not predicate():
                try:
                    proc.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    pass
            if proc.poll() is None:
                if sig == signal.SIGKILL:
                    kill_job(proc.pid)
                else:
                    proc.send_signal(sig)
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_job(proc.pid)
        out, _ = proc.communicate()
        pytest.fail(f"mpiexec -n {n} did not finish in {timeout} s; output:\n{out[-4000:]}")
    return proc.returncode, out


def study_file(folder: Path, **changes) -> Path:
    """A small heat2d study (16x16, 10 steps) with ``changes`` merged per section."""
    study = {
        "name": "heat2d_test",
        "problem": str(ROOT / "problems" / "heat2d.yaml"),
        "simulate": {"trajectories": 12, "resolution": 16, "steps": 10, "sampler": "lhs"},
        "online": {"servers": 1, "window": 4, "max_retries": 1, "audit": True},
        "validation": {"trajectories": 3},
        "surrogate": {"kind": "mlp", "width": 64, "depth": 2, "activation": "silu"},
        "buffer": {"kind": "reservoir", "capacity": 400, "watermark": 16},
        "train": {"steps": 100000, "batch_size": 8, "log_every": 100, "validate_every": 200, "checkpoint_every": 500,
                  "optimizer": {"name": "adam", "lr": 3e-3}},
        "seed": 0,
    }
    for key, value in changes.items():
        study[key] = {**study[key], **value} if isinstance(value, dict) else value
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def audit(run: Path) -> tuple[list[tuple[int, int, int, int]], list[tuple[int, int, int, int]]]:
    """``(sim, attempt, step, crc)`` of every frame sent (all clients) and received (all servers)."""
    sent = [(int(r["sim"]), int(r["attempt"]), int(r["step"]), int(r["crc"]))
            for p in sorted((run / "audit").glob("sent-rank*.csv")) for r in rows(p)]
    received = []
    for p in sorted((run / "audit").glob("received-server*.csv")):
        for r in rows(p):
            assert r["intact"] == "1", f"corrupted frame {r}"
            received.append((int(r["sim"]), int(r["attempt"]), int(r["step"]), int(r["crc"])))
    return sent, received


def test_study_with_failing_clients_completes_and_every_sample_arrives_once(tmp_path):
    study = study_file(tmp_path, online={"servers": 2})
    script = tmp_path / "faulty.py"
    script.write_text(FAULTY)
    marks = tmp_path / "marks"
    marks.mkdir()
    run = tmp_path / "run"
    code, out = mpiexec(4, [str(script), str(marks), "0.02", str(study), "--out", str(run)], timeout=300, cwd=tmp_path)
    assert code == 0, out[-4000:]

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"].startswith("complete"), summary
    assert (summary["servers"], summary["clients"]) == (2, 2)
    assert summary["simulations_finished"] == 11 and summary["simulations_failed"] == 1
    assert summary["checksum_errors"] == 0

    # every frame sent was received exactly once, bit for bit (CRC-32 computed on both sides)
    sent, received = audit(run)
    assert Counter(sent) == Counter(received)
    assert len(set(received)) == len(received)

    # failed runs: re-queued with bounded retries, and every frame they had streamed was removed
    failures = [r for i in range(2) for r in rows(run / "metrics" / f"failures-server{i}.csv")]
    got = sorted((int(r["simulation"]), int(r["run"]), r["requeued"]) for r in failures)
    assert got == [(2, 0, "True"), (5, 0, "True"), (7, 0, "True"), (7, 1, "False")], failures
    streamed = Counter((s, a) for s, a, _, _ in sent)
    for r in failures:
        assert int(r["removed"]) == streamed[(int(r["simulation"]), int(r["run"]))], r
    assert streamed[(2, 0)] == 5 and streamed[(5, 0)] == 3 and streamed[(7, 0)] == 4
    assert "non-finite" in next(r["reason"] for r in failures if r["simulation"] == "5")

    # each finished simulation arrived whole in its last run; the given-up one never completed
    last = {}
    for s, a, _, _ in received:
        last[s] = max(last.get(s, 0), a)
    for s in set(range(12)) - {7}:
        assert sorted(st for ss, a, st, _ in received if ss == s and a == last[s]) == list(range(11)), s

    # one data-parallel model: both servers end with the same parameters, bit for bit
    step = json.loads((run / "checkpoint.json").read_text())["step"]
    models = [torch.load(run / "checkpoints" / f"step{step:09d}-server{i}.pt", weights_only=False)["model"]
              for i in range(2)]
    assert all(torch.equal(models[0][k], models[1][k]) for k in models[0])

    # the surrogate learned: the held-out error fell clearly below its starting value (how many steps the servers
    # take before the stream ends depends on how fast the clients stream: 75 on a quiet machine, more on a busy one)
    val = rows(run / "validation.csv")
    first, final = float(val[0]["val_rel_l2"]), float(val[-1]["val_rel_l2"])
    assert final < 0.8 * first, val
    for name in ("throughput.png", "seen_counts.png", "validation.png", "model.pt", "config.yaml", "checkpoint.json"):
        assert (run / name).stat().st_size > 0, name
    assert [r["rank"] for r in rows(run / "metrics" / "clients-server0.csv")] == ["2"]


DYING = """
import os
import signal
import sys
import time
from pathlib import Path

from online_training.entry import main

marks = Path(sys.argv[1])


def runner(plan):
    def frames(sim, params):
        first = not (marks / f"ran-{sim}").exists()
        (marks / f"ran-{sim}").touch()
        for step, frame in plan.frames(sim, params):
            time.sleep(0.02)
            if sim == 3 and first and step == 4:
                os.kill(os.getpid(), signal.SIGKILL)  # the client's process dies: no FAIL, no BYE
            yield step, frame

    return frames


sys.exit(main(sys.argv[2:], runner=runner))
"""


def test_a_client_that_dies_does_not_end_the_job_under_ulfm(tmp_path):
    """Under `mpiexec --with-ft ulfm` the server survives a client killed outright: the simulation it was running
    goes back in the queue (its partial frames leave the buffer) and the other client finishes the study."""
    script = tmp_path / "dying.py"
    script.write_text(DYING)
    (tmp_path / "marks").mkdir()
    study = study_file(tmp_path, online={"servers": 1, "window": 4, "max_retries": 1, "audit": False},
                       train={"steps": 100000, "checkpoint_every": 0, "validate_every": 0})
    run = tmp_path / "run"
    code, out = mpiexec(3, [str(script), str(tmp_path / "marks"), str(study), "--out", str(run), "--quiet"], 300,
                        cwd=tmp_path, flags=("--with-ft", "ulfm"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"].startswith("complete"), (code, out[-3000:])
    assert code == 0, out[-3000:]
    assert summary["simulations_finished"] == 12 and summary["simulations_failed"] == 0, summary
    failures = rows(run / "metrics" / "failures-server0.csv")
    assert [(r["simulation"], r["requeued"]) for r in failures] == [("3", "True")], failures
    assert "process" in failures[0]["reason"] and "failed" in failures[0]["reason"]


AGREE = """
import os
import signal
import sys

from mpi4py import MPI

from online_training.transport import failures_agreed

comm = MPI.COMM_WORLD.Dup()
if sys.argv[1] == "kill" and comm.Get_rank() == 2:
    os.kill(os.getpid(), signal.SIGKILL)
failed = failures_agreed(comm)
print(f"rank {comm.Get_rank()} agreed on {failed} failed", flush=True)
if failed:
    os._exit(0)  # as online_training.entry does: MPI_Finalize may wait forever for the failed process
"""


@pytest.mark.parametrize("case", ["kill", "plain"])
def test_the_survivors_agree_on_how_many_processes_failed(tmp_path, case):
    """`failures_agreed` is collective and fault tolerant: under ULFM the two survivors of a job whose third rank was
    killed both count one failure (and return, although the third never calls it); without failures, zero."""
    script = tmp_path / "agree.py"
    script.write_text(AGREE)
    flags = ("--with-ft", "ulfm") if case == "kill" else ()
    code, out = mpiexec(3, [str(script), case], 120, cwd=tmp_path, flags=flags)
    said = sorted(line for line in out.splitlines() if line.startswith("rank "))
    expected = [0, 1] if case == "kill" else [0, 1, 2]
    n = 1 if case == "kill" else 0
    assert said == [f"rank {r} agreed on {n} failed" for r in expected], out
    assert code == 0, out
