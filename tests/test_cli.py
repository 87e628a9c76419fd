"""The `pdesolve` command end to end, and bad input as status 2 without a traceback."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "pdesolve", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_solve_evaluate_plot_resume(tmp_path):
    out = tmp_path / "run"
    r = _cli("solve", "problems/heat.yaml", "--steps", "30", "--out", str(out), "--threads", "1", "--quiet",
             "--set", "solvers.pinn.points.interior=200", "--set", "train.checkpoint_every=10")
    assert r.returncode == 0, r.stderr
    assert "relative L2" in r.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 30 and metrics["status"] == "budget"
    r = _cli("solve", "problems/heat.yaml", "--resume", str(out), "--steps", "40", "--quiet", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"] == 40
    history = (out / "history.csv").read_text().splitlines()
    # rows 0, 10, 20 of the first run (its final 29 was logged only as its last step: dropped), then 30 and the final 39
    assert history[0].startswith("step,") and [float(r.split(",")[0]) for r in history[1:]] == [0, 10, 20, 30, 39]
    r = _cli("evaluate", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rel_l2"] == metrics["rel_l2"] or "rel_l2" in json.loads(r.stdout)
    (out / "fields_u.png").unlink()
    r = _cli("plot", str(out))
    assert r.returncode == 0 and (out / "fields_u.png").exists()


def test_list_and_validate():
    r = _cli("list")
    assert r.returncode == 0 and "burgers.yaml" in r.stdout and "pinn" in r.stdout and "adam_lbfgs" in r.stdout
    r = _cli("validate", "problems/burgers.yaml", "problems/heat.yaml")
    assert r.returncode == 0 and r.stdout.count(": ok") == 2


def test_user_errors_exit_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nequation: burgers\nparams: {nu: -1}\ndomain: {x: [0, 1], t: [0, 1]}\ninitial: {u: open('f')}\n")
    for args in (("solve", str(bad)), ("validate", str(bad)), ("solve", "problems/nope.yaml"),
                 ("solve", "problems/heat.yaml", "--solver", "nope"), ("solve", "problems/heat.yaml", "--set", "train.steps=-1")):
        r = _cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout
    r = _cli("validate", str(bad))
    assert "params.nu" in r.stdout and "initial.u" in r.stdout
    r = _cli("solve", "problems/kdv.yaml", "--solver", "lpinn", "--steps", "1")
    assert r.returncode == 2 and "order 3" in r.stderr and "Traceback" not in r.stderr


def test_a_refused_run_leaves_no_run_folder(tmp_path):
    for solver, says in (("sinenet", "pdesolve train"), ("lpinn", "no transport term")):
        out = tmp_path / solver
        r = _cli("solve", "problems/heat.yaml", "--solver", solver, "--out", str(out))
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not out.exists()
