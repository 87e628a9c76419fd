"""The problem's initial-condition family: datasets, online simulations and the hc family draw what they drew
before it replaced their own draws; a member depends only on (seed, stream, index); it simulates its members."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from online_training.simulation import TRAIN, VALIDATION, SimulationPlan
from pdesolve.config import load_run_config
from pdesolve.errors import UserError
from pdesolve.simulate import simulate
from pdesolve.simulate.dataset import generate_dataset
from pdesolve.simulate.family import InitialConditionFamily
from pdesolve.simulate.settings import SimulateSettings
from pdesolve.solvers.hc.family import STREAM, ICFamily
from pdesolve.solvers.hc.options import FamilyOptions

PROBLEMS = Path(__file__).resolve().parents[1] / "problems"
WALLS = ["boundary.x.hi", "boundary.x.lo", "boundary.y.hi", "boundary.y.lo"]
HEAT2D = {"trajectories": 4, "resolution": 8, "steps": 2, "sampler": "lhs",
          "parameters": {name: [100, 500] for name in ["initial.u", *WALLS]}}
KDV_SINE = {"trajectories": 4, "resolution": 16, "steps": 2, "initial": {"kind": "sine_sum", "modes": 2, "k_max": 3},
            "parameters": {"delta": [0.001, 0.004]}, "sampler": "sobol"}
KDV_GRF = {"trajectories": 4, "resolution": 16, "steps": 2, "initial": {"kind": "grf", "length_scale": 0.3}}

# The numbers below were drawn by the code paths the family replaced, at commit 5f8b4c6 (printed with repr):
# pdesolve.simulate.dataset._design / _initial (seed 7), online_training.simulation.SimulationPlan.design /
# .initial (seed 5), and pdesolve.solvers.hc_family.ICFamily (seed 4), with the settings above.


def problem(name: str):
    return load_run_config(PROBLEMS / f"{name}.yaml").problem


def settings(spec: dict) -> SimulateSettings:
    return SimulateSettings.model_validate(spec)


def test_datasets_draw_what_they_drew_before(tmp_path):
    """Parameters from [seed, 0x50415241], trajectory i's initial state from [seed, i]: the file's params and first frames."""
    cases = [
        ("heat2d", HEAT2D, {"initial.u": [456.9721756914734, 105.74564724039864, 257.43281494949474, 349.6529567142395],
                            "boundary.x.lo": [492.32030316697626, 218.51071146695716, 164.29579675246868, 385.2067493432172]},
         [105.74564724039864] * 3, 349.6529567142395),
        ("kdv", KDV_SINE, {"delta": [0.0023815170824527743, 0.003238487193360925, 0.0032754689464345576, 0.0011030734619125724]},
         [0.1728776309458231, -0.03739419440778441, -0.20149790827881983], -0.01292234180442356),
        ("kdv", KDV_GRF, {}, [-0.608156148284873, -0.9286038344641692, -0.6790167104046476], -0.31565904374420617),
    ]
    for j, (name, spec, params, first, last) in enumerate(cases):
        path = tmp_path / f"{j}.h5"
        generate_dataset(path, problem(name), settings({**spec, "batch_size": 3}), problem_text=name, seed=7, quiet=True)
        with h5py.File(path, "r") as f:
            for key, values in params.items():
                assert f["params"][key][...].tolist() == values, (name, key)
            u0 = f["u"][:, 0]  # the initial states, float32
        if name == "heat2d":  # inside the walls (the saved first frame holds the wall temperatures on the walls)
            u0 = u0[..., 1:-1, 1:-1]
        assert u0[1, 0].ravel()[:3].tolist() == np.float32(first).tolist() and u0[3, 0].ravel()[-1] == np.float32(last), name


def test_online_simulations_draw_what_they_drew_before():
    """Stream s: the design from [seed, s], simulation i's initial state from [seed, s, i]."""
    heat = SimulationPlan(problem("heat2d"), settings(HEAT2D), 5)
    assert heat.names == ("boundary.x.hi", "boundary.x.lo", "boundary.y.hi", "boundary.y.lo", "initial.u")
    train, val = heat.design(4), heat.design(3, VALIDATION, "random")
    assert train[2].tolist() == [456.95437432489143, 254.74663809580727, 305.4675677187189, 165.22044377972608, 225.0669947578889]
    assert val[1].tolist() == [265.11900360301104, 373.33568358312897, 225.86150116820738, 434.0119770250318, 460.87440977419544]
    assert np.all(heat.initial(2, train[2]) == 225.0669947578889)
    kdv = SimulationPlan(problem("kdv"), settings(KDV_SINE), 5)
    train, val = kdv.design(4), kdv.design(3, VALIDATION, "random")
    assert train[:, 0].tolist() == [0.0026433385070413354, 0.002279533742927015, 0.0010137140788137912, 0.003627885148860514]
    assert val[:, 0].tolist() == [0.001666831180893343, 0.0032192985257078846, 0.0013075614242809507]
    assert kdv.initial(2, train[2])[0, :3].tolist() == [-0.5359862887269823, -0.6303048092701067, -0.12261063504005854]
    assert kdv.initial(1, val[1], VALIDATION)[0, :3].tolist() == [-0.6936779773528826, -1.2652979213216597, -1.1559779452502614]
    grf = SimulationPlan(problem("kdv"), settings(KDV_GRF), 5)
    assert grf.design(4).shape == (4, 0)
    assert grf.initial(2, np.zeros(0), TRAIN)[0, :3].tolist() == [1.6593624840651278, 1.1198550757009167, 0.40639569789224644]
    assert grf.initial(1, np.zeros(0), VALIDATION)[0, :3].tolist() == [-0.6029222338153455, -0.5520866605509553, -0.5712633820765682]
    whole = grf.family.states(np.arange(3), grf.grid, {}, VALIDATION)  # what trajectories() starts from
    np.testing.assert_array_equal(whole[1], grf.initial(1, np.zeros(0), VALIDATION))


