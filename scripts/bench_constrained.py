"""Benchmark of the constrained least-squares layer (pdesolve.constrained).

1. KKT vs cvxpylayers on one equality-constrained least-squares problem: time of a forward + backward
   pass, their ratio (measured side by side), and how far apart the solutions and gradients are.
2. Cost against the number m of sampled points, one global problem vs K = 2, 4, 8 experts solved as one
   batch (m / K points each), forward + backward:
   - linear KKT with N basis functions per problem (global: N; experts: N each);
   - linear KKT with the same total number of unknowns (global: K N; experts: N each);
   - Levenberg-Marquardt on a Burgers-like residual (10 iterations), Jacobian by forward mode
     (N Jacobian-vector products; backward Hessian by N forward-over-reverse products), by
     PointwiseResidual (structured Jacobian and Hessian), and by reverse mode (m vector-Jacobian
     products, up to --reverse-max-m).
   Each row reports the exponent of time against m fitted over the three largest m, and the speed-up of
   K experts over the global problem at the largest common m.

Usage: python scripts/bench_constrained.py [--quick] [--json runs/bench_constrained.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import torch

from pdesolve.constrained import (
    ConvexLeastSquares,
    LevenbergMarquardt,
    PointwiseResidual,
    reverse_jacobian,
    solve_linear,
    solve_nonlinear,
)

F64 = torch.float64
NU = 0.05


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Least wall time of fn() over repeats, in seconds, after one warm-up call: on a machine shared with
    other jobs the fastest run is the one least disturbed by them."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def forward_backward(solve: Callable[..., torch.Tensor], inputs: list[torch.Tensor], weights: torch.Tensor) -> list[torch.Tensor]:
    """w and the gradients of sum(weights * w) with respect to inputs: one training step of the layer."""
    leaves = [x.detach().requires_grad_() for x in inputs]
    w = solve(*leaves)
    return [w.detach(), *torch.autograd.grad((w * weights).sum(), leaves)]


# ------------------------------------------------------------------------------------ 1: KKT vs cvxpy


def plain_cvxpylayer(m: int, n: int, p: int) -> Callable[..., torch.Tensor]:
    """The same problem as usually handed to cvxpylayers: A [m, N] and b as parameters, default settings
    (diffcp + SCS at its default tolerance, lsqr derivatives), one worker."""
    import cvxpy as cp
    from cvxpylayers.torch import CvxpyLayer

    w = cp.Variable(n)
    A, b, C, d = cp.Parameter((m, n)), cp.Parameter(m), cp.Parameter((p, n)), cp.Parameter(p)
    layer = CvxpyLayer(cp.Problem(cp.Minimize(cp.sum_squares(A @ w - b)), [C @ w == d]), parameters=[A, b, C, d], variables=[w])
    return lambda *x: layer(*x, solver_args={"n_jobs_forward": 1, "n_jobs_backward": 1})[0]


def kkt_vs_cvxpylayers(batch: int, m: int, n: int, p: int, repeats: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(*s, generator=gen, dtype=F64) for s in ((batch, m, n), (batch, m), (batch, p, n), (batch, p))]
    weights = torch.randn(batch, n, generator=gen, dtype=F64)
    start = time.perf_counter()
    layer = ConvexLeastSquares(n, p, 0, tolerance=1e-8)
    build = time.perf_counter() - start
    solvers = {"kkt": lambda *x: solve_linear(*x)[0], "convex": lambda *x: layer(*x)[0], "plain": plain_cvxpylayer(m, n, p)}
    row = {"batch": batch, "m": m, "N": n, "p": p, "convex_build_s": build}
    reference = forward_backward(solvers["kkt"], inputs, weights)
    for name, solve in solvers.items():
        row[f"{name}_s"] = timed(partial(forward_backward, solve, inputs, weights), repeats)
        grads = forward_backward(solve, inputs, weights)
        row[f"{name}_gradient_rel_diff"] = max(
            float((a - b).abs().max() / a.abs().max()) for a, b in zip(reference[1:], grads[1:], strict=True)
        )
        row[f"{name}_solution_rel_diff"] = float((grads[0] - reference[0]).abs().max() / reference[0].abs().max())
    return row


# --------------------------------------------------------------------------------------- 2: scaling


def burgers_residual(w, B, Bx, Bxx, f):
    """u u_x - nu u_xx - f at the points, u = B w; [batch, m]."""
    u, ux, uxx = (torch.einsum("bmn,bn->bm", X, w) for X in (B, Bx, Bxx))
    return u * ux - NU * uxx - f


BURGERS_POINTWISE = PointwiseResidual(lambda f, forcing: f[:, 0] * f[:, 1] - NU * f[:, 2] - forcing)


def fourier_basis(x: torch.Tensor, n: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random smooth features sin(a x + c) and their x-derivatives at x [batch, m]: three [batch, m, N]."""
    a = 1 + 6 * torch.rand(x.shape[0], 1, n, generator=gen, dtype=F64)
    c = 2 * math.pi * torch.rand(x.shape[0], 1, n, generator=gen, dtype=F64)
    phase = a * x[..., None] + c
    return torch.sin(phase), a * torch.cos(phase), -(a**2) * torch.sin(phase)


