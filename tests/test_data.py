"""HDF5 trajectory datasets: writing, kill -9 and resume, the torch views, and PDEBench's layouts."""

from __future__ import annotations

import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from simulate_helpers import PERIODIC_2PI, make_problem

from pdesolve.data import OneStepDataset, RolloutDataset, TrajectoryFile, channel_stats, describe, split_trajectories
from pdesolve.errors import UserError
from pdesolve.simulate import simulate
from pdesolve.simulate.dataset import generate_dataset
from pdesolve.simulate.settings import SimulateSettings

ROOT = Path(__file__).resolve().parents[1]


def burgers():
    return make_problem("burgers", {"nu": 0.05}, [PERIODIC_2PI], 1.0, {"u": "sin(x)"})


SETTINGS = {"trajectories": 5, "resolution": 64, "steps": 8, "batch_size": 2, "initial": {"kind": "sine_sum", "k_max": 3}}
KILL_SETTINGS = {**SETTINGS, "trajectories": 6, "batch_size": 1, "dt": 4e-4}  # ~0.5 s per trajectory


def make(path: Path, **over) -> SimulateSettings:
    settings = SimulateSettings.model_validate({**SETTINGS, **over})
    generate_dataset(path, burgers(), settings, problem_text="burgers test", seed=7, quiet=True)
    return settings


def test_layout_and_content(tmp_path):
    path = tmp_path / "b.h5"
    make(path, parameters={"nu": [0.02, 0.08]}, sampler="lhs")
    with h5py.File(path, "r") as f:
        u = f["u"]
        assert u.shape == (5, 9, 1, 64) and u.dtype == np.float32
        assert u.chunks == (1, 9, 1, 64) and u.compression == "gzip"
        assert np.allclose(f["t"][...], np.linspace(0, 1, 9)) and np.allclose(
            f["x"][...], PERIODIC_2PI.lo + np.arange(64) * 2 * math.pi / 64
        )
        assert f.attrs["simulator"] == "spectral1d" and f.attrs["seed"] == 7 and f.attrs["complete"]
        assert f.attrs["problem"] == "burgers test" and f.attrs["pdesolve_version"]
        nu = f["params/nu"][...]
    assert nu.shape == (5,) and nu.min() >= 0.02 and nu.max() <= 0.08
    # trajectory 3 is the simulator's answer for its own initial state and viscosity
    tf = TrajectoryFile(path)
    u3 = tf.read(3)
    again = simulate(burgers(), burgers().domain.grid({"x": 64, "t": 9}), u0=u3[0].astype(np.float64), params={"nu": nu[3]}).numpy()[0]
    assert np.abs(u3 - again).max() < 1e-5  # float32 storage of the initial state
    assert np.abs(u3[0] - u3[-1]).max() > 0.05


def test_interrupted_run_is_readable_and_resumes(tmp_path):
    """kill -9 a generating process, read what it left, rerun: the result equals an uninterrupted run."""
    path = tmp_path / "killed.h5"
    here = str(Path(__file__).parent)
    script = "\n".join(
        [
            "import sys, torch",
            "torch.set_num_threads(1)",
            f"sys.path.insert(0, {here!r})",
            "from test_data import burgers, KILL_SETTINGS",
            "from pdesolve.simulate.dataset import generate_dataset",
            "from pdesolve.simulate.settings import SimulateSettings",
            "s = SimulateSettings.model_validate(KILL_SETTINGS)",
            f"generate_dataset({str(path)!r}, burgers(), s, problem_text='burgers test', seed=7, quiet=True)",
        ]
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    done, deadline = 0, time.monotonic() + 120
    try:
        while done < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
            try:
                with h5py.File(path, "r") as f:  # succeeds only while the writer has the file closed
                    done = f["u"].shape[0]
            except (OSError, KeyError):
                continue
        os.kill(proc.pid, signal.SIGKILL)  # the writer is simulating the next trajectory now
    finally:
        proc.wait()
    assert 2 <= done < 6, f"the writer finished {done} trajectories before the kill"
    tf = TrajectoryFile(path)
    assert 2 <= tf.n_trajectories < 6 and np.isfinite(tf.read(tf.n_trajectories - 1)).all()
    tf.close()
    with h5py.File(path, "r") as f:
        assert not f.attrs["complete"]
    settings = SimulateSettings.model_validate(KILL_SETTINGS)
    report = generate_dataset(path, burgers(), settings, problem_text="burgers test", seed=7, quiet=True)
    assert report.resumed_from == tf.n_trajectories
    whole = tmp_path / "whole.h5"
    generate_dataset(whole, burgers(), settings, problem_text="burgers test", seed=7, quiet=True)
    with h5py.File(path, "r") as a, h5py.File(whole, "r") as b:
        assert a.attrs["complete"] and np.array_equal(a["u"][...], b["u"][...])


def test_resume_refuses_other_settings(tmp_path):
    path = tmp_path / "b.h5"
    make(path)
    with pytest.raises(UserError, match="different seed"):
        generate_dataset(path, burgers(), SimulateSettings.model_validate(SETTINGS), problem_text="burgers test", seed=8, quiet=True)
    with pytest.raises(UserError, match="settings"):
        make(path, steps=4)
    generate_dataset(
        path, burgers(), SimulateSettings.model_validate({**SETTINGS, "steps": 4}), problem_text="x", seed=8, quiet=True, overwrite=True
    )
    assert TrajectoryFile(path).n_times == 5
    with pytest.raises(UserError, match="unknown names"):
        make(tmp_path / "c.h5", parameters={"mu": [1, 2]})


def test_datasets_windows_splits_and_normalization(tmp_path):
    path = tmp_path / "b.h5"
    make(path, trajectories=10)
    tf = TrajectoryFile(path)
    splits = split_trajectories(10, (0.6, 0.2, 0.2), seed=1)
    assert sorted(np.concatenate(list(splits.values()))) == list(range(10)) and len(splits["train"]) == 6
    one = OneStepDataset(path, history=2, split="train", fractions=(0.6, 0.2, 0.2), seed=1)
    assert len(one) == 6 * 7
    x, y = one[7 + 3]  # second training trajectory, start time 3
    traj = tf.read(int(splits["train"][1]))
    assert x.shape == (2, 1, 64) and y.shape == (1, 64) and x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(traj[3:5])) and torch.equal(y, torch.from_numpy(traj[5]))
    roll = RolloutDataset(path, history=1, window=4, split="test", fractions=(0.6, 0.2, 0.2), seed=1, time_stride=2)
    x, y = roll[0]
    test0 = tf.read(int(splits["test"][0]))
    assert len(roll) == 2 * 1 and y.shape == (4, 1, 64) and torch.equal(y, torch.from_numpy(test0[2::2]))
    stats = channel_stats(tf, splits["train"])
    every = np.stack([tf.read(int(i)) for i in splits["train"]]).astype(np.float64)
    assert np.allclose(stats.mean, every.mean()) and np.allclose(stats.std, every.std())
    norm = OneStepDataset(path, split="train", fractions=(0.6, 0.2, 0.2), seed=1, normalization=stats)
    assert torch.allclose(norm[0][1], torch.from_numpy(((tf.read(int(splits["train"][0]))[1] - stats.mean) / stats.std).astype(np.float32)))
    clone = pickle.loads(pickle.dumps(one))  # DataLoader workers: the open handle is not pickled
    assert torch.equal(clone[5][0], one[5][0])
    loader = torch.utils.data.DataLoader(one, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 2, 1, 64) and yb.shape == (4, 1, 64)


