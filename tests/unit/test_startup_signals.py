"""Stop signals held while a process starts (settlement.runtime.startup)."""

from __future__ import annotations

import signal
import subprocess
import sys

HELD_THEN_RELEASED = """
import os, signal, sys, time
from settlement.runtime import startup
startup.hold()
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.2)
print("still running, held", startup.held() == signal.SIGTERM, flush=True)
if sys.argv[1] == "release":
    startup.release()
    time.sleep(5)
print("not stopped", flush=True)
"""


def _run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", HELD_THEN_RELEASED, mode],
                          capture_output=True, text=True, timeout=30)


def test_a_held_sigterm_does_not_stop_the_process_and_is_reported() -> None:
    out = _run("keep")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["still running, held True", "not stopped"]


def test_release_delivers_the_held_sigterm_as_if_never_held() -> None:
    out = _run("release")
    assert out.returncode == -signal.SIGTERM
    assert out.stdout.splitlines() == ["still running, held True"]


def test_a_command_other_than_worker_stops_on_sigterm_as_usual() -> None:
    # `settlement --help` releases in the root callback: SIGTERM is back to the default.
    code = """
import os, signal, sys
from settlement.runtime import startup
startup.hold()
from settlement.cli.main import app
try:
    app(["config", "--help"])
except SystemExit:
    pass
print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, flush=True)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "True", out.stdout + out.stderr
