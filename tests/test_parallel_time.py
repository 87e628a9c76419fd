"""Parallel-in-time rollouts (pdesolve.parallel_time): every method reproduces the sequential rollout (states and
training gradients), reports its iterations, and refuses what cannot work; the CLI option end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pdesolve.cli import main
from pdesolve.errors import UserError
from pdesolve.grid import Grid, GridAxis
from pdesolve.nn.sinenet import SineNetOptions
from pdesolve.optim import make_optimizer
from pdesolve.parallel_time import ExecutorOptions, ParallelRollout, affine_scan, solve_lagged, transposed
from pdesolve.rollout import Trajectories, rollout
from pdesolve.solvers.sinenet import SineNetSettings, SineNetStepper
from pdesolve.solvers.sinenet_rollout import SineNetRolloutTask
from pdesolve.task import RuleMismatch, check_rule

ROOT = Path(__file__).resolve().parents[1]
AD2D = ROOT / "problems" / "advection_diffusion2d.yaml"
METHODS = ("picard", "quasi_newton", "newton")


def sinenet(shape: tuple[int, ...], history: int, seed: int = 0) -> SineNetStepper:
    """A small SineNet stepper with random weights (float64, evaluation mode)."""
    torch.manual_seed(seed)
    periodic = (True,) * len(shape)
    o = SineNetOptions(fields=1, periodic=periodic, history=history, waves=2, width=4, channel_mults=(1, 2))
    return SineNetStepper(o, 1, periodic).double().eval()


def allen_cahn(history: int, dt: float = 0.05):
    """Explicit 2D Allen-Cahn ``u_t = 0.5 lap u + u - u^3`` on a periodic grid: Euler (history 1) or Adams-Bashforth 2."""
    def rate(u: torch.Tensor) -> torch.Tensor:
        lap = sum(torch.roll(u, s, d) for d in (-1, -2) for s in (1, -1)) - 4 * u
        return 0.5 * lap + u - u**3

    def step(w: torch.Tensor) -> torch.Tensor:
        if history == 1:
            return w[:, -1] + dt * rate(w[:, -1])
        return w[:, -1] + dt * (1.5 * rate(w[:, -1]) - 0.5 * rate(w[:, -2]))
    return step


CASES = {  # name -> (stepper factory(history), frame shape)
    "sinenet1d": (lambda h: sinenet((16,), h), (1, 16)),
    "sinenet2d": (lambda h: sinenet((8, 8), h), (1, 8, 8)),
    "allen_cahn2d": (allen_cahn, (1, 8, 8)),
}


# ----------------------------------------------------------------------------------------- the scans
def test_scan_and_lagged_solve_equal_the_sequential_recurrences():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 13, 4, 4, generator=g, dtype=torch.float64) * 0.5, torch.randn(3, 13, 4, generator=g, dtype=torch.float64)
    s, want = torch.zeros(3, 4, dtype=torch.float64), []
    for t in range(13):
        s = (a[:, t] @ s[..., None])[..., 0] + b[:, t]
        want.append(s)
    torch.testing.assert_close(affine_scan(a, b), torch.stack(want, 1), rtol=1e-12, atol=1e-12)
    # v_t = J_{t,1} v_{t-1} + J_{t,2} v_{t-2} + r_t, dense and diagonal; and the adjoint (I - L)^T u = c
    for dense in (True, False):
        coef = torch.randn((2, 9, 2, 5, 5) if dense else (2, 9, 2, 5), generator=g, dtype=torch.float64) * 0.4
        r = torch.randn(2, 9, 5, generator=g, dtype=torch.float64)
        full = torch.zeros(2, 45, 45, dtype=torch.float64)  # L as a matrix over (time, point)
        for t in range(9):
            for j in (1, 2):
                if t - j >= 0:
                    block = coef[:, t, j - 1] if dense else torch.diag_embed(coef[:, t, j - 1])
                    full[:, 5 * t:5 * t + 5, 5 * (t - j):5 * (t - j) + 5] = block
        eye = torch.eye(45, dtype=torch.float64)
        v = torch.linalg.solve(eye - full, r.flatten(1)[..., None])[..., 0].view(2, 9, 5)
        torch.testing.assert_close(solve_lagged(coef, r, dense), v, rtol=1e-10, atol=1e-10)
        u = torch.linalg.solve((eye - full).transpose(1, 2), r.flatten(1)[..., None])[..., 0].view(2, 9, 5)
        torch.testing.assert_close(solve_lagged(transposed(coef, dense), r.flip(1), dense).flip(1), u, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------- equals sequential
@pytest.mark.parametrize("history", [1, 2])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_method_reproduces_the_sequential_rollout(case, history):
    factory, frame = CASES[case]
    step = factory(history)
    steps = 7
    start = 0.8 * torch.randn(1, history, *frame, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        ref = rollout(step, start, steps)
    iterations = {}
    for method in METHODS:
        ex = ParallelRollout(ExecutorOptions(method=method, tol=1e-11))
        out = ex.rollout(step, start, steps)
        report = ex.reports[-1]
        assert report.converged and report.residuals[-1] <= 1e-11 and len(report.residuals) == report.evaluations
        assert report.iterations <= steps  # lower triangular in time: exact after `steps` iterations at most
        scale = float(ref.abs().max())
        assert float((out - ref).abs().max()) <= 1e-9 * scale, (method, report.as_dict())
        iterations[method] = report.iterations
    if case == "allen_cahn2d":  # J ~ I + dt A: Picard needs every step, Newton converges quadratically
        assert iterations["newton"] < iterations["picard"] == steps


def test_newton_needs_few_iterations_however_long_the_rollout():
    start = 0.3 * torch.randn(2, 1, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for steps in (8, 32):
        ex = ParallelRollout(ExecutorOptions(method="newton", tol=1e-11))
        ex.rollout(allen_cahn(1), start, steps)
        r = ex.reports[-1].residuals
        assert ex.reports[-1].iterations <= 5 and r[-1] < 1e-11 and r[-2] < 1e-5  # quadratic at the end (4 and 5 measured)


def test_a_diverging_quasi_newton_update_falls_back_to_picard_and_still_reproduces_the_rollout():
    # Burgers' own grid form (pseudo-spectral), Heun steps: the diagonal misses the transport, and over 128 steps of a
    # steepening wave its products amplify until updates overshoot; the safeguard takes Picard steps instead
    import math

    from pdesolve.equations import EQUATIONS

    grid = Grid((GridAxis("x", 0.0, 2 * math.pi, 32, True),))
    eq, x = EQUATIONS["burgers"](), torch.as_tensor(grid.space[0].coords, dtype=torch.float64)

    def step(w: torch.Tensor) -> torch.Tensor:
        u = w[:, -1]
        k1 = eq.rhs(u, grid, {"nu": 0.05})
        return u + 0.005 * (k1 + eq.rhs(u + 0.01 * k1, grid, {"nu": 0.05}))

    start = (torch.sin(x) + 0.5 * torch.cos(2 * x + 1.0))[None, None, None]
    with torch.no_grad():
        ref = rollout(step, start, 128)
    ex = ParallelRollout(ExecutorOptions(method="quasi_newton", tol=1e-9))
    out = ex.rollout(step, start, 128)
    report = ex.reports[-1]
    assert report.fallbacks > 0 and report.converged and report.iterations <= 128
    assert report.evaluations == report.iterations + report.fallbacks + 1
    assert float((out - ref).abs().max()) <= 1e-8 * float(ref.abs().max())


# ------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("method", METHODS)
def test_training_gradient_equals_backpropagation_through_the_sequential_rollout(method):
    step, steps = sinenet((16,), history=2, seed=3), 7
    g = torch.Generator().manual_seed(2)
    start = torch.randn(2, 2, 1, 16, generator=g, dtype=torch.float64)
    target = torch.randn(2, steps, 1, 16, generator=g, dtype=torch.float64)

    def gradients(frames_of):
        step.zero_grad()
        s = start.clone().requires_grad_(True)
        loss = ((frames_of(s) - target) ** 2).mean()
        loss.backward()
        return [p.grad.clone() for p in step.parameters()] + [s.grad]

    ex = ParallelRollout(ExecutorOptions(method=method, tol=1e-12))
    seq = gradients(lambda s: rollout(step, s, steps))
    par = gradients(lambda s: ex.unroll(step, s, steps)[0])
    for a, b in zip(seq, par, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-10 * float(a.abs().max()))
    report = ex.reports[-1]
    assert report.adjoint_residuals[-1] <= 1e-12 and report.adjoint_iterations <= steps + 1
    if method == "newton":  # the adjoint is linear: one scan with the Jacobians of the last iterate, one check
        assert report.adjoint_iterations <= 2


def test_rollout_training_task_with_an_executor_equals_the_sequential_task():
    frames = torch.randn(3, 9, 1, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    grid = Grid((GridAxis("x", 0.0, 1.0, 16, True),), GridAxis("t", 0.0, 0.8, 9))
    data = Trajectories(frames, grid, ("u",), (0, 1, 2))
    common = dict(history=2, width=4, waves=2, channel_mults=(1, 2), batch_size=3, train_unroll=5)
    results = {}
    for method in ("sequential", "newton", "picard"):
        settings = SineNetSettings(**common, unroll_executor={"method": method, "tol": 1e-12})
        model = sinenet((16,), 2, seed=5)
        torch.manual_seed(6)  # the windows' generator
        task = SineNetRolloutTask(model, data, settings, torch.device("cpu"), torch.float64, lambda: {})
        task.before_step(0)
        loss, terms = task.loss()
        loss.backward()
        results[method] = (float(loss.detach()), [p.grad.clone() for p in model.parameters()], terms)
    base_loss, base_grads, _ = results["sequential"]
    for method in ("newton", "picard"):
        value, grads, terms = results[method]
        assert value == pytest.approx(base_loss, rel=1e-10)
        assert terms["executor_iterations"] <= 5
        for a, b in zip(base_grads, grads, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-10 * float(a.abs().max()))
    # bptt cuts the sequential unroll: refused with the executor named
    settings = SineNetSettings(**common, unroll_executor={"method": "picard"})
    task = SineNetRolloutTask(sinenet((16,), 2), data, settings, torch.device("cpu"), torch.float64, lambda: {})
    with pytest.raises(RuleMismatch, match="needs rollout.*unroll_executor 'picard'"):
        check_rule(make_optimizer("bptt", {}, 10), task)


# --------------------------------------------------------------------------------------- refusals
def test_refusals_name_what_is_wrong():
    ex = ParallelRollout(ExecutorOptions(method="newton", max_jacobian_mb=64))
    start = torch.zeros(1, 2, 1, 64, 64)
    with pytest.raises(UserError, match=r"newton: dense Jacobians of 1 rollouts x 64 steps of a state of 2 x 4096 numbers need "
                                        r"32,768 MiB, above max_jacobian_mb = 64; use method quasi_newton"):
        ex.rollout(lambda w: w[:, -1], start, 64)
    with pytest.raises(UserError, match="several frames runs with the sequential executor"):
        ParallelRollout(ExecutorOptions(method="picard")).rollout(lambda w: w, torch.zeros(1, 2, 1, 8), 4)
    with pytest.raises(ValueError, match="unroll_executor 'newton' needs train_unroll > 1"):
        SineNetSettings(unroll_executor={"method": "newton"})
    with pytest.raises(ValueError, match="tol"):
        ExecutorOptions(method="picard", tol=0)
    with pytest.raises(ValueError, match="extra"):
        ExecutorOptions(method="picard", tolerance=1e-3)


# ----------------------------------------------------------------------------------- command line
def test_cli_train_with_a_parallel_window_and_roll_out_with_each_executor(tmp_path, capsys):
    data, run_dir = tmp_path / "ad2d.h5", tmp_path / "run"
    assert main(["-q", "simulate", str(AD2D), "--out", str(data), "--n", "4", "--resolution", "8", "--steps", "6",
                 "--set", "simulate.initial.length_scale=1.5", "--set", "params.amplitude=0"]) == 0
    tiny = ["params.amplitude=0", "solvers.sinenet.width=4", "solvers.sinenet.waves=2", "solvers.sinenet.history=1",
            "solvers.sinenet.channel_mults=[1, 2]", "solvers.sinenet.batch_size=2", "solvers.sinenet.rollout_steps=4",
            "solvers.sinenet.split=[0.5, 0.25, 0.25]", "solvers.sinenet.train_unroll=3",
            "solvers.sinenet.unroll_executor={method: newton, tol: 1.0e-6}"]
    args = ["-q", "train", str(AD2D), "--data", str(data), "--steps", "2", "--out", str(run_dir), "--device", "cpu",
            "--set", "train.optimizer.name=adam"]
    for item in tiny:
        args += ["--set", item]
    assert main(args) == 0
    history = (run_dir / "history.csv").read_text()
    assert "executor_iterations" in history.splitlines()[0]
    base = ["-q", "rollout", str(run_dir), "--data", str(data), "--split", "test", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "seq")]) == 0
    seq = json.loads((tmp_path / "seq" / "metrics.json").read_text())
    capsys.readouterr()
    for method in METHODS:
        out = tmp_path / method
        assert main([*base, "--executor", method, "--executor-tol", "1e-6", "--out", str(out)]) == 0
        assert f"executor {method}: iterations" in capsys.readouterr().out
        m = json.loads((out / "metrics.json").read_text())
        assert m["executor"]["method"] == method and m["executor"]["converged"]
        assert all(i <= 4 for i in m["executor"]["iterations"])
        assert m["rollout_rel_l2"] == pytest.approx(seq["rollout_rel_l2"], rel=1e-4)  # float32 stepper, tol 1e-6
    assert main([*base, "--executor", "picard", "--executor-tol", "-1"]) == 2
    assert "--executor-tol: Input should be greater than 0" in capsys.readouterr().err
    assert main([*base, "--executor", "newton", "--executor-max-jacobian-mb", "1e-3"]) == 2
    assert "above max_jacobian_mb" in capsys.readouterr().err
