"""``pdesolve rollout RUN_DIR --data TEST.h5``: roll a trained grid solver out and score it."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from ..errors import UserError
from ..parallel_time import METHODS, ExecutorOptions


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run folder written by `pdesolve train`")
    p.add_argument("--data", required=True, help="trajectory dataset (HDF5) to roll out on")
    p.add_argument("--split", choices=("all", "test"), default="all",
                   help="all trajectories of the file (default), or its held-out test split")
    p.add_argument("--out", help="folder for the results (default: RUN_DIR/rollout-<data file name>)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), help="where to run (default: the run's)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--piece", metavar="I,J", help="roll one piece's network alone on its sub-grid u[..., i::s_h, j::s_w] "
                   "(NeuralStagger with inputs: own), against the subsampled data")
    g = p.add_argument_group("executor", "how each rollout runs: step after step, or solved for all steps at once "
                             "(docs/parallel_time.md)")
    g.add_argument("--executor", choices=METHODS, default="sequential",
                   help="sequential (default), picard, quasi_newton (diagonal Jacobians) or newton (dense Jacobians)")
    g.add_argument("--executor-tol", type=float, help="relative residual at which the iterations stop (default 1e-5)")
    g.add_argument("--executor-max-iterations", type=int, help="iteration cap (default: the rollout steps: exact)")
    g.add_argument("--executor-probes", type=int, help="colours per space axis of the quasi-Newton diagonal (default 1)")
    g.add_argument("--executor-max-jacobian-mb", type=float, help="largest dense Jacobian storage newton accepts (default 2048)")


def executor_options(args: argparse.Namespace) -> ExecutorOptions:
    """The executor the options ask for; a bad value is refused naming its option."""
    given = {"method": args.executor, "tol": args.executor_tol, "max_iterations": args.executor_max_iterations,
             "probes": args.executor_probes, "max_jacobian_mb": args.executor_max_jacobian_mb}
    try:
        return ExecutorOptions(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as err:
        problems = "; ".join(f"--executor-{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in err.errors())
        raise UserError(problems) from None


def run(args: argparse.Namespace) -> int:
    import torch

    from ..grid_runner import rollout_run

    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads: expected a positive number, got {args.threads}")
        torch.set_num_threads(args.threads)
    piece = None
    if args.piece is not None:
        try:
            piece = tuple(int(v) for v in args.piece.split(","))
        except ValueError:
            raise UserError(f"--piece: expected comma-separated offsets such as 0,1, got {args.piece!r}") from None
    executor = executor_options(args)
    m = rollout_run(args.run_dir, args.data, split=args.split, out=args.out, device=args.device, piece=piece, executor=executor)
    print(f"{m['trajectories']} trajectories x {len(m['rollout_starts'])} start times: "
          f"one-step relative L2 {m['one_step_rel_l2']:.3e}, rollout relative L2 {m['rollout_rel_l2']:.3e} "
          f"over {m['rollout_steps']} steps")
    if "executor" in m:
        e = m["executor"]
        print(f"executor {e['method']}: iterations {e['iterations']} (rollout batches), final residuals "
              + ", ".join(f"{r:.1e}" for r in e["final_residuals"]) + f" (tol {e['tol']:g})"
              + ("" if e["converged"] else "; NOT converged: raise --executor-max-iterations"))
    print(f"results in {m['folder']}")
    return 0
