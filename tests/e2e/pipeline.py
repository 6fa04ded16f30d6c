"""Shared set-up for pipeline tests: a minute-cutoff calendar and progress waits."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from settlement.config import Settings
from settlement.kafka.reader import pending_records
from settlement.store.session import connect
from tests.e2e.checker import group_lag

MINUTE_BANK = {
    "bic": "DEFAULT", "timezone": "UTC", "holiday_calendar": "none", "weekend": [],
    "cutoffs": [f"{h:02d}:{m:02d}" for h in range(24) for m in range(60)],
}


def minute_calendar_env(grace_s: float = 2.0) -> dict[str, str]:
    """Every minute is a cutoff, every day a business day: windows close during a test."""
    return {
        "SETTLEMENT_BATCHER__DEFAULT_BANK": json.dumps(MINUTE_BANK),
        "SETTLEMENT_BATCHER__SEAL_GRACE_S": str(grace_s),
        "SETTLEMENT_BATCHER__SEAL_CHECK_INTERVAL_S": "0.5",
    }


def next_minute(after: datetime | None = None) -> datetime:
    t = (after or datetime.now(UTC)).replace(second=0, microsecond=0)
    return t + timedelta(minutes=1)


def open_batches(settings: Settings) -> int:
    """Batches still open, plus sealed ones whose payout rows are not written yet (they
    follow the commit that publishes the batch's pacs.008)."""
    s = connect(settings.cassandra, keyspace=settings.cassandra.keyspace)
    try:
        rows = s.execute("SELECT batch_id, status FROM batches")
        unsealed = {r.batch_id for r in rows if r.status != "sealed"}
        pending = {r.batch_id for r in s.execute("SELECT batch_id FROM payouts_pending")}
        return len(unsealed | pending)
    finally:
        s.cluster.shutdown()


def wait_settled(settings: Settings, last_cutoff: datetime, grace_s: float,
                 timeout_s: float) -> None:
    """Until both stages have no lag, the last cutoff + grace has passed and no batch is open."""
    deadline = time.monotonic() + timeout_s
    prefix = settings.worker.group_prefix
    state = "?"
    while time.monotonic() < deadline:
        try:
            lags = (group_lag(settings, f"{prefix}-ledger", settings.topics.payments),
                    pending_records(settings.kafka, f"{prefix}-batcher", settings.topics.items))
            past = datetime.now(UTC) > last_cutoff + timedelta(seconds=grace_s + 1)
            opened = open_batches(settings) if past and lags == (0, 0) else -1
            state = f"lags={lags} past_last_cutoff={past} open_batches={opened}"
            # seal commands issued in the meantime must be consumed too
            if opened == 0 and pending_records(
                    settings.kafka, f"{prefix}-batcher", settings.topics.items) == 0:
                return
        except Exception as exc:  # a broker restart in progress
            state = f"error {exc}"
        time.sleep(1)
    raise AssertionError(f"pipeline not settled after {timeout_s}s: {state}")
