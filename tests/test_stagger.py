"""NeuralStagger (``solver: stagger``): pieces and their inverse, the residual loss against the simulator's own
step, s = 1 as the plain physics-constrained solver, per-piece networks, training, exact resume, refusals, and the
commands end to end (solve with no dataset, rollout on a dataset, one piece alone)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pdesolve.cli import main
from pdesolve.config import load_run_config
from pdesolve.errors import UserError
from pdesolve.grid import Grid, GridAxis
from pdesolve.grid_runner import train_grid
from pdesolve.nn.sinenet import SineNetOptions
from pdesolve.nn.stagger import StaggeredStepper, gather_index
from pdesolve.simulate import Numerics, simulate
from pdesolve.simulate.family import InitialConditionFamily
from pdesolve.solvers import SolverMismatch
from pdesolve.solvers.stagger import StaggerSolver

ROOT = Path(__file__).resolve().parents[1]

RING = {  # 2D heat on the periodic unit square: cheap, linear, a smooth random family
    "name": "heat_ring2d", "equation": "heat", "params": {"nu": 0.05},
    "domain": {"x": {"bounds": [0, 1], "periodic": True}, "y": {"bounds": [0, 1], "periodic": True}, "t": [0, 0.2]},
    "initial": {"u": "sin(2*pi*x)*cos(2*pi*y)"},
    "simulate": {"trajectories": 20, "resolution": 16, "steps": 20, "initial": {"kind": "grf", "length_scale": 0.2}},
    "solver": "stagger",
    "solvers": {"stagger": {"s_h": 2, "s_w": 2, "s_t": 2, "width": 8, "channel_mults": [1, 2],
                            "pool": {"size": 16, "batch": 4}, "eval_trajectories": 2}},
    "train": {"steps": 40, "optimizer": {"name": "adam", "lr": 3e-3}, "checkpoint_every": 20, "log_every": 1},
}


def write(tmp_path: Path, problem: dict, name: str = "problem.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(problem))
    return path


def options(**kw) -> SineNetOptions:
    return SineNetOptions(**{"fields": 1, "periodic": (True, True), "history": 2, "out_frames": 2, "waves": 1, "width": 4,
                             "channel_mults": (1, 2), **kw})


# ------------------------------------------------------------------------------------------- pieces
@pytest.mark.parametrize("periodic", [(True, True), (False, True)])
def test_pieces_are_the_grids_stagger_and_join_is_their_inverse(periodic):
    grid = Grid((GridAxis("x", 0, 1, 8, periodic[0]), GridAxis("y", 0, 1, 12, periodic[1])))
    u = torch.randn(3, 1, 8, 12)
    own = gather_index((8, 12), (2, 3), periodic, "own")  # [P, 1, 4, 4]
    pieces = u.reshape(3, 1, -1)[..., own][:, :, :, 0].transpose(1, 2)  # [3, P, 1, 4, 4]
    assert torch.equal(pieces, grid.stagger(u, {"x": 2, "y": 3}))
    model = StaggeredStepper((2, 3), 2, 1, periodic, options(periodic=periodic), "own", True)
    frames = torch.randn(3, 2, 1, 8, 12)
    assert torch.equal(model.join(model.split(frames)[:, :, 0], (8, 12)), frames)


def test_all_inputs_on_a_periodic_grid_see_the_others_relative_to_their_own_piece():
    index = gather_index((4, 4), (2, 2), (True, True), "all")  # [P=4, Q=4, 2, 2]
    own = gather_index((4, 4), (2, 2), (True, True), "own")[:, 0]
    assert torch.equal(index[:, 0], own)  # every piece reads its own piece first
    # piece (1, 1) reads, as its neighbour at offset (1, 0), the piece (0, 1) one coarse cell further down
    assert int(index[3, 2, 0, 0]) == 2 * 4 + 1


def test_one_piece_and_one_step_is_the_plain_physics_constrained_solver():
    torch.manual_seed(0)
    model = StaggeredStepper((1, 1), 1, 1, (True, True), options(history=1, out_frames=1), "own", True)
    torch.nn.init.normal_(model.net.project.conv.conv.weight)  # not the zero start: a network that does something
    model.frame_dt.fill_(0.1)
    model.scale.fill_(2.0)
    frames = torch.randn(3, 1, 1, 8, 8)
    direct = frames + 0.1 * 2.0 * model.net(frames[:, 0] / 2.0).unsqueeze(1)
    torch.testing.assert_close(model(frames), direct, rtol=1e-6, atol=1e-6)


def test_a_network_per_piece_equals_the_shared_one_when_their_weights_agree():
    torch.manual_seed(1)
    shared = StaggeredStepper((2, 2), 2, 1, (True, True), options(), "all", True)
    bank = StaggeredStepper((2, 2), 2, 1, (True, True), options(), "all", False)
    for name, p in shared.net.named_parameters():
        torch.nn.init.normal_(p, std=0.1)
        bank.bank[name.replace(".", "__")].data.copy_(p.data.expand_as(bank.bank[name.replace(".", "__")]))
    frames = torch.randn(2, 2, 1, 8, 8)
    torch.testing.assert_close(bank(frames), shared(frames), rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in bank.parameters()) == 4 * sum(p.numel() for p in shared.parameters())


# ----------------------------------------------------------------------------------------- the loss
def test_the_residual_of_the_simulators_own_steps_is_round_off(tmp_path):
    """2D heat with walls: heat_cn takes one Crank-Nicolson step per frame, so its frames leave no residual."""
    problem = {**RING, "name": "heat_box", "domain": {"x": [0, 1], "y": [0, 1], "t": [0, 0.2]},
               "initial": {"u": "sin(pi*x)*sin(pi*y)"}, "boundary": [{"kind": "dirichlet", "axis": "x", "side": "both", "value": 0},
                                                                   {"kind": "dirichlet", "axis": "y", "side": "both", "value": 0}],
               "simulate": {**RING["simulate"], "resolution": 17, "initial": {"kind": "problem"}},
               "solvers": {"stagger": {**RING["solvers"]["stagger"], "s_h": 1, "s_w": 1, "s_t": 1, "dtype": "float64",
                                       "channel_mults": [1]}}}
    cfg = load_run_config(write(tmp_path, problem))
    family = InitialConditionFamily.from_settings(cfg.problem, cfg.simulate, 0)
    solver = StaggerSolver(cfg.problem, cfg.solver_options, torch.device("cpu"), family=family)
    grid = cfg.problem.domain.grid(cfg.simulate.shape(("x", "y")))
    task = solver.family_task(family, grid, lambda: {})
    sol = simulate(cfg.problem, grid, numerics=Numerics(dt=grid.time.spacing), simulator="heat_cn").values  # [1, T, 1, x, y]
    age = torch.tensor([0])
    r = torch.stack([task.residual(sol[:, k - 1 : k], sol[:, k : k + 1], age + k - 1) for k in range(3, grid.time.n)])
    assert float(r.abs().max()) < 1e-12, float(r.abs().max())  # after heat_cn's two implicit-Euler start-up steps
    wrong = task.residual(sol[:, 4:5], sol[:, 4:5], age)  # persistence is not a step of the equation
    assert float(wrong.abs().max()) > 1e-3


# ------------------------------------------------------------------------------------- training runs
def test_training_lowers_the_residual_and_resumes_exactly(tmp_path):
    path = write(tmp_path, RING)
    full = train_grid(load_run_config(path), None, tmp_path / "full", quiet=True)
    first = [row["residual_rms"] for row in full.history]
    assert np.mean(first[-5:]) < 0.5 * np.mean(first[:5]), first
    train_grid(load_run_config(path, ["train.steps=20"]), None, tmp_path / "part", quiet=True)
    resumed = train_grid(load_run_config(tmp_path / "part" / "config.yaml", ["train.steps=40"]), None, tmp_path / "part",
                         resume=True, quiet=True)
    assert [row["loss"] for row in resumed.history] == [row["loss"] for row in full.history]
    a, b = (torch.load(run / "checkpoint.pt", weights_only=False)["model"] for run in (tmp_path / "full", tmp_path / "part"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    m = full.metrics
    assert m["rollout_rel_l2"] < 0.2 and m["rollout_residual_rms"] > 0 and m["network"]["pieces"] == 4


def test_commands_solve_without_data_then_roll_out_on_a_dataset_and_one_piece_alone(tmp_path):
    path = write(tmp_path, {**RING, "train": {**RING["train"], "steps": 20}})
    run = tmp_path / "run"
    assert main(["-q", "solve", str(path), "--threads", "1", "--out", str(run)]) == 0
    for name in ("config.yaml", "checkpoint.pt", "history.csv", "metrics.json", "solution.h5", "frames_u.png",
                 "error_vs_step.png", "residual.png", "history.png", "data.json"):
        assert (run / name).stat().st_size > 0, name
    data = tmp_path / "test.h5"
    assert main(["-q", "simulate", str(path), "--out", str(data), "--n", "3"]) == 0
    assert main(["rollout", str(run), "--data", str(data)]) == 0
    assert main(["rollout", str(run), "--data", str(data), "--piece", "1,0"]) == 0
    piece = json.loads((run / "rollout-test-piece1_0" / "metrics.json").read_text())
    assert piece["piece"] == [1, 0] and piece["trajectories"] == 3 and np.isfinite(piece["rollout_rel_l2"])


# ------------------------------------------------------------------------------------------- refusals
def test_refusals_name_the_option_and_the_fix(tmp_path, capsys):
    bad = {**RING, "simulate": {**RING["simulate"], "resolution": 18}, "solvers": {"stagger": {**RING["solvers"]["stagger"], "s_h": 4}}}
    with pytest.raises(UserError, match=r"solvers.stagger.s_h: axis 'x' has 18 points, not a multiple of s_h = 4"):
        train_grid(load_run_config(write(tmp_path, bad, "bad.yaml")), None, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    walls = {**RING, "domain": {"x": [0, 1], "y": [0, 1], "t": [0, 0.2]},
             "boundary": [{"kind": "dirichlet", "axis": "x", "side": "both"}, {"kind": "dirichlet", "axis": "y", "side": "both"}],
             "solvers": {"stagger": {**RING["solvers"]["stagger"], "inputs": "all"}}}
    assert main(["-q", "solve", str(write(tmp_path, walls, "walls.yaml")), "--out", str(tmp_path / "w")]) == 2
    assert "inputs: all with shared_weights: true needs periodic axes" in capsys.readouterr().err
    from dataclasses import replace

    from pdesolve.equations import Equation

    class PointwiseHeat(Equation):  # a user's equation with a pointwise face only
        def forcing(self, d, p):
            return d("u", "x", "x").unsqueeze(-1)

    ns = load_run_config(ROOT / "problems" / "ns2d.yaml").problem
    assert StaggerSolver.mismatches(ns) == []
    no_grid = replace(load_run_config(ROOT / "problems" / "heat.yaml").problem, equation=PointwiseHeat(), params={})
    with pytest.raises(SolverMismatch, match="residual of the equation's grid form, and 'PointwiseHeat' has none"):
        StaggerSolver(no_grid, StaggerSolver.Options(), torch.device("cpu"))


def test_navier_stokes_pieces_read_the_stream_function_and_cannot_then_run_alone():
    cfg = load_run_config(ROOT / "problems" / "ns2d.yaml", ["solver=stagger", "solvers.stagger.width=4"])
    solver = StaggerSolver(cfg.problem, cfg.solver_options, torch.device("cpu"))
    assert solver.model.extra == 1 and solver.model.features is not None  # psi beside w
    w = torch.randn(2, 1, 1, 32, 32)
    psi = solver.model.features(w)
    # the stream function: Lap psi = -w (zero mean), checked spectrally
    k = 2 * np.pi * torch.fft.fftfreq(32, d=2 * np.pi / 32)
    k2 = k[:, None] ** 2 + torch.fft.rfftfreq(32, d=1 / 32)[None, :] ** 2
    lap = torch.fft.irfft2(-k2 * torch.fft.rfft2(psi[:, :, 0]), s=(32, 32))
    torch.testing.assert_close(lap, -(w[:, :, 0] - w[:, :, 0].mean(dim=(-1, -2), keepdim=True)), rtol=1e-4, atol=1e-4)
    assert solver.step(w).shape == w.shape
    with pytest.raises(UserError, match="auxiliary fields of the whole grid"):
        solver.piece_stepper((0, 0))


def test_a_fixed_velocity_field_is_what_advection_diffusion_pieces_read_beside_the_scalar():
    from pdesolve.equations.advection_diffusion import velocity

    cfg = load_run_config(ROOT / "problems" / "advection_diffusion2d.yaml", ["solver=stagger", "solvers.stagger.width=4"])
    solver = StaggerSolver(cfg.problem, cfg.solver_options, torch.device("cpu"))
    assert solver.model.extra == 2
    c = torch.randn(3, 2, 1, 16, 16)
    aux = solver.model.features(c)  # [3, 2, 2, 16, 16]: (ux, uy) at every frame
    grid = cfg.problem.domain.grid({"x": 16, "y": 16, "t": 2})
    xx, yy = np.meshgrid(grid.coords("x"), grid.coords("y"), indexing="ij")
    ux, uy = velocity(xx, yy, cfg.problem.coefficients, np)
    np.testing.assert_allclose(aux[1, 0, 0].numpy(), ux, atol=1e-6)
    np.testing.assert_allclose(aux[2, 1, 1].numpy(), uy, atol=1e-6)


def test_rollouts_hold_each_trajectorys_walls_from_its_last_frame():
    """The network is never trained on wall points (training holds them), so a rollout copies them from its input."""
    from pdesolve.solvers.stagger import hold_walls

    out, last = torch.randn(3, 2, 1, 6, 5), torch.randn(3, 1, 6, 5)
    held = hold_walls(out, last, (False, True))  # x bounded, y periodic
    assert torch.equal(held[:, :, :, [0, -1]], last[:, None, :, [0, -1]].expand(3, 2, 1, 2, 5))
    assert torch.equal(held[:, :, :, 1:-1], out[:, :, :, 1:-1])
    assert torch.equal(hold_walls(out, last, (True, True)), out)
