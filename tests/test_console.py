"""The console log handler follows sys.stderr, so a swapped (and closed) stream never breaks a later command."""
import io
import logging
import sys

from pdesolve.console import CurrentStderrHandler, log_to_stderr


def test_the_handler_writes_to_the_stderr_of_the_moment_and_is_installed_once(monkeypatch):
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    first, second = io.StringIO(), io.StringIO()
    try:
        monkeypatch.setattr(sys, "stderr", first)
        log_to_stderr(logging.INFO)
        logging.getLogger("pdesolve.test").info("one")
        first.close()  # as a test's captured stream is closed when the test ends
        monkeypatch.setattr(sys, "stderr", second)
        log_to_stderr(logging.WARNING, "%(levelname)s %(message)s")
        logging.getLogger("pdesolve.test").info("hidden at WARNING")
        logging.getLogger("pdesolve.test").warning("two")
        assert second.getvalue() == "WARNING two\n"
        assert sum(isinstance(h, CurrentStderrHandler) for h in root.handlers) == 1
        assert all(h in root.handlers for h in before)  # others' handlers are left in place
    finally:
        for h in [h for h in root.handlers if isinstance(h, CurrentStderrHandler)]:
            root.removeHandler(h)
        root.setLevel(level)
