#!/bin/bash
# Online training on a SLURM cluster: simulations stream over MPI straight into the surrogate's training.
#
#   sbatch scripts/slurm_online.sh problems/heat2d_online.yaml
#
# 2 nodes x 16 ranks. With `online: {servers: 2}` in the study and ranks placed round-robin over the
# nodes (--map-by node), rank 0 (server 0) runs on node 0 and rank 1 (server 1) on node 1, each on its
# node's first GPU; ranks 2..31 are clients, client r streams to server (r - 2) % 2. See
# docs/online_training.md for other layouts.
#
#SBATCH --job-name=heat2d-online
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=16
#SBATCH --cpus-per-task=1
#SBATCH --gpus-per-node=1
#SBATCH --time=02:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --output=%x-%j.out

set -euo pipefail

STUDY=${1:-problems/heat2d_online.yaml}
OUT=${OUT:-runs/heat2d_online}   # fixed, so that a requeued job resumes from its checkpoint

# one torch thread per rank (ranks x threads <= cores); the study's online.threads sets torch's own count
export OMP_NUM_THREADS=1

# Five minutes before the time limit SLURM sends SIGUSR1 to this script (B: above); pass it on to
# mpiexec, which forwards it to every rank: the servers write a final checkpoint and the job exits 3.
# (Open MPI's mpiexec kills the ranks shortly after SIGTERM or Ctrl-C, so those rely on the last
# periodic checkpoint, train.checkpoint_every.)
trap 'kill -USR1 "$PID" 2>/dev/null || true' USR1

mpiexec -n "$SLURM_NTASKS" --map-by node --bind-to core \
    python -m online_training "$STUDY" --out "$OUT" &
PID=$!
set +e
wait "$PID"
STATUS=$?
if [ "$STATUS" -gt 128 ]; then  # interrupted by the trapped signal: wait for the clean stop to finish
    wait "$PID"
    STATUS=$?
fi
set -e

if [ "$STATUS" -eq 3 ]; then
    echo "stopped before the end with a checkpoint in $OUT; requeueing to resume"
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$STATUS"
