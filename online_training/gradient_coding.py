"""Straggler-tolerant gradients for the data-parallel servers: gradient coding, one round per training step.

Gradient coding (Tandon, Lei, Dimakis, Karampatziakis, "Gradient Coding", ICML 2017) gives each of ``n``
workers ``s + 1`` of the ``n`` data partitions of a step; worker ``i`` sends one *coded* gradient
``c_i = sum_j B[i, j] g_j`` (``g_j`` the gradient of partition ``j``), and the full gradient ``sum_j g_j``
decodes from any ``n - s`` of them: ``sum_{i in F} a_i c_i`` with ``a_F`` solving ``B_F^T a_F = 1``.
:func:`cyclic_code` is their cyclic-repetition construction (row ``i`` supported on partitions ``i, ...,
i + s`` mod ``n``, every row in the null space of a random ``s x n`` matrix ``H`` with ``H 1 = 0``, so any
``n - s`` rows span that null space, which holds the all-ones vector); :func:`decoding_vector` solves for
``a_F`` and checks the residual.

The servers' partitions are their own sampled batches. At the start of a round every server shares its
batch with the others (:meth:`GradientCoder.share`, one all-gather over the servers' communicator, where
the servers already meet once per step to agree on stopping); each then trains on the ``s + 1`` batches
its code row names, weighted by ``B[row, j] * n_j / N`` (``n_j`` records in partition ``j``, ``N`` in all),
so that one backward pass gives its coded gradient of the step's mean loss. :class:`CodedExchange` sends
it to every other server (non-blocking MPI, tagged by round) and returns as soon as ``n - s`` results of
the round are in; a straggler's late message is received into its own buffer in a later round and
discarded. The reported loss is decoded with the gradient (it is linear in the partitions too).

``scheme: sequential`` follows the round-by-round task assignment of "Sequential Gradient Coding for
Straggler Mitigation" (Krishnan, Ebrahimi, Khisti, ICLR 2023): the code rows rotate over the servers from
one round to the next (server ``i`` plays row ``(i + round) mod n``), so a server that straggles for a
burst of rounds leaves a different set of partitions uncovered each round. The paper's delay budget ``T >
0`` (a job finished in later rounds, and the multiplexed M-SGC) is *not* implemented: with one model
trained in lockstep, finishing step ``t``'s gradient later means updating with a stale gradient, which
changes the optimisation; see ``docs/gradient_coding.md``.

An injected delay (:class:`DelaySpec`, for tests and benchmarks) makes one server sleep before it sends
its result; a coded server stops sleeping once its result is no longer needed (``n - s`` others are in),
as a real straggler's task would be cancelled; an uncoded server (:class:`pdesolve.distributed.GradientAverager`)
cannot, and every server waits for it.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from .transport import Backoff

TAGS = 1 << 15  # MPI guarantees tags up to 32767: rounds are tagged modulo this
CHECK_SUBSETS = 20000  # verify every responder set when there are at most this many
SCHEMES = ("none", "cyclic", "sequential")


class GradientCodingSpec(BaseModel):
    """``online.gradient_coding``: how the servers' gradients are combined."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme: Literal["none", "cyclic", "sequential"] = Field(
        "none", description="none: one all-reduce; cyclic: Tandon et al.'s cyclic code; sequential: its rows rotated each round")
    stragglers: int = Field(1, ge=1, description="servers whose results a round does without (s); each server computes s + 1 batches")
    seed: int = Field(0, ge=0, description="seed of the code's random matrix")


