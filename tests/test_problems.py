"""Every shipped problem file loads, validates, and names a reference that applies to it."""

from pathlib import Path

import pytest

from pdesolve.config import load_run_config, validate_file

PROBLEMS = sorted(p for p in (Path(__file__).resolve().parents[1] / "problems").glob("*.yaml")
                  if not p.stem.endswith("_online"))  # online-training study files, tested in test_online_*
SHIPPED = {
    "burgers", "heat", "heat2d_modes", "convection", "convection_diffusion", "reaction", "reaction_diffusion",
    "ns2d", "heat2d", "advection_diffusion2d", "allen_cahn", "kdv", "kuramoto_sivashinsky", "diffusion_sorption", "burgers_shock_periodic",
    "custom_equation", "coupled_reaction_diffusion",
}


def test_the_problem_folder_holds_the_expected_files():
    names = {p.stem for p in PROBLEMS}
    assert SHIPPED <= names, f"missing problem files: {sorted(SHIPPED - names)}"
    assert len(PROBLEMS) >= len(SHIPPED)


@pytest.mark.parametrize("path", PROBLEMS, ids=[p.stem for p in PROBLEMS])
def test_problem_file_is_valid(path):
    assert validate_file(path) == []
    cfg = load_run_config(path)
    assert cfg.problem.name == path.stem or cfg.problem.name in path.stem
