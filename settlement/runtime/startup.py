"""Stop signals that arrive while a process is still starting up.

Loading the CLI, connecting to Cassandra and fencing the last transactional
producer of the same id take seconds, more on a busy node. A worker stopped in
that time (a rollout, a fault test restarting it) has consumed nothing, yet
Python's default SIGTERM kills it with -15 as if it had crashed. So the entry
point holds SIGTERM/SIGINT from its first line: a worker then drains as soon as
its loop exists (exit 0), every other command gets the signal back as if it had
never been held (`release`).

Import-light on purpose: it runs before anything heavy is imported.
"""

from __future__ import annotations

import os
import signal
import time
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StoppedWhileStarting(Exception):
    """A stop signal came while the worker waited for a dependency: nothing to drain."""

_held: list[int] = []


def _note(signum: int, _frame: FrameType | None) -> None:
    _held.append(signum)


def hold() -> None:
    """Note SIGTERM/SIGINT instead of acting on them, until `release` or the worker's own handlers."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _note)


def held() -> int | None:
    """The first stop signal noted while held, if any."""
    return _held[0] if _held else None


def wait_unless_stopped(seconds: float) -> None:
    """Sleep, but raise StoppedWhileStarting as soon as a stop signal is held."""
    end = time.monotonic() + seconds
    while not _held:
        if (left := end - time.monotonic()) <= 0:
            return
        time.sleep(min(left, 0.2))
    raise StoppedWhileStarting(signal.Signals(_held[0]).name)


def release() -> None:
    """Default handling again; a signal noted meanwhile is delivered now (a command that does not drain)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if _held:
        os.kill(os.getpid(), _held.pop(0))
