"""Issue 16's benchmarks in one place: ``python scripts/bench_parametrizations.py PIECE [its options]``.

PIECE is one of ``sparsity`` (N:M sparse training and parallel-shallow networks), ``hypernet`` (magnitude-invariant
hypernetworks on parametric families), ``parallel_time`` (parallel-in-time rollouts) or ``gradient_coding``
(straggler-tolerant gradients, under mpiexec). Each piece's own script takes ``--help``; the commands that made
every figure are in docs/benchmarks.md.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PIECES = {
    "sparsity": "bench_sparsity.py",
    "hypernet": "bench_hypernet.py",
    "parallel_time": "bench_parallel_time.py",
    "gradient_coding": "bench_gradient_coding.py",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in PIECES:
        print(__doc__.strip(), file=sys.stderr)
        print(f"\nexpected a piece, one of {sorted(PIECES)}; got {argv[0] if argv else 'nothing'}", file=sys.stderr)
        return 2
    path = Path(__file__).with_name(PIECES[argv[0]])
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
