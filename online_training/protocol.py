"""The wire format: every message is a plain numpy buffer (a fixed int64 header and a payload), no pickles.

Client to server, tag ``STREAM``, bytes ``[header int64[8] | payload]`` with the header
``[kind, sim, attempt, step, a, b, payload bytes, crc32 of the payload]``:

- ``REQUEST``: give me a simulation;
- ``DATA``: one time step ``step`` of simulation ``sim`` (run ``attempt``), ``a`` = steps of the
  trajectory, payload = the frame ``[channel, *space]`` float32;
- ``END``: the simulation is complete, ``a`` = frames sent, ``b`` = microseconds spent simulating;
- ``FAIL``: it raised or made non-finite values, payload = the reason (UTF-8);
- ``BYE``: the client leaves, ``a`` = microseconds it waited for credits, ``b`` = microseconds alive.

Server to client, tag ``CONTROL``, float64 ``[kind, sim, attempt, credits, parameters...]``: ``TASK``
(run simulation ``sim`` with these parameters), ``CREDIT`` (you may send ``credits`` more frames),
``STOP``. A client's messages share one tag, so MPI delivers them in the order they were sent.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

STREAM, CONTROL = 611, 612
HEADER_BYTES = 64
REASON_BYTES = 512  # a failure's reason is cut to this many bytes


class Kind(IntEnum):
    REQUEST = 1
    DATA = 2
    END = 3
    FAIL = 4
    BYE = 5
    LOST = 6  # made by the server's link when a client's process has failed (never sent by a client)
    TASK = 10
    CREDIT = 11
    STOP = 12


def message_bytes(frame_bytes: int) -> int:
    """The size of a stream buffer that holds any client message."""
    return HEADER_BYTES + max(frame_bytes, REASON_BYTES)


def pack(buf: np.ndarray, kind: Kind, sim: int = -1, attempt: int = -1, step: int = -1, a: int = 0, b: int = 0,
         payload: bytes | np.ndarray | None = None) -> int:
    """Write a stream message into the uint8 buffer ``buf``; returns its length in bytes."""
    data = b"" if payload is None else (payload.tobytes() if isinstance(payload, np.ndarray) else payload)
    n = len(data)
    if HEADER_BYTES + n > len(buf):
        raise ValueError(f"a {n}-byte payload does not fit a {len(buf)}-byte message buffer")
    buf[:HEADER_BYTES].view(np.int64)[:] = (int(kind), sim, attempt, step, a, b, n, zlib.crc32(data))
    buf[HEADER_BYTES : HEADER_BYTES + n] = np.frombuffer(data, np.uint8)
    return HEADER_BYTES + n


@dataclass(frozen=True)
class Message:
    """A stream message as the server received it (``payload`` is a copy, uint8)."""

    source: int
    kind: Kind
    sim: int
    attempt: int
    step: int
    a: int
    b: int
    crc: int
    payload: np.ndarray | None

    @property
    def intact(self) -> bool:
        """Whether the payload's CRC-32 matches the one the client computed."""
        data = b"" if self.payload is None else self.payload.tobytes()
        return zlib.crc32(data) == self.crc

    def text(self) -> str:
        return "" if self.payload is None else self.payload.tobytes().decode("utf-8", "replace")


def lost(source: int) -> Message:
    """The message the server's link reports for a client whose process failed."""
    return Message(source, Kind.LOST, -1, -1, -1, 0, 0, 0, None)


def unpack(source: int, buf: np.ndarray) -> Message:
    h = buf[:HEADER_BYTES].view(np.int64)
    n = int(h[6])
    payload = buf[HEADER_BYTES : HEADER_BYTES + n].copy() if n else None
    return Message(source, Kind(int(h[0])), int(h[1]), int(h[2]), int(h[3]), int(h[4]), int(h[5]), int(h[7]), payload)


def control(kind: Kind, n_params: int, sim: int = -1, attempt: int = -1, credits: int = 0, params: np.ndarray | None = None) -> np.ndarray:
    """A server-to-client message ``float64[4 + n_params]``."""
    out = np.zeros(4 + n_params, np.float64)
    out[:4] = (int(kind), sim, attempt, credits)
    if params is not None:
        out[4:] = params
    return out
