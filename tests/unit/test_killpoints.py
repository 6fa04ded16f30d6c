"""Kill points: a named point kills the process with SIGKILL only when asked to."""

from __future__ import annotations

import signal
import subprocess
import sys

from settlement.service.killpoints import KILL_POINTS, kill_point

CODE = ("from settlement.service.killpoints import kill_point; "
        "kill_point('batcher.published_before_payouts'); print('alive')")


def _run(at: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"} | ({} if at is None else {"SETTLEMENT_KILL_AT": at})
    return subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_point_kills_only_the_process_that_names_it() -> None:
    assert "batcher.published_before_payouts" in KILL_POINTS
    kill_point("batcher.published_before_payouts")  # not named here: a no-op
    assert _run(None).stdout.strip() == "alive"
    assert _run("batcher.published_before_payouts").returncode == -signal.SIGKILL


def test_a_name_that_is_no_point_is_refused_at_start() -> None:
    r = _run("batcher.nowhere")
    assert r.returncode == 1 and "names no kill point" in r.stderr