def test_pdebench_single_tensor_layout(tmp_path):
    path = tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5"
    data = np.random.default_rng(0).standard_normal((3, 6, 16)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["tensor"] = data
        f["x-coordinate"] = np.linspace(0, 1, 16, endpoint=False) + 1 / 32
        f["t-coordinate"] = np.linspace(0, 2, 7)  # PDEBench keeps one more time stamp than frames
    tf = TrajectoryFile(path)
    assert tf.layout == "pdebench-tensor" and tf.fields == ("u",) and tf.n_times == 6 and len(tf.times) == 6
    assert np.array_equal(tf.read(2), data[2][:, None])
    x, y = OneStepDataset(tf, split="all")[6]
    assert torch.equal(y, torch.from_numpy(data[1, 2][None]))
    cfd = tmp_path / "1D_CFD.hdf5"
    with h5py.File(cfd, "w") as f:
        for k in ("Vx", "density", "pressure"):
            f[k] = data * len(k)
        f["x-coordinate"] = np.arange(16.0)
        f["t-coordinate"] = np.arange(7.0)
    multi = TrajectoryFile(cfd)
    assert multi.fields == ("Vx", "density", "pressure") and np.array_equal(multi.read(1)[:, 1], data[1] * 7)
    text = describe(path)
    assert "pdebench-tensor" in text and "axis x:       16 points" in text


def test_pdebench_per_seed_groups_layout(tmp_path):
    path = tmp_path / "1D_diff-sorp_NA_NA.h5"
    rng = np.random.default_rng(1)
    arrays = [rng.random((5, 32, 1)).astype(np.float32) for _ in range(3)]
    with h5py.File(path, "w") as f:
        for i, a in enumerate(arrays):
            g = f.create_group(f"{i:04d}")
            g["data"] = a
            g["grid/x"] = (np.arange(32) + 0.5) / 32
            g["grid/t"] = np.linspace(0, 500, 5)
    tf = TrajectoryFile(path)
    assert tf.layout == "pdebench-groups" and tf.n_trajectories == 3 and tf.space_shape == (32,)
    assert np.array_equal(tf.read(1), np.moveaxis(arrays[1], -1, 1)) and tf.times[-1] == 500
    roll = RolloutDataset(path, history=2, window=3, split="all")
    assert len(roll) == 3 and torch.equal(roll[2][1], torch.from_numpy(np.moveaxis(arrays[2], -1, 1)[2:]))
    assert "and 2 more groups" in describe(path)


def test_unsupported_file_is_told(tmp_path):
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        f["weights"] = np.zeros(3)
    with pytest.raises(UserError, match="not a supported trajectory file"):
        TrajectoryFile(path)


def test_cli_simulate_ns2d_and_describe(tmp_path, capsys):
    from pdesolve.cli import main

    out = tmp_path / "ns.h5"
    args = ["-q", "simulate", str(ROOT / "problems/ns2d.yaml"), "--n", "8", "--steps", "4", "--resolution", "16", "--out", str(out)]
    assert main(args) == 0
    tf = TrajectoryFile(out)
    assert tf.n_trajectories == 8 and tf.fields == ("w",) and tf.space_shape == (16, 16)
    assert np.isfinite(tf.read(7)).all() and OneStepDataset(out, split="all")[0][0].shape == (1, 1, 16, 16)
    assert main(args) == 0  # a complete file: nothing to do
    assert main(["data", "describe", str(out)]) == 0
    text = capsys.readouterr().out
    assert "layout:       pdesolve" in text and "trajectories: 8" in text and "simulator: ns2d" in text
    assert main(["-q", "simulate", str(ROOT / "problems/ns2d.yaml"), "--n", "8", "--steps", "3", "--out", str(out)]) == 2
