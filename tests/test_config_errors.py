"""Bad input: each mistake gives one clear message naming the file and the key path."""

from pathlib import Path

import pytest
import yaml

from pdesolve.config import ConfigError, load_run_config

BASE = {
    "name": "burgers",
    "equation": "burgers",
    "params": {"nu": "0.01/pi"},
    "domain": {"x": [-1, 1], "t": [0, 1]},
    "initial": {"u": "-sin(pi*x)"},
    "boundary": [{"kind": "dirichlet", "axis": "x", "side": "both", "value": 0}],
    "reference": "cole_hopf",
}


def _errors(tmp_path, **changes):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for key, value in changes.items():
        node = data
        parts = key.split("__")
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if value is KeyError:
            del node[parts[-1]]
        else:
            node[parts[-1]] = value
    path = tmp_path / "problem.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_run_config(path)
    assert str(path) in str(err.value)
    return err.value.errors


def test_the_base_file_is_valid(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert load_run_config(path).problem.coefficients["nu"] > 0


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"refrence": "cole_hopf"}, "refrence: unknown key 'refrence' (did you mean 'reference'?)"),
        ({"train": {"stpes": 3}}, "train.stpes: unknown key 'stpes' (did you mean 'steps'?)"),
        ({"train": {"steps": "many"}}, "train.steps: Input should be a valid integer"),
        ({"name": KeyError}, "name: missing required key"),
        ({"equation": "burger"}, "equation: unknown equation 'burger'; valid equations are"),
        ({"solver": "pinnn"}, "(did you mean 'pinn'?)"),
        ({"train": {"optimizer": {"name": "adamm"}}}, "train.optimizer.name: unknown optimizer 'adamm'; valid optimizers are"),
        ({"train": {"optimizer": {"name": "adam", "lr": -1}}}, "train.optimizer.lr: Input should be greater than 0"),
        ({"domain": {"x": [1, -1], "t": [0, 1]}}, "domain.x: expected lo < hi, got [1.0, -1.0]"),
        ({"params": {"nu": -0.1}}, "params.nu: expected a value >= 0.0"),
        ({"params": {"nu": 0.1, "mu": 1}}, "params.mu: unknown parameter of 'burgers'"),
        ({"initial": {"u": "__import__('os').system('x')"}}, "initial.u: in \"__import__('os').system('x')\": function"),
        ({"initial": {"u": "x.real"}}, "initial.u: in 'x.real': Attribute"),
        ({"initial": {"u": "sin(q*x)"}}, "initial.u: in 'sin(q*x)': unknown name 'q'"),
        ({"initial": {"u": "sin(x"}}, "initial.u: cannot parse"),
        ({"boundary__0__axis": "y"}, "boundary[0].axis: no space axis 'y'"),
        ({"solvers": {"pinn": {"widht": 3}}}, "solvers.pinn.widht: unknown key 'widht' (did you mean 'width'?)"),
        ({"evaluate": {"grid": {"x": 10}}}, "evaluate.grid: expected point counts for exactly ['t', 'x']"),
        ({"solvers": {"hc": {"train": {"stpes": 3}}}}, "solvers.hc.train.stpes: unknown key 'stpes' (did you mean 'steps'?)"),
        ({"solvers": {"hc": {"train": {"optimizer": {"name": "adam", "lr": -1}}}}}, "solvers.hc.train.optimizer.lr: Input should be"),
        ({"solver": "hc", "solvers": {"hc": {"train": 300}}}, "solvers.hc.train: expected a mapping of train keys"),
    ],
)
def test_each_mistake_is_named(tmp_path, changes, expected):
    errors = _errors(tmp_path, **changes)
    assert any(expected in e for e in errors), errors


def test_every_error_is_reported_at_once(tmp_path):
    errors = _errors(tmp_path, equation="burger", solver="nope", train={"optimizer": {"name": "x"}})
    assert len(errors) == 3


def test_a_solver_section_may_carry_its_own_train_settings(tmp_path):
    """The chosen solver's `train:` keys replace the file's; --set / API train settings outrank both."""
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["train"] = {"steps": 5000, "optimizer": {"name": "adam_lbfgs", "adam_steps": 1000}, "log_every": 7}
    data["solvers"] = {"hc": {"basis": 8, "width": 16, "train": {"steps": 300, "optimizer": {"name": "adam", "lr": 3.0e-3}}}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    pinn = load_run_config(path)
    assert pinn.train.steps == 5000 and pinn.train.optimizer.name == "adam_lbfgs"
    hc = load_run_config(path, ["solver=hc"])
    assert (hc.train.steps, hc.train.optimizer.name, hc.train.log_every) == (300, "adam", 7)
    assert hc.optimizer_options.lr == 3.0e-3 and "train" not in hc.raw["solvers"]["hc"]
    assert load_run_config(path, ["solver=hc", "train.steps=9"]).train.steps == 9
    again = tmp_path / "again.yaml"  # a run folder's config.yaml reproduces the resolved settings
    again.write_text(yaml.safe_dump(hc.raw))
    assert load_run_config(again).train == hc.train


def test_set_reaches_the_chosen_solvers_own_train_section(tmp_path):
    from pdesolve.config import load_run_config

    heat = Path(__file__).resolve().parents[1] / "problems" / "heat.yaml"
    cfg = load_run_config(heat, ["solver=hc", "solvers.hc.train.optimizer.lr=0.5"])
    assert cfg.optimizer_options.lr == 0.5 and cfg.train.steps == 500  # the section's steps, the override's lr
    cfg = load_run_config(heat, ["solver=hc", "solvers.hc.train.optimizer.lr=0.5", "train.steps=7"])
    assert cfg.train.steps == 7 and cfg.optimizer_options.lr == 0.5