class DelaySpec(BaseModel):
    """``online.inject_delay``: a slow server, for tests and benchmarks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server: int = Field(..., ge=0, description="the server index that is slowed down")
    seconds: float = Field(..., gt=0, description="the delay of its gradient, in seconds")
    every: int = Field(1, ge=1, description="delay every this many rounds (steps)")

    def applies(self, server: int, round_: int) -> bool:
        return server == self.server and round_ % self.every == 0


# ------------------------------------------------------------------------------------------ the code
def support(n: int, s: int, row: int) -> list[int]:
    """The partitions code row ``row`` combines: ``row, row + 1, ..., row + s`` modulo ``n``."""
    return [(row + k) % n for k in range(s + 1)]


def _cyclic_candidate(n: int, s: int, rng: np.random.Generator) -> np.ndarray:
    h = rng.standard_normal((s, n))
    h[:, -1] = -h[:, :-1].sum(axis=1)  # H 1 = 0
    b = np.zeros((n, n))
    for i in range(n):
        cols = support(n, s, i)
        b[i, i] = 1.0
        others = cols[1:]
        # B[i, others] H[:, others]^T = -H[:, i]^T: row i in the null space of H
        b[i, others] = np.linalg.solve(h[:, others], -h[:, i])
    return b


def responder_sets(n: int, s: int) -> Iterable[tuple[int, ...]]:
    return itertools.combinations(range(n), n - s)


def worst_condition(b: np.ndarray, s: int) -> float:
    """The largest condition number of ``B_F`` (as a map onto its row space) over every responder set ``F``."""
    n = len(b)
    worst = 0.0
    for f in responder_sets(n, s):
        sv = np.linalg.svd(b[list(f)], compute_uv=False)
        worst = max(worst, float(sv[0] / sv[-1]) if sv[-1] > 0 else math.inf)
    return worst


def cyclic_code(n: int, s: int, seed: int = 0, tries: int = 16) -> np.ndarray:
    """Tandon et al.'s cyclic-repetition encoding matrix ``B [n, n]`` tolerating ``s`` stragglers (float64).

    Of ``tries`` random draws, the one whose worst responder set is best conditioned (when the sets can be
    enumerated: at most ``CHECK_SUBSETS``), so decoding amplifies float32 round-off the least.
    """
    if not 0 <= s < n:
        raise ValueError(f"stragglers: expected 0 <= s < n = {n}, got {s}")
    if s == 0:
        return np.eye(n)
    rng = np.random.default_rng([seed, n, s])
    enumerable = math.comb(n, s) <= CHECK_SUBSETS
    best, best_cond = None, math.inf
    for _ in range(tries if enumerable else 1):
        b = _cyclic_candidate(n, s, rng)
        cond = worst_condition(b, s) if enumerable else 0.0
        if cond < best_cond or best is None:
            best, best_cond = b, cond
    if not np.isfinite(best_cond):
        raise RuntimeError(f"no decodable cyclic code found for n = {n}, s = {s}")
    return best  # type: ignore[return-value]


def decoding_vector(b: np.ndarray, responders: Iterable[int]) -> np.ndarray:
    """``a [n]`` with ``a @ B = 1`` and zeros outside ``responders`` (at least ``n - s`` code rows)."""
    rows = sorted(set(responders))
    a_f, *_ = np.linalg.lstsq(b[rows].T, np.ones(b.shape[1]), rcond=None)
    a = np.zeros(len(b))
    a[rows] = a_f
    residual = np.abs(a @ b - 1.0).max()
    if residual > 1e-8:
        raise ValueError(f"code rows {rows} cannot decode the full gradient (residual {residual:.1e})")
    return a


def row_of(server: int, round_: int, n: int, scheme: str) -> int:
    """The code row a server plays in a round (sequential: rotated by the round)."""
    return (server + round_) % n if scheme == "sequential" else server


# ---------------------------------------------------------------------------------- the exchange
class CodedExchange:
    """Every server sends its round's result to every other one; :meth:`first` returns once ``need`` are in.

    ``comm`` is a private duplicate of the servers' communicator. Every server sends exactly one message per
    round to every other server (also a straggler whose result came too late), and every message is
    received: a late one by a receive posted in its round, completed and dropped in a later round or by
    :meth:`settle`, so no message is ever left unmatched.
    """

    def __init__(self, comm: Any, length: int):
        self.comm, self.length = comm, length
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.late: list[tuple[Any, np.ndarray]] = []  # receives of earlier rounds in flight, with their buffers (dropped once in)
        self.sends: list[Any] = []
        self.stale = 0  # late messages received and dropped

    def post(self, round_: int) -> dict[int, tuple[Any, np.ndarray]]:
        """Post this round's receives from every other server."""
        self._reap()
        tag = round_ % TAGS
        out = {}
        for j in range(self.size):
            if j != self.rank:
                buf = np.empty(self.length, np.float32)
                out[j] = (self.comm.Irecv(buf, source=j, tag=tag), buf)
        return out

    def send(self, round_: int, vector: np.ndarray) -> None:
        tag = round_ % TAGS
        data = np.ascontiguousarray(vector, dtype=np.float32)
        for j in range(self.size):
            if j != self.rank:
                self.sends.append((self.comm.Isend(data, dest=j, tag=tag), data))

    @staticmethod
    def arrived(posted: dict[int, tuple[Any, np.ndarray]]) -> list[int]:
        return [j for j, (req, _) in posted.items() if req.Test()]

    def finish(self, posted: dict[int, tuple[Any, np.ndarray]], done: list[int]) -> None:
        """End a round: the receives not yet complete (the stragglers') are kept, to be completed and dropped later."""
        self.late.extend(posted[j] for j in posted if j not in done)

    def _reap(self) -> None:
        still = []
        for req, buf in self.late:
            if req.Test():
                self.stale += 1
            else:
                still.append((req, buf))
        self.late = still
        self.sends = [(r, d) for r, d in self.sends if not r.Test()]

    def settle(self) -> None:
        """Wait for every message in flight (before a checkpoint and at the end)."""
        from mpi4py import MPI

        MPI.Request.Waitall([r for r, _ in self.late])
        self.stale += len(self.late)
        MPI.Request.Waitall([r for r, _ in self.sends])
        self.late, self.sends = [], []


