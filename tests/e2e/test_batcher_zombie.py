"""A batcher frozen past its session timeout (SIGSTOP) comes back as a zombie (SIGCONT)
after another worker took over and sealed its batches: nothing it writes afterwards
changes a batch, a payout or a sent message."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from settlement import loadgen
from settlement.kafka.reader import read_all
from settlement.runtime.local import Fleet
from settlement.store.session import connect
from tests.conftest import Namespace, wait_until
from tests.e2e.batch_checker import check_batches
from tests.e2e.pipeline import minute_calendar_env, next_minute, wait_settled
from tests.integration.helpers import item_counts, produce_raw, register

GRACE_S = 2.0


def _state(ns: Namespace) -> dict[str, Any]:
    s = connect(ns.settings.cassandra, keyspace=ns.settings.cassandra.keyspace)
    try:
        return {
            "batches": sorted(tuple(r) for r in s.execute("SELECT * FROM batches")),
            "payouts": sorted(tuple(r) for r in s.execute("SELECT * FROM payouts")),
            "messages": sorted(tuple(r) for r in s.execute("SELECT * FROM batch_messages")),
            "owners": sorted(tuple(r) for r in s.execute("SELECT * FROM batcher_owners")),
            "outbound": sorted(m.value() for m in read_all(ns.settings.kafka,
                                                            ns.settings.topics.bank_outbound)),
        }
    finally:
        s.cluster.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_zombie_batcher_changes_nothing_after_another_took_over(ns: Namespace) -> None:
    env = {**ns.env, **minute_calendar_env(GRACE_S)}
    register(ns.settings, loadgen.merchants(60, 3, ["EUR"], seed=9, per_payment_share=0.3))
    cutoff = next_minute()
    if (cutoff - datetime.now(UTC)).total_seconds() < 40:
        cutoff += timedelta(minutes=1)
    manifest = list(loadgen.generate(4000, merchants_n=60, currencies=["EUR"], seed=9,
                                     start=datetime.now(UTC), span=timedelta(seconds=20)))
    ledger = Fleet.of("ledger", 1, env=env, log_dir=ns.log_dir)
    batchers = Fleet.of("batcher", 2, env=env, log_dir=ns.log_dir)
    zombie, survivor = batchers.workers
    ledger.start()
    batchers.start()
    try:
        wait_until(lambda: zombie.log_path.exists()
                   and "kafka.assigned" in zombie.log_path.read_text(), 60, "zombie assignment")
        half = len(manifest) // 2
        produce_raw(ns.settings, [(r.key, r.value) for r in manifest[:half]])
        wait_until(lambda: sum(item_counts(ns.settings).values()) > 500, 60, "items flowing")
        assert zombie.proc is not None
        zombie.proc.send_signal(signal.SIGSTOP)  # frozen mid-stream, past its session timeout
        feeder = threading.Thread(target=produce_raw, args=(
            ns.settings, [(r.key, r.value) for r in manifest[half:]]))
        feeder.start()
        feeder.join()
        wait_settled(ns.settings, cutoff, GRACE_S, timeout_s=240)
        assert "batcher.partition_claimed" in survivor.log_path.read_text()
        before = _state(ns)
        assert before["outbound"], "the survivor sealed and sent nothing"

        mark = zombie.log_path.stat().st_size
        zombie.proc.send_signal(signal.SIGCONT)  # the zombie wakes up with stale state
        time.sleep(20)
        after = _state(ns)
        woke = zombie.log_path.read_text()[mark:]
    finally:
        codes = batchers.stop() + ledger.stop()
    # It did wake up as a zombie: its membership was lost and it went through a rebalance.
    assert "kafka.lost" in woke or "kafka.revoked" in woke or "kafka.assigned" in woke, woke[-2000:]
    for table in ("batches", "payouts", "messages", "outbound"):
        assert after[table] == before[table], f"the zombie changed {table}"
    report = check_batches(ns.settings)
    assert not report.violations, "; ".join(report.violations)
    assert codes == [0, 0, 0]
