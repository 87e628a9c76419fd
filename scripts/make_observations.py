"""Noisy observations of a forward run, to try an inverse problem (docs/inverse.md).

    python scripts/make_observations.py problems/heat.yaml --points 200 --noise 0.01 --out obs.csv

Solves the problem file's reference (its ``reference:``; for an inverse problem with ``params.NAME.true``, with the true
values) on a fine grid, draws ``--points`` points uniformly in the domain (seeded), interpolates the fields there
(cubic, on the fine grid: far below the noise) and adds Gaussian noise of standard deviation ``noise * std(field)``
(the convention of Raissi et al. 2019: ``--noise 0.01`` is 1 % noise). Writes a table (CSV with a header, HDF5 or npz by
the suffix) with one column per coordinate and per field, and prints the ``data:`` block to paste into a problem file.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from pdesolve.config import load_run_config, read_yaml
from pdesolve.datafiles import write_columns
from pdesolve.errors import UserError
from pdesolve.reference import ReferenceError, reference_solution


def observations(path: str, points: int, noise: float, seed: int, fine: int = 201) -> tuple[dict[str, np.ndarray], float]:
    """The columns of the observation table and the noise's standard deviation."""
    raw = read_yaml(path)
    raw.pop("data", None)  # the observations this makes may not exist yet
    for name, spec in (raw.get("params") or {}).items():  # an inverse problem's forward run: its true values
        if isinstance(spec, dict) and spec.get("unknown"):
            true = spec.get("true_value", spec.get(True))
            if true is None:
                raise UserError(f"{path}: params.{name} is unknown and has no true_value to make observations with")
            raw["params"][name] = true
    problem = load_run_config(path, data=raw).problem
    if problem.reference is None:
        raise UserError(f"{path}: no reference to draw observations from; add reference: (e.g. simulator)")
    grid = problem.domain.grid({n: fine for n in problem.domain.names})
    values = reference_solution(problem, grid)  # [time, channel, *space] (or [channel, *space])
    lead = 1 if grid.time is not None else 0
    rng = np.random.default_rng(seed)
    bounds = problem.domain.bounds
    pts = np.stack([rng.uniform(*bounds[n], points) for n in grid.names], axis=1)  # [points, d]
    columns = {n: pts[:, i] for i, n in enumerate(grid.names)}
    sigma = 0.0
    for c, f in enumerate(problem.equation.fields):
        field = np.take(values, c, axis=lead)  # on the grid's axes, time first
        exact = RegularGridInterpolator([a.coords for a in grid.axes], field, method="cubic")(pts)
        sigma = noise * float(field.std())
        columns[f] = exact + sigma * rng.standard_normal(points)
    return columns, sigma


def _coordinates(path: str) -> set[str]:
    raw = read_yaml(path)
    return set(raw.get("domain") or {})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("problem", help="a problem file with a reference (or an inverse one with true values)")
    p.add_argument("--points", type=int, default=200)
    p.add_argument("--noise", type=float, default=0.01, help="noise standard deviation relative to the field's std")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="observation table: .csv, .h5 or .npz")
    args = p.parse_args(argv)
    try:
        columns, sigma = observations(args.problem, args.points, args.noise, args.seed)
    except (UserError, ReferenceError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_columns(args.out, columns)
    fields = [k for k in columns if k not in _coordinates(args.problem)]
    print(f"wrote {args.points} observations to {args.out}\ndata: {{file: {args.out}, fields: {fields}, noise: {sigma:.3g}}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
