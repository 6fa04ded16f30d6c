"""SIGTERM drains a worker process: it commits or aborts, leaves the group, exits 0."""

from __future__ import annotations

import signal
import time

from settlement import loadgen
from settlement.runtime.local import WorkerProc
from tests.conftest import Namespace, wait_until
from tests.integration.helpers import item_counts, produce_raw, register


def test_sigterm_mid_stream_drains_cleanly_and_nothing_is_lost_or_doubled(ns: Namespace) -> None:
    register(ns.settings, loadgen.merchants(10, 2, ["EUR"], seed=5))
    records = list(loadgen.generate(3000, merchants_n=10, currencies=["EUR"], seed=5))
    produce_raw(ns.settings, [(r.key, r.value) for r in records])
    w = WorkerProc("ledger", "drain-0", [], ns.env, ns.log_dir / "drain.log")
    w.start()
    wait_until(lambda: sum(item_counts(ns.settings).values()) > 0, 60, "first items")
    assert w.proc is not None
    w.proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert w.proc.wait(timeout=30) == 0
    drain_s = time.monotonic() - t0
    log = w.log_path.read_text()
    assert "worker.drain_requested" in log and "worker.stopped" in log
    assert drain_s < ns.settings.worker.drain_timeout_s
    w.start()  # the rest is picked up from the committed offsets
    want = {r.payment_id for r in records}
    try:
        wait_until(lambda: set(item_counts(ns.settings)) == want, 90, "all items")
    finally:
        w.kill(signal.SIGTERM)
    counts = item_counts(ns.settings)
    assert all(c == 1 for c in counts.values()), "an item was published twice"


def test_sigterm_while_starting_up_is_a_clean_stop_not_a_crash(ns: Namespace) -> None:
    """A worker stopped while it imports, connects or fences its producer exits 0, not -15.

    The delays land in the CLI import (about 1 s), the Cassandra connect and the transactional
    producer's start; the last one may already be a running loop, which drains the usual way.
    """
    during_startup = 0
    for i, delay_s in enumerate((0.5, 1.5, 3.0)):
        w = WorkerProc("ledger", f"early-{i}", [], ns.env, ns.log_dir / f"early-{i}.log")
        w.start()
        assert w.proc is not None
        time.sleep(delay_s)
        w.proc.send_signal(signal.SIGTERM)
        code = w.proc.wait(timeout=60)
        log = w.log_path.read_text()
        assert code == 0, f"stopped {delay_s}s after start, exit {code}:\n{log[-2000:]}"
        assert "worker.stopped" in log
        during_startup += '"during": "startup"' in log
    assert during_startup, "no stop landed during start-up: the test exercised nothing"
