"""The grid-solver path: rollouts and their errors on trajectories with known answers, SineNet training
(lower rollout error than persistence), exact resume through the shared loop, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pdesolve.cli import main
from pdesolve.config import load_run_config
from pdesolve.data import TrajectoryFile, split_trajectories
from pdesolve.errors import UserError
from pdesolve.grid import Grid, GridAxis
from pdesolve.optim import make_optimizer
from pdesolve.rollout import Trajectories, evaluate_rollouts, load_trajectories, rollout, start_times
from pdesolve.solvers import get_solver
from pdesolve.train import TrainSettings, seed_everything, train

ROOT = Path(__file__).resolve().parents[1]
AD2D = ROOT / "problems" / "advection_diffusion2d.yaml"
# a tiny network for 16 x 16 grids (2 levels), a smooth initial state that 16 points resolve, and no
# cellular flow (a uniform drift and diffusion: dynamics that a translation-equivariant network can learn)
TINY = ["params.amplitude=0", "solvers.sinenet.width=8", "solvers.sinenet.waves=2", "solvers.sinenet.history=1",
        "solvers.sinenet.channel_mults=[1, 2]",
        "solvers.sinenet.batch_size=8", "solvers.sinenet.rollout_steps=6", "solvers.sinenet.rollout_starts=2",
        "solvers.sinenet.split=[0.5, 0.25, 0.25]"]
SIMULATE = ["--n", "12", "--resolution", "16", "--steps", "20", "--set", "simulate.initial.length_scale=1.5",
            "--set", "params.amplitude=0"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "ad2d.h5"
    assert main(["-q", "simulate", str(AD2D), "--out", str(path), *SIMULATE]) == 0
    return path


def _trajectories(frames: np.ndarray, dt: float = 0.1) -> Trajectories:
    """Synthetic trajectories ``[traj, time, 1, n]`` on a periodic 1D grid."""
    n_traj, n_time, _, n = frames.shape
    grid = Grid((GridAxis("x", 0.0, 1.0, n, True),), GridAxis("t", 0.0, dt * (n_time - 1), n_time))
    return Trajectories(torch.as_tensor(frames, dtype=torch.float32), grid, ("u",), tuple(range(n_traj)))


# ----------------------------------------------------------------------------- rollout and its errors
def test_exact_stepper_has_zero_error_and_a_biased_one_compounds_geometrically():
    rng = np.random.default_rng(0)
    f0 = rng.standard_normal((3, 1, 16))
    frames = np.stack([np.roll(f0, t, axis=-1) for t in range(12)], axis=1)  # advection by one cell per frame
    data = _trajectories(frames)

    def exact(w):
        return torch.roll(w[:, -1], 1, dims=-1)

    report = evaluate_rollouts(exact, data, history=1, steps=5, starts=3, dtype=torch.float64)
    assert report.one_step == 0 and report.rollout == 0 and np.all(report.per_step == 0)
    assert report.starts == (0, 3, 6) and report.steps == 5
    # a stepper 1% too large: after n steps the prediction is 1.01^n times the truth, so the relative
    # error at step n is exactly 1.01^n - 1, whatever the start time; over the window it is the RMS-weighted mix
    eps = 0.01
    report = evaluate_rollouts(lambda w: (1 + eps) * exact(w), data, history=1, steps=5, starts=3, dtype=torch.float64)
    n = np.arange(1, 6)
    np.testing.assert_allclose(report.per_step, (1 + eps) ** n - 1, rtol=1e-10)
    assert report.one_step == pytest.approx(eps, rel=1e-10)
    assert report.rollout == pytest.approx(np.sqrt(np.mean(((1 + eps) ** n - 1) ** 2)), rel=1e-10)


def test_sliding_window_feeds_back_the_frames_in_order():
    # frames linear in time: u_t = a + t b; the two-frame extrapolation 2 u_t - u_{t-1} is exact
    # only if the window keeps the last two frames in order
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 2, 1, 8))
    frames = np.stack([a + t * b for t in range(9)], axis=1)
    data = _trajectories(frames)
    report = evaluate_rollouts(lambda w: 2 * w[:, -1] - w[:, -2], data, history=2, dtype=torch.float64)
    assert report.steps == 7 and report.rollout < 1e-6  # the frames are stored in float32
    swapped = evaluate_rollouts(lambda w: 2 * w[:, -2] - w[:, -1], data, history=2, dtype=torch.float64)
    assert swapped.one_step > 0.1
    pred = rollout(lambda w: 2 * w[:, -1] - w[:, -2], torch.as_tensor(frames[:, :2]), 7)
    np.testing.assert_allclose(pred.numpy(), frames[:, 2:], rtol=0, atol=1e-12)


def test_start_times_spread_over_the_frames_that_allow_the_window():
    assert start_times(51, 2, 20, 4) == (20, (0, 10, 19, 29))
    assert start_times(11, 1, None, 4) == (10, (0,))
    with pytest.raises(ValueError, match="expected 1 to 9"):
        start_times(11, 2, 10, 1)


# ----------------------------------------------------------------------------- training
def _setup(dataset: Path, overrides=()):
    cfg = load_run_config(AD2D, [*TINY, "solver=sinenet", *overrides])
    file = TrajectoryFile(dataset)
    split = split_trajectories(file.n_trajectories, cfg.solver_options.split, 0)
    seed_everything(0)
    solver = get_solver("sinenet")(cfg.problem, cfg.solver_options, torch.device("cpu"))
    return cfg, solver, load_trajectories(cfg.problem, file, split["train"]), load_trajectories(cfg.problem, file, split["test"])


def test_training_lowers_the_rollout_error_below_persistence(dataset):
    cfg, solver, train_data, test_data = _setup(dataset)
    task = solver.data_task(train_data, lambda: {})
    with torch.no_grad():  # a residual stepper whose update is zero is persistence: u_{n+1} = u_n
        for p in solver.model.net.project.conv.parameters():
            p.zero_()
    persistence = evaluate_rollouts(solver.step, test_data, solver.history, 6, 2)
    assert persistence.one_step > 0.05  # the blob really moves between frames
    opt = make_optimizer("adamw", {"lr": 3e-3, "warmup": 10, "schedule": "cosine"}, 150)
    result = train(task, opt, TrainSettings(steps=150, log_every=10, quiet=True))
    assert result.status.ok
    trained = evaluate_rollouts(solver.step, test_data, solver.history, 6, 2)
    # on held-out trajectories: the learned stepper beats doing nothing by a wide margin, one step and rolled out
    assert trained.one_step < 0.2 * persistence.one_step
    assert trained.rollout < 0.2 * persistence.rollout
    assert np.all(trained.per_step < persistence.per_step)
    assert result.history[-1]["loss"] < 0.2 * result.history[0]["loss"]


def test_resumed_training_equals_an_uninterrupted_run(dataset, tmp_path):
    def run(steps, ckpt, resume=False):
        _, solver, train_data, _ = _setup(dataset, ["solvers.sinenet.noise=0.05"])
        task = solver.data_task(train_data, lambda: {})
        opt = make_optimizer("adamw", {"lr": 2e-3, "warmup": 4, "schedule": "cosine", "weight_decay": 1e-4}, 16)
        out = train(task, opt, TrainSettings(steps=steps, log_every=1, checkpoint_every=4, quiet=True), tmp_path / ckpt, resume)
        return out, solver

    full, a = run(16, "full.pt")
    run(8, "part.pt")
    resumed, b = run(16, "part.pt", resume=True)
    assert resumed.resumed_from == 8
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]  # bit for bit, noise included
    for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_position_channels_break_translation_equivariance_only_when_asked(dataset):
    x = torch.randn(2, 1, 1, 16, 16)
    for coordinates, equivariant in ((False, True), (True, False)):
        _, solver, _, _ = _setup(dataset, [f"solvers.sinenet.coordinates={str(coordinates).lower()}"])
        shifted = solver.step(torch.roll(x, (4, 8), dims=(-2, -1)))
        assert torch.allclose(shifted, torch.roll(solver.step(x), (4, 8), dims=(-2, -1)), atol=1e-5) == equivariant


def test_normalization_comes_from_the_training_trajectories(dataset):
    _, solver, train_data, _ = _setup(dataset)
    solver.data_task(train_data, lambda: {})
    x = train_data.frames.double()
    assert float(solver.model.mean) == pytest.approx(float(x.mean()), rel=1e-5)
    assert float(solver.model.std) == pytest.approx(float(x.std(correction=0)), rel=1e-5)
    assert float(solver.model.frame_dt) == pytest.approx(0.2)
    # predict(grid): a rollout from the problem's initial condition at the trained frame spacing
    grid = Grid(train_data.grid.space, GridAxis("t", 0.0, 1.0, 6))
    sol = solver.predict(grid)
    assert sol.values.shape == (1, 6, 1, 16, 16)
    np.testing.assert_allclose(sol.values[0, 0], solver.problem.initial_numpy(grid), rtol=0, atol=0)
    with pytest.raises(UserError, match="differs from the trained frame spacing 0.2"):
        solver.predict(Grid(train_data.grid.space, GridAxis("t", 0.0, 1.0, 11)))


# ----------------------------------------------------------------------------- command line
def test_cli_simulate_train_rollout(dataset, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["-q", "train", str(AD2D), "--data", str(dataset), "--steps", "6", "--out", str(run_dir), "--device", "cpu",
            "--set", "train.optimizer.name=adamw", "--set", "train.checkpoint_every=3"]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 0
    for name in ("config.yaml", "data.json", "checkpoint.pt", "history.csv", "metrics.json", "solution.h5",
                 "frames_c.png", "error_vs_step.png", "history.png"):
        assert (run_dir / name).stat().st_size > 0, name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["solver"] == "sinenet" and metrics["status"] == "budget" and metrics["steps"] == 6
    assert len(metrics["error_vs_step"]) == metrics["rollout_steps"] == 6
    split = json.loads((run_dir / "data.json").read_text())["split"]
    assert metrics["trajectories"] == len(split["test"]) == 3
    with h5py.File(run_dir / "solution.h5", "r") as f:
        pred, ref = f["prediction"][()], f["reference"][()]
    assert pred.shape == ref.shape == (3, 21, 1, 16, 16)
    np.testing.assert_array_equal(pred[:, :1], ref[:, :1])  # the start frame (history 1) is the data's
    assert np.abs(pred[:, 1:] - ref[:, 1:]).max() > 0
    # rolling out on the same test split from the checkpoint reproduces the training run's test metrics
    assert main(["-q", "rollout", str(run_dir), "--data", str(dataset), "--split", "test", "--device", "cpu"]) == 0
    again = json.loads((run_dir / f"rollout-{dataset.stem}" / "metrics.json").read_text())
    assert again["rollout_rel_l2"] == pytest.approx(metrics["rollout_rel_l2"], rel=1e-6)
    assert again["one_step_rel_l2"] == pytest.approx(metrics["one_step_rel_l2"], rel=1e-6)
    # a resumed run continues from the checkpoint at step 6 up to 9 on the same data (its problem, as it was made)
    assert main(["-q", "train", str(AD2D), "--resume", str(run_dir), "--steps", "9"]) == 2  # without params.amplitude=0
    assert "states another problem than the run's (params differ)" in capsys.readouterr().err
    assert main(["-q", "train", str(AD2D), "--resume", str(run_dir), "--steps", "9", "--set", "params.amplitude=0"]) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 9
    capsys.readouterr()


def test_cli_errors_are_told(dataset, tmp_path, capsys):
    ns = ROOT / "problems" / "ns2d.yaml"
    assert main(["-q", "train", str(ns), "--data", str(dataset), "--out", str(tmp_path / "x")]) == 2
    assert "fields ['c'], expected ['w']" in capsys.readouterr().err
    assert main(["-q", "train", str(AD2D), "--out", str(tmp_path / "y")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["-q", "train", str(AD2D), "--data", str(dataset), "--set", "solvers.sinenet.width=8",
                 "--set", "solvers.sinenet.parameters=1000"]) == 2
    assert "give width or parameters, not both" in capsys.readouterr().err
    assert main(["-q", "train", str(AD2D), "--data", str(dataset), "--out", str(tmp_path / "z"), "--steps", "1",
                 "--set", "solvers.sinenet.channel_mults=[1, 1, 1, 1, 1, 1]"]) == 2
    assert "multiples of 32, got (16, 16)" in capsys.readouterr().err
