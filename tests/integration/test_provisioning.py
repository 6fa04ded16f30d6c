"""`settlement topics ensure` and `settlement db migrate` are idempotent, via the real CLI."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import Namespace


def cli(ns: Namespace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "settlement", *args], env=ns.env,
                          capture_output=True, text=True, timeout=120)


def test_topics_ensure_twice_creates_then_reports_existing(ns: Namespace) -> None:
    first = cli(ns, "topics", "ensure")  # the fixture already created them
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("exists") == 7 and "created" not in first.stdout


def test_db_migrate_twice_is_a_no_op_and_records_versions(ns: Namespace) -> None:
    again = cli(ns, "db", "migrate")
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout


def test_unreachable_kafka_is_a_clear_error_with_exit_2(ns: Namespace) -> None:
    env = dict(ns.env, SETTLEMENT_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:1")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "settlement", "topics", "ensure", "--timeout", "4"],
                       env=env, capture_output=True, text=True, timeout=120)
    waited_s = time.monotonic() - t0
    assert r.returncode == 2
    text = " ".join(r.stderr.split())
    assert "cannot reach Kafka at 127.0.0.1:1 within 4 s" in text and "Traceback" not in text
    assert 4 <= waited_s < 30, f"waited {waited_s:.1f} s for a 4 s --timeout"
