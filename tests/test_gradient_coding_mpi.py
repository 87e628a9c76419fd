"""Gradient coding under mpiexec, with a straggler injected.

1. Three servers fed the same seeded batches (scripts/bench_gradient_coding.py --worker): with server 1 late
   by 0.05 s every round, the coded runs (cyclic and sequential, s = 1) decode the same first-round gradient
   as the uncoded all-reduce and, under SGD (parameters linear in the gradients), end with the same
   parameters, both to float32 round-off; the straggler's wait is cut short because its result is not needed.
2. The online trainer itself (two servers, two clients, a streamed heat2d study) with
   ``online.gradient_coding: {scheme: cyclic, stragglers: 1}`` and a delayed server completes, checkpoints
   (no round in flight) and ends with the two servers' models equal to round-off.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_online_mpi import MPIEXEC, ROOT, mpiexec, study_file

pytest.importorskip("mpi4py")
pytestmark = [pytest.mark.mpi, pytest.mark.skipif(MPIEXEC is None, reason="mpiexec is not on PATH nor beside this Python")]


def test_coded_rounds_decode_the_uncoded_gradient_with_a_straggler(tmp_path):
    out = tmp_path / "gc.json"
    args = [str(ROOT / "scripts" / "bench_gradient_coding.py"), "--worker", "--rounds", "6", "--repeats", "1", "--width", "32",
            "--batch", "16", "--optimizer", "sgd", "--lr", "0.1", "--delay", "0.05", "--delay-server", "1",
            "--configs", "none,cyclic+delay,sequential+delay,sequential+delay+resume", "--json", str(out)]
    code, log = mpiexec(3, args, timeout=120, cwd=tmp_path)
    assert code == 0, log[-3000:]
    results = {e["name"]: e for e in json.loads(out.read_text())["results"]}
    assert set(results) == {"none", "cyclic+delay", "sequential+delay", "sequential+delay+resume"}
    for name in ("cyclic+delay", "sequential+delay", "sequential+delay+resume"):  # resume: checkpointed at round 3
        e = results[name]
        assert e["grad0_diff_to_uncoded"] < 1e-6, e  # relative to the largest gradient entry (measured: 1.5e-7)
        assert e["param_diff_to_uncoded"] < 1e-6, e  # measured: 6e-8 after 6 SGD rounds
        assert e["param_diff_between_servers"] < 1e-5, e
        assert e["abandoned"] >= 1, e  # the straggler stopped waiting: the others decoded without it


def test_online_study_with_coded_gradients_and_a_slow_server_completes(tmp_path):
    study = study_file(tmp_path, online={"servers": 2, "audit": False, "gradient_coding": {"scheme": "cyclic", "stragglers": 1},
                                         "inject_delay": {"server": 1, "seconds": 0.02, "every": 2}},
                       simulate={"trajectories": 6, "resolution": 16, "steps": 10, "sampler": "lhs"},
                       train={"steps": 24, "checkpoint_every": 10, "log_every": 8})
    run = tmp_path / "run"
    code, log = mpiexec(4, ["-m", "online_training", str(study), "--out", str(run)], timeout=150, cwd=tmp_path)
    assert code == 0, log[-4000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"].startswith("complete") and summary["steps"] > 0, summary
    assert np.isfinite(summary["val_rel_l2"])
    step = json.loads((run / "checkpoint.json").read_text())["step"]
    states = [torch.load(run / "checkpoints" / f"step{step:09d}-server{i}.pt", weights_only=False) for i in range(2)]
    models = [s["model"] for s in states]
    scale = max(float(v.abs().max()) for v in models[0].values())
    assert max(float((models[0][k] - models[1][k]).abs().max()) for k in models[0]) < 1e-5 * scale
    assert "gradient coding" in log, log[-2000:]
