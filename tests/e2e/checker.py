"""Invariant checks for the ledger stage, reading only Kafka (read_committed) and Cassandra.

Shares nothing with the worker's decision code: it recomputes what must exist
from the generator's manifest and compares it with what was committed.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
from confluent_kafka import Consumer, TopicPartition

from settlement.config import Settings
from settlement.loadgen import SampleRecord
from tests.integration.helpers import committed, ledger_rows


def group_lag(settings: Settings, group: str, topic: str) -> int:
    """Records of `topic` not yet committed by `group` (end offset - committed position)."""
    c = Consumer({**settings.kafka.client_config(), "group.id": group,
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in parts]
        done = {tp.partition: tp.offset for tp in c.committed(tps, timeout=10)}
        lag = 0
        for tp in tps:
            _lo, hi = c.get_watermark_offsets(tp, timeout=10)
            pos = done[tp.partition]
            lag += hi - (pos if pos >= 0 else 0)
        return lag
    finally:
        c.close()


def wait_drained(settings: Settings, group: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    lag = -1
    while time.monotonic() < deadline:
        try:
            lag = group_lag(settings, group, settings.topics.payments)
        except Exception as exc:  # broker restarting: try again
            print(f"lag check failed: {exc}")
        else:
            if lag == 0:
                return
        time.sleep(1)
    raise AssertionError(f"group {group} still lags by {lag} after {timeout_s}s")


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)

    def fail(self, what: str, ids: list[str]) -> None:
        self.violations.append(f"{what}: {len(ids)} e.g. {sorted(ids)[:10]}")


def check_ledger_invariants(settings: Settings, manifest: list[SampleRecord]) -> Report:
    rep = Report()
    valid = {r.payment_id: r for r in manifest if r.expect == "ledger"}
    bad = Counter(r.value for r in manifest if r.expect == "dlq")

    rows = ledger_rows(settings)
    rep.figures.update(ledger_rows=len(rows), valid_payments=len(valid))
    rep.fail("I1 missing ledger rows", [p for p in valid if p not in rows]) if set(valid) - set(
        rows) else None
    extra = [p for p in rows if p not in valid]
    if extra:
        rep.fail("I1 ledger rows for no valid event", extra)
    wrong = [p for p, r in valid.items() if p in rows and rows[p][:3] != (
        r.amount_minor, r.fee_minor, r.currency)]
    if wrong:
        rep.fail("I1/I7 ledger amount differs from the event", wrong)

    items = Counter(orjson.loads(m.value())["payment_id"]
                    for m in committed(settings, settings.topics.items))
    rep.figures["items"] = sum(items.values())
    dup = [p for p, n in items.items() if n > 1]
    if dup:
        rep.fail("items published more than once", dup)
    missing = [p for p in valid if p not in items]
    if missing:
        rep.fail("items missing", missing)
    stray = [p for p in items if p not in valid]
    if stray:
        rep.fail("items for no valid payment", stray)

    dlq = Counter(m.value() for m in committed(settings, settings.topics.payments_dlq))
    rep.figures["dlq"] = sum(dlq.values())
    rep.figures["invalid_sent"] = sum(bad.values())
    if dlq != bad:
        over = [v[:40].decode("utf-8", "replace") for v in (dlq - bad)]
        under = [v[:40].decode("utf-8", "replace") for v in (bad - dlq)]
        if over:
            rep.fail("I4 DLQ holds extra or repeated records", over)
        if under:
            rep.fail("I4 invalid records missing from the DLQ", under)
    return rep
