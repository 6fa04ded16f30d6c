"""Stop signals held while a process starts (settlement.runtime.startup)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from settlement import bootstrap
from settlement.config import Settings
from settlement.domain.errors import FatalError, RetryableError
from settlement.runtime import startup

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


def _settings(wait_s: float) -> Settings:
    return Settings(cassandra={"startup_wait_s": wait_s})  # type: ignore[arg-type]


def test_a_worker_retries_an_unreachable_cassandra_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes: list[object] = [RetryableError("down"), RetryableError("down"), "session"]
    waits: list[float] = []

    def connect(_s: Settings) -> object:
        out = outcomes.pop(0)
        if isinstance(out, Exception):
            raise out
        return out

    monkeypatch.setattr(bootstrap, "cassandra", connect)
    monkeypatch.setattr(startup, "wait_unless_stopped", waits.append)
    assert bootstrap._worker_session(_settings(60), "ledger") == "session"
    assert waits == [0.5, 1.0]


def test_refused_credentials_and_an_exhausted_wait_fail_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(startup, "wait_unless_stopped", waits.append)

    def fatal(_s: Settings) -> object:
        raise FatalError("refused the credentials")

    monkeypatch.setattr(bootstrap, "cassandra", fatal)
    with pytest.raises(FatalError):
        bootstrap._worker_session(_settings(60), "ledger")

    def down(_s: Settings) -> object:
        raise RetryableError("down")

    monkeypatch.setattr(bootstrap, "cassandra", down)
    with pytest.raises(RetryableError):
        bootstrap._worker_session(_settings(0), "ledger")
    assert waits == []


def test_waiting_stops_as_soon_as_a_stop_signal_is_held(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(startup, "_held", [signal.SIGTERM])
    with pytest.raises(startup.StoppedWhileStarting, match="SIGTERM"):
        startup.wait_unless_stopped(30)
    monkeypatch.setattr(startup, "_held", [])
    startup.wait_unless_stopped(0.01)
