"""Console logging for the command-line entry points (``pdesolve`` and the online trainer).

One handler on the root logger that writes to whatever ``sys.stderr`` is when a record is emitted, so that a
program that swaps the stream (a notebook, a test capturing output) never finds a handler holding a closed file.
Calling :func:`log_to_stderr` again updates the level and format in place instead of stacking handlers, and
handlers installed by others (a user's own logging set-up, pytest's capture) are left alone.
"""
from __future__ import annotations

import logging
import sys


class CurrentStderrHandler(logging.StreamHandler):
    """A stream handler whose stream is the current ``sys.stderr``, looked up at each record."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:  # StreamHandler.__init__ assigns it; the current stderr always wins
        pass


def log_to_stderr(level: int, fmt: str = "%(message)s", datefmt: str | None = None) -> None:
    """Send log records at ``level`` and above to the current stderr with ``fmt`` (idempotent)."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, CurrentStderrHandler)), None)
    if handler is None:
        handler = CurrentStderrHandler()
        root.addHandler(handler)
    handler.setFormatter(logging.Formatter(fmt, datefmt=datefmt))
    root.setLevel(level)
