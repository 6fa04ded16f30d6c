"""Seeded fault injection for the batcher: 2 processes SIGKILLed at random, including
right after cutoffs when batches seal; then every payment must be in exactly one
payout and every payout in exactly one sent pacs.008 (I2, I3).

Replay a failure with SETTLEMENT_FAULT_SEED=<seed printed by the test>.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from settlement import loadgen
from settlement.runtime.local import Fleet
from tests.conftest import Namespace
from tests.e2e.batch_checker import check_batches
from tests.e2e.pipeline import minute_calendar_env, next_minute, wait_settled
from tests.integration.helpers import produce_raw, register

PAYMENTS = int(os.environ.get("SETTLEMENT_BATCHER_FAULT_PAYMENTS", "20000"))
KILLS = int(os.environ.get("SETTLEMENT_FAULT_KILLS", "10"))
GRACE_S = 2.0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_payment_paid_once_under_batcher_sigkills(ns: Namespace) -> None:
    env_seed = os.environ.get("SETTLEMENT_FAULT_SEED")
    seed = int(env_seed) if env_seed else random.SystemRandom().randrange(1, 2**31)
    print(f"\nbatcher fault seed={seed} payments={PAYMENTS} kills>={KILLS} "
          f"(replay: SETTLEMENT_FAULT_SEED={seed})")
    rng = random.Random(seed)
    env = {**ns.env, **minute_calendar_env(GRACE_S)}
    register(ns.settings, loadgen.merchants(300, 3, ["EUR", "USD"], seed, per_payment_share=0.3))
    # Captured over 5 minutes around now: past windows (late arrivals), and future ones
    # that close while the workers are being killed.
    first_cutoff = next_minute()
    start = first_cutoff - timedelta(minutes=2)
    manifest = list(loadgen.generate(PAYMENTS, merchants_n=300, currencies=["EUR", "USD"],
                                     seed=seed, start=start, span=timedelta(minutes=5)))
    # a window ends at the first cutoff after its payments: the last one's closes at
    # start + 5 minutes (late items hop on, and wait_settled waits for their windows)
    last_cutoff = start + timedelta(minutes=5)
    ledger = Fleet.of("ledger", 1, env=env, log_dir=ns.log_dir)
    batchers = Fleet.of("batcher", 2, env=env, log_dir=ns.log_dir)
    ledger.start()
    batchers.start()
    slices = [manifest[i:i + 2000] for i in range(0, len(manifest), 2000)]
    producer = threading.Thread(target=lambda: [
        (produce_raw(ns.settings, [(r.key, r.value) for r in s]), time.sleep(2.0)) for s in slices])
    producer.start()
    kills = seal_kills = 0
    # every cutoff that closes a window with payments in it, up to the last one
    cutoffs = [first_cutoff + timedelta(minutes=i) for i in range(4)]
    assert cutoffs[-1] == last_cutoff
    try:
        while True:
            now = datetime.now(UTC)
            upcoming = [c for c in cutoffs if c + timedelta(seconds=GRACE_S) > now]
            if kills >= KILLS and not upcoming:
                break
            # KILLS at random moments, and one kill aimed at the moment each cutoff's
            # seal commands are issued and consumed (a random one never sleeps past it)
            due = bool(upcoming) and (
                upcoming[0] + timedelta(seconds=GRACE_S) - now).total_seconds() < 6.0
            if upcoming and (kills >= KILLS or due or rng.random() < 0.5):
                wake = upcoming[0] + timedelta(seconds=GRACE_S + rng.uniform(0.0, 1.5))
                time.sleep(max((wake - now).total_seconds(), 0))
                seal_kills += 1
            else:
                time.sleep(rng.uniform(0.5, 4.0))
            victim = rng.choice(batchers.workers)
            if victim.alive:
                victim.kill(signal.SIGKILL)
                kills += 1
                time.sleep(rng.uniform(0.0, 1.0))
            victim.start()
        producer.join()
        for w in batchers.workers:
            if not w.alive:
                w.start()
        wait_settled(ns.settings, last_cutoff, GRACE_S, timeout_s=300)
    finally:
        codes = batchers.stop() + ledger.stop()
    report = check_batches(ns.settings)
    print(f"kills={kills} (aimed at sealing: {seal_kills}) figures={report.figures}")
    assert report.figures["placed"] == sum(1 for r in manifest if r.expect == "ledger")
    assert not report.violations, f"seed={seed}: " + "; ".join(report.violations)
    assert codes == [0, 0, 0], f"workers did not drain cleanly: {codes} (seed={seed})"
    assert kills >= KILLS and report.figures["messages"] >= 3 * 2 * 4
    assert seal_kills == len(cutoffs), f"a cutoff went by without its aimed kill (seed={seed})"
