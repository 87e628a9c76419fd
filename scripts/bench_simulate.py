"""Benchmark the 2D Navier-Stokes vorticity simulator against a straightforward numpy/scipy version of the same scheme.

Both run the same numerics: Fourier pseudo-spectral, 2/3 de-aliasing, Basdevant's form of the advection
(2 inverse + 2 forward real FFTs per evaluation), the Spalart-Moser-Rogers RK3 / Crank-Nicolson step, a
fixed step. The numpy version is the direct transcription, vectorized over the batch (numpy.fft on the
whole ``[batch, ...]`` array at once); the torch version is pdesolve's ``VorticityStepper`` (cache-sized
chunks of trajectories on the CPU, precomputed stage coefficients). Both advance the same random vorticity
fields and the script checks they agree. Prints a table and writes JSON.

    python scripts/bench_simulate.py --sizes 64 256 --batches 1 32 --threads 1 --json bench_simulate.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from datetime import datetime, timezone

import numpy as np
import torch

from pdesolve.grid import Grid, GridAxis
from pdesolve.simulate.ns2d import ALPHA, GAMMA, ZETA, VorticityStepper
from pdesolve.simulate.samplers import gaussian_random_field


class NumpyVorticity:
    """The same RK3-CN pseudo-spectral scheme written plainly with numpy.fft."""

    def __init__(self, n: int, nu: float):
        k = np.fft.fftfreq(n, d=1 / n)
        kr = np.fft.rfftfreq(n, d=1 / n)
        self.kx, self.ky = k[:, None], kr[None, :]
        k2 = self.kx**2 + self.ky**2
        self.inv = np.where(k2 > 0, 1 / np.where(k2 > 0, k2, 1), 0)
        self.mask = (3 * np.abs(self.kx) < n) & (3 * np.abs(self.ky) < n)
        kx_odd = np.where(np.abs(self.kx) == n // 2, 0, self.kx)
        ky_odd = np.where(np.abs(self.ky) == n // 2, 0, self.ky)
        self.ikx, self.iky = 1j * kx_odd, 1j * ky_odd
        self.L = -nu * k2
        self.n = n

    def nonlinear(self, w: np.ndarray) -> np.ndarray:
        psi = w * self.inv * self.mask
        u = np.fft.irfft2(self.iky * psi, s=(self.n, self.n))
        v = np.fft.irfft2(-self.ikx * psi, s=(self.n, self.n))
        a = np.fft.rfft2(v * v - u * u)
        b = np.fft.rfft2(u * v)
        return (self.kx * self.ky * a + (self.kx**2 - self.ky**2) * b) * self.mask

    def step(self, w: np.ndarray, dt: float) -> np.ndarray:
        prev = None
        for g, z, al in zip(GAMMA, ZETA, ALPHA, strict=True):
            n = self.nonlinear(w)
            rhs = (1 + al * dt * self.L) * w + g * dt * n
            if prev is not None:
                rhs = rhs + z * dt * prev
            w = rhs / (1 - al * dt * self.L)
            prev = n
        return w


def timed(fn) -> float:
    """Wall time of one call (seconds)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_case(n: int, batch: int, steps: int, repeats: int, device: str, nu: float) -> dict:
    grid = Grid((GridAxis("x", 0.0, 2 * math.pi, n, True), GridAxis("y", 0.0, 2 * math.pi, n, True)))
    w0 = gaussian_random_field(grid, batch, np.random.default_rng(0), alpha=2.5, tau=3.0, sigma=2.0)
    params = {k: torch.full((batch,), v, dtype=torch.float64) for k, v in {"nu": nu, "drag": 0.0, "forcing": 0.0, "forcing_k": 4.0}.items()}
    dev = torch.device(device)
    stepper = VorticityStepper(grid, params, dev)
    dt = 0.25 * (2 * math.pi / n) / 4.0  # a CFL-sized step for |u| ~ 2
    wt0 = torch.fft.rfft2(torch.as_tensor(w0, device=dev))
    wn0 = np.fft.rfft2(w0)
    ref = NumpyVorticity(n, nu)

    def torch_run() -> torch.Tensor:
        w = wt0
        for _ in range(steps):
            w = stepper.step(w, dt)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return w

    def numpy_run() -> np.ndarray:
        w = wn0
        for _ in range(steps):
            w = ref.step(w, dt)
        return w

    diff = float(np.abs(np.fft.irfft2(numpy_run(), s=(n, n)) - torch.fft.irfft2(torch_run(), s=(n, n)).cpu().numpy()).max())
    # interleaved, so that both see the same machine load; medians of the repeats
    times_torch, times_numpy = [], []
    for _ in range(repeats):
        times_torch.append(timed(torch_run))
        times_numpy.append(timed(numpy_run) if dev.type == "cpu" else float("nan"))
    t_torch, t_numpy = statistics.median(times_torch), statistics.median(times_numpy)
    cells = batch * n * n * steps
    return {
        "n": n,
        "batch": batch,
        "steps": steps,
        "torch_steps_per_s": steps / t_torch,
        "torch_cell_updates_per_s": cells / t_torch,
        "numpy_steps_per_s": steps / t_numpy,
        "numpy_cell_updates_per_s": cells / t_numpy,
        "speedup": t_numpy / t_torch,
        "max_abs_difference": diff,
        "chunk": stepper.chunk,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--nu", type=float, default=1e-3)
    ap.add_argument("--json", default="bench_simulate.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for n in args.sizes:
        for b in args.batches:
            work = b * n * n
            steps = max(2, min(200, int(4e6 // work)))  # about the same work per case
            rows.append(run_case(n, b, steps, args.repeats, args.device, args.nu))
            r = rows[-1]
            print(
                f"n={n:4d} batch={b:3d} steps={steps:3d} | torch {r['torch_steps_per_s']:9.2f} steps/s "
                f"{r['torch_cell_updates_per_s']:.3e} cells/s | numpy {r['numpy_steps_per_s']:9.2f} steps/s "
                f"{r['numpy_cell_updates_per_s']:.3e} cells/s | x{r['speedup']:.2f} | diff {r['max_abs_difference']:.1e}",
                flush=True,
            )
    meta = {
        "command": "python scripts/bench_simulate.py "
        + " ".join(f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()} {platform.release()}",
        "cpu": _cpu_name(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "threads": args.threads,
        "device": args.device,
    }
    with open(args.json, "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=2)
    print(json.dumps(meta, indent=2))


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
