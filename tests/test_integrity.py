"""Nothing lost, nothing escapes: run names stay one path component, resume checks what it resumes and writes nothing
before it has, a folder that holds a run is not silently reused, and Ctrl-C then resume is exact."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pdesolve.cli import main
from pdesolve.config import validate_file

ROOT = Path(__file__).resolve().parents[1]
HEAT = ROOT / "problems" / "heat.yaml"
TINY = ["--steps", "6", "--set", "solvers.pinn.points.interior=32", "--set", "evaluate.grid={t: 5, x: 9}",
        "--set", "train.checkpoint_every=3", "--threads", "1"]


def solve(*args: str) -> int:
    return main(["-q", "solve", *args])


@pytest.mark.parametrize("name", ["../../escaped", "/abs/path", "a/b", "", "two\nlines", "x" * 300, ".."])
def test_a_name_that_is_not_one_path_component_is_refused_at_validate(tmp_path, name):
    data = yaml.safe_load(HEAT.read_text())
    data["name"] = name
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    errors = validate_file(path)
    assert errors and errors[0].startswith("name: expected 1 to 100 letters, digits"), errors


def test_resume_refuses_other_settings_and_a_smaller_budget_and_writes_nothing_first(tmp_path, capsys):
    run = tmp_path / "run"
    assert solve(str(HEAT), "--out", str(run), *TINY) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert solve(str(HEAT), "--resume", str(run), "--set", "params.nu=0.5", *TINY) == 2
    assert "states another problem than the run's (params differ)" in capsys.readouterr().err
    assert solve(str(HEAT), "--resume", str(run), "--set", "solvers.pinn.width=7", *TINY) == 2
    assert "these settings differ from its checkpoint's: solvers.pinn.width" in capsys.readouterr().err
    assert solve(str(HEAT), "--resume", str(run), *TINY[:-2], "--steps", "3") == 2  # 3 < the 6 it reached
    assert "its checkpoint is at step 6" in capsys.readouterr().err
    other = tmp_path / "other.yaml"
    other.write_text(HEAT.read_text().replace("nu: 0.1", "nu: 0.2"))
    assert solve(str(other), "--resume", str(run), *TINY) == 2
    assert "states another problem than the run's (params differ)" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # a refused resume wrote nothing
    assert solve(str(HEAT), "--resume", str(run), *TINY[:-2], "--steps", "9") == 0  # a longer budget: allowed


def test_a_folder_that_holds_a_run_needs_resume_or_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    assert solve(str(HEAT), "--out", str(run), *TINY) == 0
    (run / "stale.txt").write_text("from an older run")
    assert solve(str(HEAT), "--out", str(run), *TINY) == 2
    assert "already holds files" in capsys.readouterr().err and (run / "stale.txt").exists()
    assert solve(str(HEAT), "--out", str(run), "--overwrite", *TINY) == 0
    assert not (run / "stale.txt").exists() and (run / "metrics.json").exists()
    assert solve(str(HEAT), "--out", str(run / "metrics.json"), *TINY) == 2  # a file is not a run folder


INTERRUPTED = """
import signal
import sys
# Ctrl-C as in a terminal, whatever this process inherited: a job started in the background (`cmd &` in a script)
# ignores SIGINT, and the training loop rightly leaves an ignored SIGINT alone
signal.signal(signal.SIGINT, signal.default_int_handler)
import torch
torch.set_num_threads(1)
from pdesolve.config import load_run_config
from pdesolve.optim import make_optimizer
from pdesolve.solvers.pinn import PINN
from pdesolve.train import TrainSettings, seed_everything, train

cfg = load_run_config(sys.argv[1], ["solvers.pinn.points.interior=64", "solvers.pinn.points.resample_every=7"])
seed_everything(3)
task = PINN(cfg.problem, cfg.solver_options, torch.device("cpu")).task(lambda: {})
rule = make_optimizer("adam_lbfgs", {"adam_steps": 100, "lr": 1e-2}, 200)


def ready(step, row):
    # report the step, then wait for the parent's go (a line; none once stdin is closed or /dev/null): the child runs
    # at most one step ahead of the test, however busy the machine
    print("ready" if step == 0 else f"step {step}", flush=True)
    sys.stdin.readline()


result = train(task, rule, TrainSettings(steps=200, checkpoint_every=10_000, log_every=1, quiet=True),
               checkpoint=sys.argv[2], resume=sys.argv[3] == "resume", callbacks=[ready])
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a signal after training has nothing to interrupt
print(result.status.kind, result.status.step, flush=True)
torch.save([row["loss"] for row in result.history], sys.argv[2] + ".losses")
"""


def go(child: subprocess.Popen) -> None:
    """Let a waiting child (INTERRUPTED) take its next step."""
    child.stdin.write("\n")
    child.stdin.flush()


def test_ctrl_c_at_random_moments_then_resume_is_exact(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(INTERRUPTED)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def launch(ckpt: Path, mode: str, stdin=subprocess.DEVNULL) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), str(HEAT), str(ckpt), mode], stdin=stdin, stdout=subprocess.PIPE,
                                text=True, env=env)

    import torch

    full = tmp_path / "full.pt"
    proc = launch(full, "new")
    assert proc.communicate(timeout=300)[0].splitlines()[0] == "ready" and proc.returncode == 0
    reference = torch.load(str(full) + ".losses")
    rng = random.Random(0)
    for trial in range(3):
        ckpt = tmp_path / f"t{trial}.pt"
        proc = launch(ckpt, "new", stdin=subprocess.PIPE)

        # the child reports each step and waits for a go; once it reports a random one of the first 150 (of 200) steps,
        # Adam's or L-BFGS's, it gets its go and the signal follows within a step's time: it lands at a random moment
        # of the next step (or in the wait after it), never after training, however busy the machine is
        at = rng.randint(5, 150)
        while (line := proc.stdout.readline()) and line.strip() != f"step {at}":
            go(proc)
        assert line, "the child ended before reporting the step"
        go(proc)
        time.sleep(rng.uniform(0.0, 0.005))
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=300)[0]  # closes stdin: the child's later waits return at once
        assert proc.returncode == 0, out
        kind, step = out.split()[-2:]
        assert kind == "interrupted" and at < int(step) < 200, (trial, at, out[-300:])
        assert launch(ckpt, "resume").wait(timeout=300) == 0
        assert torch.load(str(ckpt) + ".losses") == reference, (trial, kind, step)  # bit for bit, wherever it stopped
