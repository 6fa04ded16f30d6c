"""Cassandra ledger: one LWT per new payment, issued concurrently per poll.

A timed-out LWT has an unknown outcome, so a failed write is retried as the
same `IF NOT EXISTS`: it either applies now or returns the row that won, and
the handler compares that row's fingerprint and source — never a blind retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from cassandra.cluster import Session
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from settlement.domain.errors import RetryableError
from settlement.service.ports import LedgerEntry, ParkedPayment, SourceRef, StoredLedgerRow
from settlement.store.session import execute, execute_all, run_concurrent, wrap_error

log = structlog.get_logger(__name__)

_INSERT = """
INSERT INTO ledger (payment_id, event_id, merchant_id, amount_minor, fee_minor, currency,
    captured_at, schema_version, fingerprint, src_topic, src_partition, src_offset, recorded_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS
"""


def _row_of(result: Any, entry: LedgerEntry) -> StoredLedgerRow:
    row = result.one()
    if row.applied:
        return StoredLedgerRow(entry.event.event_id, entry.fingerprint, entry.source, True)
    return StoredLedgerRow(
        row.event_id, row.fingerprint,
        SourceRef(row.src_topic, row.src_partition, row.src_offset), False,
    )


class CassandraLedgerStore:
    def __init__(self, session: Session, concurrency: int = 128, attempts: int = 5) -> None:
        self._s = session
        self._concurrency = concurrency
        self._attempts = attempts
        self._insert = session.prepare(_INSERT)
        self._park = session.prepare(
            "INSERT INTO parked_payments (src_topic, src_partition, payment_id, merchant_id, "
            "currency, reason, item, status, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'parked', ?) "
            "IF NOT EXISTS"
        )
        self._parked = session.prepare(
            "SELECT payment_id, merchant_id, currency, reason, item, status, src_topic, "
            "src_partition FROM parked_payments WHERE src_topic = ? AND src_partition = ?"
        )
        self._release = session.prepare(
            "UPDATE parked_payments SET status = 'released', released_at = ? "
            "WHERE src_topic = ? AND src_partition = ? AND payment_id = ?"
        )

    def record(self, entries: Sequence[LedgerEntry]) -> list[StoredLedgerRow]:
        out: list[StoredLedgerRow | None] = [None] * len(entries)
        pending = list(range(len(entries)))
        now = datetime.now(UTC)

        @retry(
            retry=retry_if_exception_type(RetryableError),
            stop=stop_after_attempt(self._attempts),
            wait=wait_random_exponential(multiplier=0.05, max=2.0),
            reraise=True,
        )
        def attempt() -> None:
            nonlocal pending
            params = [self._params(entries[i], now) for i in pending]
            results = run_concurrent(self._s, [(self._insert, p) for p in params],
                                     self._concurrency)
            failed: list[int] = []
            first_exc: BaseException | None = None
            for i, (ok, res) in zip(pending, results, strict=True):
                if ok:
                    out[i] = _row_of(res, entries[i])
                else:
                    failed.append(i)
                    first_exc = first_exc or res
            pending = failed
            if failed:
                log.warning("ledger.write_retry", failed=len(failed), error=repr(first_exc))
                assert first_exc is not None  # a failed result carries its exception
                raise wrap_error(first_exc, f"ledger write ({len(failed)} failed)")

        if pending:
            attempt()
        return [r for r in out if r is not None]

    @staticmethod
    def _params(e: LedgerEntry, now: datetime) -> tuple[Any, ...]:
        ev = e.event
        return (
            ev.payment_id, ev.event_id, ev.merchant_id, ev.amount_minor, ev.fee_minor,
            ev.currency, ev.captured_at, ev.schema_version, e.fingerprint,
            e.source.topic, e.source.partition, e.source.offset, now,
        )

    def park(self, parked: Sequence[ParkedPayment]) -> None:
        now = datetime.now(UTC)
        params = [
            (p.source.topic, p.source.partition, p.payment_id, p.merchant_id, p.currency,
             p.reason, p.event_json, now)
            for p in parked
        ]
        self._run(self._park, params, "park payments")

    def parked(self, topic: str, partition: int) -> list[ParkedPayment]:
        rows = execute(self._s, self._parked, (topic, partition), "read parked payments")
        return [
            ParkedPayment(r.payment_id, r.merchant_id, r.currency, r.reason, r.item,
                          SourceRef(r.src_topic, r.src_partition, -1))
            for r in rows if r.status == "parked"
        ]

    def mark_released(self, parked: Sequence[ParkedPayment]) -> None:
        now = datetime.now(UTC)
        params = [(now, p.source.topic, p.source.partition, p.payment_id) for p in parked]
        self._run(self._release, params, "mark parked payments released")

    def _run(self, stmt: Any, params: list[tuple[Any, ...]], what: str) -> None:
        execute_all(self._s, stmt, params, what, self._concurrency)