def test_hc_family_draws_what_it_drew_before():
    """Constants from one design of [seed, 0x46414D]; random fields (since this family) per member from [seed, 0x46414D, i]."""
    options = FamilyOptions(train=3, test=2, parameters={"initial.u": [0, 0.2]}, seed=4, sampler="lhs")
    family = ICFamily(problem("diffusion_sorption"), options)
    assert family.values[:, 0].tolist() == [0.03204364472217635, 0.18634256215548817, 0.132528421512149, 0.09475635516488133,
                                            0.07660610807503448]
    assert np.ptp(family.values, axis=1).max() == 0
    grf = ICFamily(problem("heat"), FamilyOptions(train=3, test=2, initial={"kind": "grf", "length_scale": 0.2}, resolution=33, seed=4))
    for i in range(5):
        np.testing.assert_array_equal(grf.values[i], grf.draws.state(i, grf.grid, {}, STREAM)[0])


def test_a_member_depends_only_on_seed_stream_and_index():
    family = InitialConditionFamily.from_settings(problem("kdv"), settings(KDV_SINE), seed=3)
    grid = problem("kdv").domain.grid({"x": 16, "t": 3})
    design = family.design(6, stream=11)
    all_six = family.states(np.arange(6), grid, design, stream=11)
    np.testing.assert_array_equal(family.states([4, 1], grid, design, stream=11), all_six[[4, 1]])
    few = family.states(np.arange(2), grid, family.design(2, stream=11), stream=11)
    np.testing.assert_array_equal(few, all_six[:2])  # the states do not depend on how many members are drawn
    assert not np.array_equal(family.states([1], grid, design, stream=12), all_six[[1]])
    assert family.state_generator(4).random() == np.random.default_rng([3, 4]).random()  # no stream: [seed, i]
    assert family.state_generator(4, 11).random() == np.random.default_rng([3, 11, 4]).random()
    assert family.design_generator().random() == np.random.default_rng([3, 0x50415241]).random()
    assert family.simulation_parameters(design, [0, 5])["delta"].tolist() == design["delta"][[0, 5]].tolist()


def test_simulate_runs_each_member_from_its_own_state_and_parameters():
    family = InitialConditionFamily.from_settings(problem("heat2d"), settings(HEAT2D), seed=2)
    grid = problem("heat2d").domain.grid({"x": 8, "y": 8, "t": 3})
    sol = family.simulate(3, grid, stream=9)
    assert sol.numpy().shape == (3, 3, 1, 8, 8)
    design = family.design(3, stream=9)
    row = {k: v[1] for k, v in design.items()}
    alone = simulate(family.problem, grid, u0=torch.as_tensor(family.state(1, grid, row, 9)),
                     params={k: v for k, v in row.items() if not k.startswith("initial.")})
    np.testing.assert_allclose(sol.numpy()[1], alone.numpy()[0], rtol=1e-12, atol=1e-9)
    assert np.all(sol.numpy()[1, 0, 0, 3:5, 3:5] == design["initial.u"][1])


def test_settings_seed_and_names():
    heat = problem("heat2d")
    assert InitialConditionFamily.from_settings(heat, settings(HEAT2D), seed=3).seed == 3
    assert InitialConditionFamily.from_settings(heat, settings({**HEAT2D, "seed": 8}), seed=3).seed == 8  # the section's own wins
    family = InitialConditionFamily.from_settings(heat, settings(HEAT2D), seed=3)
    assert family.names == ("boundary.x.hi", "boundary.x.lo", "boundary.y.hi", "boundary.y.lo", "initial.u")
    with pytest.raises(UserError, match=r"unknown names \['boundary.z.lo', 'mu'\]"):
        replace(family, parameters={**family.parameters, "mu": family.parameters["initial.u"],
                                    "boundary.z.lo": family.parameters["initial.u"]})
