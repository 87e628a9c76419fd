"""`pdesolve validate` tells the truth: it refuses exactly what `pdesolve solve` refuses before training.

The audit runs validate, then solve for one step, on every shipped problem file (and on a few problems with every
point back-end) and on deliberately broken files, and checks that the verdicts agree: validate says ok if and only
if solve starts training (a run folder appears). Each refusal is one message, exit status 2, and leaves no folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from pdesolve import runner
from pdesolve.cli import main
from pdesolve.config import ConfigError, apply_overrides, load_run_config, read_yaml

ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = sorted((ROOT / "problems").glob("*.yaml"))
torch.set_num_threads(1)


def _cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text, text
    return code, text


def _tiny(path: Path) -> list[str]:
    """One training step and an evaluation grid of a few points per axis (the verdict does not depend on them)."""
    try:
        names = load_run_config(path).problem.domain.names  # a geometry's axes are x, y, z: not keys of the file
    except ConfigError:  # a broken file: its domain's keys
        names = tuple(read_yaml(path)["domain"])
    return ["--steps", "1", "--threads", "1", *(a for n in names for a in ("--set", f"evaluate.grid.{n}={3 if n == 't' else 8}"))]


@pytest.fixture(autouse=True)
def _no_figures(monkeypatch):
    """The verdicts are reached before training; the figures of a one-step run only cost time."""
    monkeypatch.setattr(runner.Result, "plot", lambda self, folder=None: [])


def _verdicts(capsys, tmp_path: Path, path: Path, solver: str | None = None) -> tuple[int, str, int, str, bool]:
    chosen = ["--solver", solver] if solver else []
    v_code, v_text = _cli(capsys, "validate", str(path), *chosen)
    out = tmp_path / f"run-{path.stem}-{solver}"
    s_code, s_text = _cli(capsys, "-q", "solve", str(path), *chosen, *_tiny(path), "--out", str(out))
    return v_code, v_text, s_code, s_text, out.exists()


@pytest.mark.parametrize("path", PROBLEMS, ids=lambda p: p.stem)
def test_validate_agrees_with_solve_on_every_shipped_file(capsys, tmp_path, path):
    data = read_yaml(path)
    if "online" in data:  # an online-training study: recognised by its section, checked by the online trainer's loader
        code, text = _cli(capsys, "validate", str(path))
        assert code == 0 and "ok (online-training study)" in text
        return
    v_code, v_text, s_code, s_text, started = _verdicts(capsys, tmp_path, path)
    assert v_code == 0, v_text  # every shipped file validates ...
    if data.get("solver") == "sinenet":  # ... and solves, except a grid solver that trains on a dataset
        assert s_code == 2 and "pdesolve train" in s_text and not started
        return
    assert started and s_code in (0, 1), s_text  # training started (1: it ended without converging, after one step)


MATRIX = [("advection_diffusion2d", "hc"), ("advection_diffusion2d", "moe_hc"), ("advection_diffusion2d", "lpinn"),
          ("heat", "lpinn"), ("heat", "hc"), ("heat", "hyper_pinn"), ("kdv", "hc"), ("kdv", "lpinn"),
          ("convection_parametric", "pinn"), ("burgers", "lpinn"), ("ns2d", "pinn")]


@pytest.mark.parametrize(("name", "solver"), MATRIX, ids=[f"{p}-{s}" for p, s in MATRIX])
def test_validate_agrees_with_solve_for_other_back_ends(capsys, tmp_path, name, solver):
    v_code, v_text, s_code, s_text, started = _verdicts(capsys, tmp_path, ROOT / "problems" / f"{name}.yaml", solver)
    assert v_code in (0, 2) and s_code in (0, 1, 2)
    assert (v_code == 0) == started, (v_text, s_text)
    if v_code == 2:  # refused by both, with the same messages
        assert s_code == 2
        messages = [line.removeprefix("  - ") for line in v_text.splitlines() if line.startswith("  - ")]
        assert messages and all(m in s_text for m in messages), (v_text, s_text)


HEAT = """name: h
equation: heat
params: {nu: 0.1}
domain: {x: [0, 1], t: [0, 0.5]}
initial: {u: sin(pi*x)}
boundary:
  - {kind: dirichlet, axis: x, side: both, value: 0}
