"""``pdesolve list``: shipped problems, back-ends, training rules, equations, references and simulators."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--problems-dir", default="problems", help="where to look for problem files (default: problems/)")


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
    print("equations:  " + ", ".join(sorted(EQUATIONS)))
    print("references: " + ", ".join(sorted(REFERENCES)))
    from ..simulate import SIMULATORS

    print("simulators: " + ", ".join(SIMULATORS) + "  (tried in this order; method_of_lines runs any equation's grid form)")
    return 0
