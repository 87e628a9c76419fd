"""Benchmark: parallel-in-time rollouts (Picard, quasi-Newton, Newton; pdesolve.parallel_time) against the sequential loop.

For each stepper and rollout length T: the iterations each executor needs to reach the tolerance, its batched stepper
calls, its wall time next to the sequential rollout's (interleaved in one process, best of ``--repeats``), and the
largest difference from the sequential frames. The steppers:

- ``burgers1d``: Heun steps of the Burgers equation's own grid form (``equations.burgers.rhs``, pseudo-spectral),
  periodic, ``--burgers-n`` points (128), nu = 0.05, dt = 0.01, history 1;
- ``ns2d``: Heun steps of the Navier-Stokes vorticity grid form (``equations.navier_stokes.rhs``, pseudo-spectral,
  de-aliased) on the shipped ``ns2d`` grid (64 x 64), nu = 1e-3, dt = 0.01, history 1, the problem's initial state;
- ``sinenet1d`` / ``sinenet2d``: SineNet steppers (``solvers.sinenet``) with random weights, history 2: 1D with
  64 points, 2D with the ``ns2d`` network (width 8, channel_mults [1, 2, 2]) on a stated smaller 32 x 32 grid.

    python scripts/bench_parallel_time.py               # docs/bench_parallel_time.json and the table (~10 min, 1 thread)
    python scripts/bench_parallel_time.py --quick       # a smoke run

Dense Newton is refused where the Jacobians exceed ``--max-jacobian-mb`` (1000 MiB): the 2D states (NS2D 64 x 64: 16 GiB
for 64 steps; SineNet 2 x 32 x 32: 2 GiB for 32 steps); the refusal is recorded in the table.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("picard", "quasi_newton", "newton")


def heun(rate: Callable[[torch.Tensor], torch.Tensor], dt: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def step(w: torch.Tensor) -> torch.Tensor:
        u = w[:, -1]
        k1 = rate(u)
        return u + 0.5 * dt * (k1 + rate(u + dt * k1))
    return step


def burgers(n: int) -> tuple[Callable, torch.Tensor]:
    from pdesolve.equations import EQUATIONS
    from pdesolve.grid import Grid, GridAxis

    grid = Grid((GridAxis("x", 0.0, 2 * math.pi, n, True),))
    eq, p = EQUATIONS["burgers"](), {"nu": 0.05}
    x = torch.as_tensor(grid.space[0].coords, dtype=torch.float64)
    start = (torch.sin(x) + 0.5 * torch.cos(2 * x + 1.0))[None, None, None]  # [B, h, C, n]
    return heun(lambda u: eq.rhs(u, grid, p), 0.01), start


def ns2d(n: int) -> tuple[Callable, torch.Tensor]:
    from pdesolve.equations import EQUATIONS
    from pdesolve.grid import Grid, GridAxis

    grid = Grid((GridAxis("x", 0.0, 2 * math.pi, n, True), GridAxis("y", 0.0, 2 * math.pi, n, True)))
    eq, p = EQUATIONS["navier_stokes"](), {"nu": 1e-3, "drag": 0.0, "forcing": 0.0, "forcing_k": 4}
    x = torch.as_tensor(grid.space[0].coords, dtype=torch.float64)[:, None]
    y = torch.as_tensor(grid.space[1].coords, dtype=torch.float64)[None, :]
    w = torch.sin(x) * torch.cos(2 * y) + 0.5 * torch.cos(3 * x + y) - 0.7 * torch.sin(2 * x - 3 * y)
    return heun(lambda u: eq.rhs(u, grid, p), 0.01), w[None, None, None]


def sinenet(shape: tuple[int, ...], mults: tuple[int, ...]) -> tuple[Callable, torch.Tensor]:
    from pdesolve.nn.sinenet import SineNetOptions
    from pdesolve.solvers.sinenet import SineNetStepper

    torch.manual_seed(0)
    periodic = (True,) * len(shape)
    o = SineNetOptions(fields=1, periodic=periodic, history=2, waves=4, width=8, channel_mults=mults)
    model = SineNetStepper(o, 1, periodic).double().eval()  # float64: the tolerance is below float32 rounding
    start = torch.randn(1, 2, 1, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return model, start


def run_case(name: str, step: Callable, start: torch.Tensor, steps: int, args: argparse.Namespace, repeats: int | None = None
             ) -> list[dict[str, Any]]:
    from pdesolve.errors import UserError
    from pdesolve.parallel_time import ExecutorOptions, ParallelRollout
    from pdesolve.rollout import rollout

    rows: dict[str, dict[str, Any]] = {}
    ref = None
    for _ in range(repeats or args.repeats):  # interleaved: every method once per round
        with torch.no_grad():
            t0 = time.perf_counter()
            ref = rollout(step, start, steps)
            seq = time.perf_counter() - t0
        rows.setdefault("sequential", {"wall_s": math.inf, "iterations": None, "evaluations": steps})
        rows["sequential"]["wall_s"] = min(rows["sequential"]["wall_s"], seq)
        for method in METHODS:
            if rows.get(method, {}).get("refused"):
                continue
            ex = ParallelRollout(ExecutorOptions(method=method, tol=args.tol, probes=args.probes,
                                                 max_jacobian_mb=args.max_jacobian_mb))
            t0 = time.perf_counter()
            try:
                out = ex.rollout(step, start, steps)
            except UserError as err:
                rows[method] = {"refused": str(err)}
                continue
            wall = time.perf_counter() - t0
            r = ex.reports[-1]
            row = rows.setdefault(method, {"wall_s": math.inf})
            row.update(wall_s=min(row["wall_s"], wall), iterations=r.iterations, evaluations=r.evaluations,
                       converged=r.converged, residuals=r.residuals,
                       max_diff_vs_sequential=float((out - ref).abs().max() / ref.abs().max()))
    out_rows = []
    for method, row in rows.items():
        row = {"stepper": name, "T": steps, "method": method, "state": list(start.shape[1:]), **row}
        if "wall_s" in row and method != "sequential":
            row["time_vs_sequential"] = row["wall_s"] / rows["sequential"]["wall_s"]
        out_rows.append(row)
        print(format_row(row), flush=True)
    return out_rows


def format_row(r: dict[str, Any]) -> str:
    if "refused" in r:
        return f"| {r['stepper']} | {r['T']} | {r['method']} | refused: {r['refused'][:90]}... | | | | |"
    if r["method"] == "sequential":
        return f"| {r['stepper']} | {r['T']} | sequential | {r['T']} steps | {r['T']} | {r['wall_s']:.3f} | 1 | 0 |"
    return (f"| {r['stepper']} | {r['T']} | {r['method']} | {r['iterations']}{'' if r['converged'] else ' (not converged)'} | "
            f"{r['evaluations']} | {r['wall_s']:.3f} | {r['time_vs_sequential']:.1f} | {r['max_diff_vs_sequential']:.1e} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run (small sizes, T = 16)")
    ap.add_argument("--steps", type=int, nargs="+", default=[64, 256], help="rollout lengths T")
    ap.add_argument("--tol", type=float, default=1e-8, help="executor tolerance (relative residual)")
    ap.add_argument("--probes", type=int, default=1, help="quasi-Newton colours per axis")
    ap.add_argument("--max-jacobian-mb", type=float, default=1000.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--burgers-n", type=int, default=128)
    ap.add_argument("--ns-n", type=int, default=64)
    ap.add_argument("--sinenet-t", type=int, default=32, help="rollout length for the SineNet steppers (costly per call; one round)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_parallel_time.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.steps, args.repeats, args.burgers_n, args.ns_n, args.sinenet_t = [16], 1, 32, 16, 8
        args.out = args.out.with_name(args.out.stem + "_quick.json")
    print("| stepper | T | method | iterations | batched calls | wall s | x sequential | max diff / max |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    warm = torch.zeros(2, 3, dtype=torch.float64)  # torch.func's first call costs seconds: not the executors' time
    torch.func.jvp(torch.sin, (warm,), (warm,))
    torch.func.vmap(torch.func.jacrev(torch.sin))(warm)
    for steps in args.steps:
        rows += run_case("burgers1d", *burgers(args.burgers_n), steps, args)
        rows += run_case("ns2d", *ns2d(args.ns_n), steps, args)
    rows += run_case("sinenet1d", *sinenet((64 if not args.quick else 16,), (1, 2)), args.sinenet_t, args, 1)
    rows += run_case("sinenet2d", *sinenet((32, 32) if not args.quick else (8, 8), (1, 2, 2) if not args.quick else (1, 2)),
                     args.sinenet_t, args, 1)
    from pdesolve.io import write_json

    write_json(args.out, {"machine": {"cpu": platform.processor() or platform.machine(), "python": sys.version.split()[0],
                                      "torch": torch.__version__, "threads": torch.get_num_threads()},
                          "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                          "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