reference: spectral
evaluate: {grid: {t: 3, x: 9}}
"""
POLAR = """name: p
equation: heat
params: {nu: 0.1}
domain: {r: [0, 1], t: [0, 0.5]}
initial: {u: sin(pi*r)}
boundary:
  - {kind: dirichlet, axis: r, side: both, value: 0}
evaluate: {grid: {t: 3, r: 9}}
"""
STEADY = """name: s
equation: poisson
domain: {x: [0, 1], y: [0, 1]}
source: 2*pi**2*sin(pi*x)*sin(pi*y)
boundary:
  - {kind: dirichlet, axis: x, side: both, value: 0}
  - {kind: dirichlet, axis: y, side: both, value: 0}
reference: {kind: exact, options: {u: sin(pi*x)*sin(pi*y)}}
evaluate: {grid: {x: 9, y: 9}}
"""

BROKEN = {  # name -> (file text, the key path the one message starts with, a phrase of it)
    "no_time_axis": (HEAT.replace("x: [0, 1], t: [0, 0.5]", "x: [0, 1]").replace("t: 3, x: 9", "x: 9"),
                     "domain:", "evolves in time"),
    "no_boundary": (HEAT.replace("boundary:\n  - {kind: dirichlet, axis: x, side: both, value: 0}\n", ""),
                    "boundary:", "x = 0 (lo) and x = 1 (hi)"),
    "one_wall_for_diffusion": (HEAT.replace("side: both", "side: lo"), "boundary:", "no condition at x = 1 (hi)"),
    "polar_axis": (POLAR, "domain.r:", "axes are Cartesian"),
    "source_with_spectral_reference": (HEAT + "source: sin(pi*x)\n", "reference:", "without a source term"),
    "reference_of_another_equation": (HEAT.replace("reference: spectral", "reference: cole_hopf"), "reference:",
                                      "is for the Burgers equation"),
    "unknown_simulator": (HEAT.replace("reference: spectral", "reference: {kind: simulator, options: {simulator: nope}}"),
                          "reference:", "unknown simulator 'nope'"),
    "curriculum_of_a_missing_parameter": (HEAT + "solvers: {pinn: {curriculum: {parameter: beta, start: 1.0, steps: 10}}}\n",
                                          "solvers.pinn.curriculum.parameter:", "not a parameter of the 'heat' equation"),
    "solver_without_characteristics": (HEAT + "solver: lpinn\n", "solver:", "no transport term"),
    "rule_the_task_cannot_feed": (HEAT + "solver: hc\ntrain: {optimizer: {name: auglocal}}\n", "train.optimizer:",
                                  "needs blocks, inputs, targets"),
    "basis_wider_than_its_layer": (HEAT + "solver: hc\nsolvers: {hc: {basis: 500, width: 20}}\n", "solvers.hc:",
                                   "expected basis <= width"),
    "hc_causal_on_a_steady_problem": (STEADY + "solver: hc\nsolvers: {hc: {causal: {chunks: 4}}}\n", "solvers.hc.causal",
                                      "the problem has no time axis"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_refusal_is_one_message_exit_2_and_no_run_folder(capsys, tmp_path, name):
    text, key, phrase = BROKEN[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    v_code, v_text, s_code, s_text, started = _verdicts(capsys, tmp_path, path)
    assert v_code == 2 and s_code == 2 and not started, (v_text, s_text)
    assert "1 error(s)" in v_text and f"  - {key} " in v_text and phrase in v_text, v_text
    assert s_text.startswith("error: ") and f"  - {key} " in s_text and phrase in s_text, s_text


def test_every_mistake_is_reported_at_once(capsys, tmp_path):
    path = tmp_path / "two.yaml"  # two mistakes of the problem itself
    path.write_text(POLAR.replace("boundary:\n  - {kind: dirichlet, axis: r, side: both, value: 0}\n", ""))
    code, text = _cli(capsys, "validate", str(path))
    assert code == 2 and "2 error(s)" in text and "axes are Cartesian" in text and "has no condition" in text


def test_validate_checks_the_solver_asked_for(capsys):
    code, text = _cli(capsys, "validate", "problems/heat.yaml", "--solver", "lpinn")
    assert code == 2 and "no transport term" in text
    code, text = _cli(capsys, "validate", "problems/heat.yaml", "--solver", "hc")
    assert code == 0 and ": ok" in text
    code, text = _cli(capsys, "validate", "problems/heat.yaml", "--solver", "nope")
    assert code == 2 and "unknown solver 'nope'" in text


def test_an_online_study_is_checked_by_the_online_trainer(capsys, tmp_path):
    study = yaml.safe_load((ROOT / "problems" / "heat2d_online.yaml").read_text())
    study["problem"] = str(ROOT / "problems" / "heat2d.yaml")
    study["online"]["servers"] = 0
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    code, text = _cli(capsys, "validate", str(path))
    assert code == 2 and "online.servers" in text and "equation: missing required key" not in text
    code, text = _cli(capsys, "validate", "problems/heat2d_online.yaml", "--solver", "pinn")
    assert code == 2 and "online-training study" in text


# ----------------------------------------------------------------------------- --set on list items, --version
def test_set_reaches_list_items():
    data = {"boundary": [{"kind": "dirichlet", "value": 0}], "solvers": {"pinn": {"causal": {"tolerances": [1.0, 0.1]}}}}
    out = apply_overrides(data, ["boundary.0.value=1", "solvers.pinn.causal.tolerances.1=0.01", "solvers.hc.width=8"])
    assert out["boundary"][0]["value"] == 1 and out["solvers"]["pinn"]["causal"]["tolerances"] == [1.0, 0.01]
    assert out["solvers"]["hc"] == {"width": 8} and data["boundary"][0]["value"] == 0  # a copy; missing mappings are made
    cfg = load_run_config(ROOT / "problems" / "burgers.yaml", ["boundary.0.value=0.5"])
    assert {bc.value.value() for bc in cfg.problem.boundary} == {0.5}


@pytest.mark.parametrize(("override", "message"), [
    ("boundary.1.value=1", "boundary is a list of 1 item(s); expected an index from 0 to 0, got '1'"),
    ("boundary.x.value=1", "boundary is a list of 1 item(s); expected an index from 0 to 0, got 'x'"),
    ("train.steps.x=1", "train.steps is a value (8000), not a mapping or a list"),
])
def test_set_names_a_bad_index(capsys, override, message):
    code, text = _cli(capsys, "validate", "problems/burgers.yaml", "--set", override)
    assert code == 2 and f"--set {override.split('=')[0]}: {message}" in text, text
    code, text = _cli(capsys, "solve", "problems/burgers.yaml", "--set", override)
    assert code == 2 and message in text


def test_version(capsys):
    from pdesolve import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"pdesolve {__version__}"


def test_a_geometry_needs_conditions_on_its_parts_not_its_box_walls(capsys, tmp_path):
    """On a region beyond a box the conditions are per named boundary part (pdesolve/geometry.py), not per box wall: a
    part left without one is one message, from validate and from solve alike."""
    text = (ROOT / "problems" / "poisson_disk_hole.yaml").read_text()
    assert "part: hole" in text
    path = tmp_path / "no_hole_condition.yaml"
    path.write_text("\n".join(line for line in text.splitlines() if "part: hole" not in line) + "\n")
    for command in ("validate", "solve"):
        code, out = _cli(capsys, command, str(path), *([] if command == "validate" else ["--steps", "1", "--out", str(tmp_path / "run")]))
        assert code == 2 and "1 error(s)" in out and out.count("part 'hole'") == 1, out
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides, warned", [
    (["solvers.pinn.points.resample_every=5"], "points.resample_every: 5 changes the collocation points while L-BFGS runs"),
    (["solvers.pinn.rar.every=50"], "rar.every: 50 changes the collocation points while L-BFGS runs"),
    (["solvers.pinn.points.resample_every=5", "train.optimizer={name: adam}"], None),  # no L-BFGS: nothing to say
])
def test_points_that_change_under_lbfgs_are_warned_not_refused(capsys, overrides, warned):
    sets = [a for o in overrides for a in ("--set", o)]
    code = main(["validate", str(ROOT / "problems" / "burgers.yaml"), *sets])
    printed = capsys.readouterr()
    assert code == 0 and "ok" in printed.out
    if warned:
        assert f"warning: solvers.pinn.{warned}" in printed.err
    else:
        assert "warning" not in printed.err