class GradientCoder:
    """Coded gradients for ``model`` over the servers' communicator ``comm`` (one instance per server).

    Per round: :meth:`share` (the servers' batches, at the round's start), :meth:`loss` (this server's coded
    loss over its ``s + 1`` batches; its backward leaves the coded gradient), then a hook on the parameters
    sends it, waits for ``n - s`` results, and writes the decoded mean gradient into every ``.grad`` and
    the decoded mean loss into the tensor :meth:`loss` returned (read after the backward pass, as the
    backprop rules do). ``delay``: an injected straggler (tests, benchmarks).
    """

    def __init__(self, model: nn.Module, comm: Any, spec: GradientCodingSpec, delay: DelaySpec | None = None, timeout_s: float = 600.0):
        if spec.scheme == "none":
            raise ValueError("GradientCoder needs scheme cyclic or sequential")
        self.comm = comm.Dup()
        self.n, self.s, self.scheme = self.comm.Get_size(), spec.stragglers, spec.scheme
        self.rank = self.comm.Get_rank()
        if self.s >= self.n:
            raise ValueError(f"gradient_coding.stragglers: expected fewer than the {self.n} servers, got {self.s}")
        self.code = cyclic_code(self.n, self.s, spec.seed)
        self.delay, self.timeout_s = delay, timeout_s
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.numel = sum(p.numel() for p in self.params)
        self.exchange = CodedExchange(self.comm, self.numel + 1)
        self.round = 0
        self.parts: dict[int, np.ndarray] = {}
        self.total = 0
        self.pending = 0
        self.reported: Tensor | None = None
        self.responders: tuple[int, ...] = ()  # servers whose results the last round decoded
        self.abandoned = 0  # rounds this server's injected delay was cut short
        self.decode_cache: dict[tuple[int, ...], np.ndarray] = {}
        for p in self.params:
            p.register_post_accumulate_grad_hook(self._arrived)

    # ------------------------------------------------------------------ the round's data
    @property
    def row(self) -> int:
        return row_of(self.rank, self.round, self.n, self.scheme)

    def code_row(self, server: int) -> int:
        return row_of(server, self.round, self.n, self.scheme)

    def share(self, round_: int, records: np.ndarray) -> None:
        """Start round ``round_``: all-gather the servers' batches ``records [n_i, width]`` (float32)."""
        self.exchange._reap()
        self.round = round_
        records = np.ascontiguousarray(records, dtype=np.float32)
        width = records.shape[1]
        counts = np.empty(self.n, np.int64)
        self.comm.Allgather(np.array([len(records)], np.int64), counts)
        flat = np.empty(int(counts.sum()) * width, np.float32)
        self.comm.Allgatherv(records.reshape(-1), [flat, counts * width])
        offsets = np.concatenate([[0], np.cumsum(counts)])
        rows = flat.reshape(-1, width)
        self.parts = {j: rows[offsets[j] : offsets[j + 1]] for j in support(self.n, self.s, self.row)}
        self.total = int(counts.sum())

    def loss(self, partition_loss: Callable[[np.ndarray], Tensor], like: Tensor) -> Tensor:
        """``sum_j B[row, j] * n_j / N * partition_loss(records_j)`` over this server's partitions.

        ``partition_loss`` is the mean loss of a batch; ``like`` a tensor of the model's dtype and device.
        """
        coeffs = self.code[self.row]
        out = like.new_zeros(())
        for j, records in self.parts.items():
            if len(records):
                out = out + partition_loss(records) * float(coeffs[j] * len(records) / max(self.total, 1))
        if not out.requires_grad:  # no records at all: zero gradients, so the hooks still fire
            out = out + sum((p * 0).sum() for p in self.params)
        self.reported = out
        return out

    # ------------------------------------------------------------------ the exchange and decoding
    def _arrived(self, _p: Tensor) -> None:
        self.pending += 1
        if self.pending < len(self.params):
            return
        self.pending = 0
        grads = [p.grad for p in self.params]
        vector = torch.cat([g.detach().reshape(-1).float().cpu() for g in grads]  # type: ignore[union-attr]
                           + [self.reported.detach().reshape(1).float().cpu()])  # type: ignore[union-attr]
        decoded, value = self._round(vector.numpy())
        offset = 0
        flat = torch.from_numpy(decoded)
        for g in grads:
            k = g.numel()  # type: ignore[union-attr]
            g.copy_(flat[offset : offset + k].view_as(g))  # type: ignore[union-attr]
            offset += k
        self.reported.detach().fill_(value)  # type: ignore[union-attr]

    def _round(self, mine: np.ndarray) -> tuple[np.ndarray, float]:
        need = self.n - self.s
        posted = self.exchange.post(self.round)
        own = True
        if self.delay is not None and self.delay.applies(self.rank, self.round):
            end = time.perf_counter() + self.delay.seconds
            pause = Backoff(longest=min(2e-3, self.delay.seconds / 10))
            while time.perf_counter() < end:
                if len(self.exchange.arrived(posted)) >= need:  # the round decodes without this server
                    own = False
                    self.abandoned += 1
                    break
                pause.wait()
        self.exchange.send(self.round, mine)  # always sent: every posted receive gets its message
        give_up = time.perf_counter() + self.timeout_s
        pause = Backoff()
        while True:
            done = self.exchange.arrived(posted)
            if len(done) + own >= need:
                break
            if time.perf_counter() > give_up:
                raise RuntimeError(f"gradient coding: round {self.round} has {len(done) + own} of the {need} results it needs "
                                   f"after {self.timeout_s:.0f} s; more than {self.s} servers are stuck")
            pause.wait()
        available = sorted(done + ([self.rank] if own else []))
        chosen = tuple(available[:need])  # the lowest-indexed servers among those in
        self.exchange.finish(posted, done)
        self.responders = chosen
        results = {j: posted[j][1] for j in chosen if j != self.rank}
        if self.rank in chosen:
            results[self.rank] = mine
        rows = tuple(self.code_row(j) for j in chosen)
        a = self.decode_cache.get(rows)
        if a is None:
            a = self.decode_cache[rows] = decoding_vector(self.code, rows)
        total = np.zeros(len(mine), np.float64)
        for j in chosen:
            total += a[self.code_row(j)] * results[j].astype(np.float64)
        out = total.astype(np.float32)
        return out[:-1], float(out[-1])

    # ------------------------------------------------------------------ state
    def check(self) -> None:
        if self.pending:
            raise RuntimeError(f"only {self.pending} of {len(self.params)} parameters received a gradient in the last step; "
                               "gradient coding needs a network whose every parameter takes part in the loss")

    def settle(self) -> None:
        """Receive every late message (a checkpoint then holds no round in flight)."""
        self.exchange.settle()

    def state_dict(self) -> dict[str, Any]:
        """The coder's state at a step boundary: the last round (the next one is the task's step); nothing in flight."""
        self.settle()
        return {"round": self.round, "abandoned": self.abandoned, "stale": self.exchange.stale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.round, self.abandoned, self.exchange.stale = int(state["round"]), int(state["abandoned"]), int(state["stale"])

    def close(self) -> None:
        self.settle()
        self.comm.Free()
