"""Importing pdesolve is silent, writes nothing and never imports deepxde."""

import os
import subprocess
import sys


def test_import_is_silent_and_lazy(tmp_path):
    code = (
        "import sys, pdesolve, pdesolve.cli, pdesolve.config, pdesolve.runner, pdesolve.solvers, pdesolve.train\n"
        "pdesolve.load_problem\n"
        "assert 'deepxde' not in sys.modules, 'deepxde was imported'\n"
    )
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("DDE_BACKEND", None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())