def problems(m: int, k: int, n: int, nonlinear: bool, samples: int, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """samples x k problems as one batch: [0, 1] split into k intervals (experts), m // k points each,
    n features per expert, 2 constraints each."""
    gen = torch.Generator().manual_seed(seed)
    points, batch = m // k, samples * k
    expert = torch.arange(k, dtype=F64).repeat(samples)[:, None]
    x = (expert + torch.rand(batch, points, generator=gen, dtype=F64)) / k  # [batch, m/k]
    B, Bx, Bxx = fourier_basis(x, n, gen)
    w_true = torch.randn(batch, n, generator=gen, dtype=F64) / n**0.5
    C, d = torch.randn(batch, 2, n, generator=gen, dtype=F64), torch.randn(batch, 2, generator=gen, dtype=F64)
    weights = torch.randn(batch, n, generator=gen, dtype=F64)
    if nonlinear:
        f = burgers_residual(w_true, B, Bx, Bxx, torch.zeros(batch, points, dtype=F64))
        f = f + 0.01 * torch.randn(batch, points, generator=gen, dtype=F64)
        return [B, Bx, Bxx, f, C, d], weights
    A = Bx - NU * Bxx  # a linear advection-diffusion operator applied to the features
    b = torch.einsum("bmn,bn->bm", A, w_true) + 0.01 * torch.randn(batch, points, generator=gen, dtype=F64)
    return [A, b, C, d], weights


def linear_solve(*x):
    return solve_linear(*x, tikhonov=1e-10)[0]


def lm_solve(jacobian: str) -> Callable[..., torch.Tensor]:
    """jacobian: 'forward' (torch.func, default), 'reverse' (torch.func), 'pointwise' (PointwiseResidual)."""
    opts = LevenbergMarquardt(max_iter=10, xtol=0.0, gtol=0.0)  # exactly 10 iterations for every size

    def solve(B, Bx, Bxx, f, C, d):
        w0 = torch.zeros(B.shape[0], B.shape[2], dtype=F64)
        if jacobian == "pointwise":
            res = BURGERS_POINTWISE
            D = torch.stack([B, Bx, Bxx], dim=1)
            return solve_nonlinear(res, w0, (D, f), C, d, jacobian=res.jacobian, hessian=res.hessian, options=opts)[0]
        jac = reverse_jacobian(burgers_residual) if jacobian == "reverse" else None
        return solve_nonlinear(burgers_residual, w0, (B, Bx, Bxx, f), C, d, jacobian=jac, options=opts)[0]

    return solve


def scaling(ms: list[int], ks: list[int], n: int, samples: int, repeats: int, reverse_max_m: int) -> list[dict]:
    # (name, nonlinear, solve, N per problem as a function of K, largest m, repeats)
    cases = [
        ("linear KKT, N per problem", False, linear_solve, lambda k: n, None, repeats),
        ("linear KKT, same total unknowns", False, linear_solve, lambda k: n * max(ks) // k, None, repeats),
        ("LM forward-mode Jacobian", True, lm_solve("forward"), lambda k: n, None, repeats),
        ("LM PointwiseResidual", True, lm_solve("pointwise"), lambda k: n, None, repeats),
        ("LM reverse-mode Jacobian", True, lm_solve("reverse"), lambda k: n, reverse_max_m, 1),  # seconds each
    ]
    rows = []
    for name, nonlinear, solve, n_of_k, max_m, reps in cases:
        for k in [1, *ks]:
            times = {}
            for m in ms:
                if max_m is not None and m > max_m:
                    continue
                inputs, weights = problems(m, k, n_of_k(k), nonlinear, samples)
                times[m] = timed(partial(forward_backward, solve, inputs, weights), reps)
            sizes = sorted(times)
            fit = sizes[-3:]  # the three largest m: past the fixed per-call overheads
            slope = float(np.polyfit(np.log(fit), np.log([times[s] for s in fit]), 1)[0]) if len(fit) > 1 else float("nan")
            rows.append({"case": name, "K": k, "N_per_problem": n_of_k(k), "seconds": times, "exponent": slope})
            print(f"  {name:34s} K={k}: " + ", ".join(f"m={s}: {times[s] * 1e3:.1f} ms" for s in sizes), flush=True)
    return rows


# -------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", default="runs/bench_constrained.json", help="where to write the results")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--basis", type=int, default=32, help="N, basis functions per problem")
    parser.add_argument("--samples", type=int, default=2, help="problems solved together (a batch of initial conditions)")
    parser.add_argument("--reverse-max-m", type=int, default=1000, help="largest m for the reverse-mode Jacobian (memory m^2)")
    parser.add_argument("--part", choices=["all", "cvxpy", "scaling"], default="all", help="run one part only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ms = [100, 300, 1000] if args.quick else [100, 300, 1000, 3000, 10000]
    repeats = 2 if args.quick else args.repeats

    print("1. KKT vs cvxpylayers, equality-constrained least squares, forward + backward (batch 8)")
    comparison = []
    for m, n in [] if args.part == "scaling" else [(64, 8)] if args.quick else [(64, 8), (256, 16), (256, 32)]:
        row = kkt_vs_cvxpylayers(8, m, n, 4, repeats)
        comparison.append(row)
        print(f"  m={m:5d} N={n:3d} p=4: KKT {row['kkt_s'] * 1e3:.2f} ms")
        for name, label in (
            ("convex", "ConvexLeastSquares (N x N data, tol 1e-8, dense)"),
            ("plain", "plain CvxpyLayer (m x N data, defaults)"),
        ):
            print(
                f"    {label:50s} {row[f'{name}_s'] * 1e3:8.1f} ms = {row[f'{name}_s'] / row['kkt_s']:6.1f}x KKT, "
                f"solution diff {row[f'{name}_solution_rel_diff']:.1e}, gradient diff {row[f'{name}_gradient_rel_diff']:.1e}"
            )

    print(
        f"2. forward + backward time against m: one global problem (K=1) vs K experts as one batch, N={args.basis}, {args.samples} samples"
    )
    rows = [] if args.part == "cvxpy" else scaling(ms, [2, 4, 8], args.basis, args.samples, repeats, args.reverse_max_m)
    print(f"\n{'case':34s} {'K':>2s} {'N':>4s} " + " ".join(f"{'m=' + str(m):>10s}" for m in ms) + "  exponent  global/K")
    for row in rows:
        glob = next(r for r in rows if r["case"] == row["case"] and r["K"] == 1)["seconds"]
        common = max(set(glob) & set(row["seconds"]))
        cells = " ".join(f"{row['seconds'][m] * 1e3:8.1f}ms" if m in row["seconds"] else f"{'-':>10s}" for m in ms)
        speedup = glob[common] / row["seconds"][common]
        print(f"{row['case']:34s} {row['K']:2d} {row['N_per_problem']:4d} {cells}  {row['exponent']:8.2f}  {speedup:6.2f}x@{common}")

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": date.today().isoformat(),
        "load_average_after": os.getloadavg(),
        "machine": platform.platform(),
        "threads": torch.get_num_threads(),
        "basis": args.basis,
        "samples": args.samples,
    }
    out.write_text(json.dumps({"meta": meta, "kkt_vs_cvxpylayers": comparison, "scaling": rows}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
