"""``pdesolve list``: shipped problems, back-ends, training rules, equations, references and simulators."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from ..equations import Parameter


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--problems-dir", default="problems", help="where to look for problem files (default: problems/)")


def parameter_line(par: Parameter) -> str:
    """A parameter's meaning, default and admissible range, for ``pdesolve list``."""
    default = "required" if par.default is None else f"default {par.default:g}"
    bound = "any value" if par.minimum is None else f"{'>' if par.strict else '>='} {par.minimum:g}"
    return f"{par.doc or '(no description)'}; {default}; {bound}"


def run(args: argparse.Namespace) -> int:
    from ..equations import EQUATIONS
    from ..optim import OPTIMIZERS
    from ..reference import REFERENCES
    from ..solvers import SOLVERS

    folder = Path(args.problems_dir)
    print(f"problems ({folder}/):")
    for path in sorted(folder.glob("*.yaml")):
        try:
            desc = (yaml.safe_load(path.read_text()) or {}).get("description", "")
        except yaml.YAMLError:
            desc = "(not valid YAML)"
        print(f"  {path.name:32s} {desc}")
    print("solvers:    " + ", ".join(sorted(SOLVERS)))
    print("optimizers: " + ", ".join(sorted(OPTIMIZERS)))
    print("equations:  (parameters: meaning, admissible values; 'required' where there is no default)")
    for name in sorted(EQUATIONS):
        cls = EQUATIONS[name]
        summary = cls.__doc__.strip().splitlines()[0].replace("``", "") if cls.__doc__ else ""
        print(f"  {name:24s} {summary}")
        for key, par in cls.parameters.items():
            print(f"    {key:12s} {parameter_line(par)}")
    print("  or write your own as expressions: equation: {fields: [u], u_t: \"-u*u_x + nu*u_xx\"} "
          "(or residual: [...]; see docs/equations.md)")
    print("references: " + ", ".join(sorted(REFERENCES)))
    from ..simulate import SIMULATORS

    print("simulators: " + ", ".join(SIMULATORS) + "  (tried in this order; method_of_lines runs any equation's grid form)")
    return 0
