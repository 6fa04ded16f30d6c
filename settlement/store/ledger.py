"""Cassandra ledger: each poll's new payments as one conditional batch per bucket.

A row is keyed by (bucket, payment_id), the bucket a function of payment_id only
(store/buckets.py), so a payment has one place whatever partition it came from.
`insert_new` writes each bucket's rows with one `IF NOT EXISTS` batch: a row that
exists comes back as the row that won, and the handler compares its fingerprint
and source. A timed-out batch is issued again as the same conditional batch —
never a blind write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cassandra.cluster import Session

from settlement.service.ports import LedgerEntry, ParkedPayment, SourceRef, StoredLedgerRow
from settlement.store.buckets import ledger_bucket
from settlement.store.cas_batch import NewRow, Submit, batch_submitter, insert_new
from settlement.store.session import execute, execute_all

_INSERT = """
INSERT INTO ledger_buckets (bucket, payment_id, event_id, merchant_id, amount_minor, fee_minor,
    currency, captured_at, schema_version, fingerprint, src_topic, src_partition, src_offset,
    recorded_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS
"""


def _row_of(found: Any, entry: LedgerEntry, writer: LedgerEntry) -> StoredLedgerRow:
    """The row that holds entry's payment_id: `writer`'s if this call wrote it (None)."""
    if found is None:
        return StoredLedgerRow(writer.event.event_id, writer.fingerprint, writer.source,
                               writer is entry)
    return StoredLedgerRow(
        found.event_id, found.fingerprint,
        SourceRef(found.src_topic, found.src_partition, found.src_offset), False,
    )


def _params(bucket: int, e: LedgerEntry, now: datetime) -> tuple[Any, ...]:
    ev = e.event
    return (
        bucket, ev.payment_id, ev.event_id, ev.merchant_id, ev.amount_minor, ev.fee_minor,
        ev.currency, ev.captured_at, ev.schema_version, e.fingerprint,
        e.source.topic, e.source.partition, e.source.offset, now,
    )


def record_with(submit: Submit, entries: Sequence[LedgerEntry], attempts: int = 5
                ) -> list[StoredLedgerRow]:
    """Write each new payment_id (its first entry wins); return, per entry, the row
    that holds its payment_id now."""
    now = datetime.now(UTC)
    writers: dict[str, LedgerEntry] = {}
    for e in entries:
        writers.setdefault(e.event.payment_id, e)
    rows = [NewRow(b, pid, _params(b, e, now))
            for pid, e in writers.items() for b in (ledger_bucket(pid),)]
    found = insert_new(submit, rows, lambda r: r.payment_id, "ledger write", attempts)
    return [_row_of(found[e.event.payment_id], e, writers[e.event.payment_id]) for e in entries]


class CassandraLedgerStore:
    def __init__(self, session: Session, concurrency: int = 128, attempts: int = 5) -> None:
        self._s = session
        self._concurrency = concurrency
        self._attempts = attempts
        self._submit = batch_submitter(session, session.prepare(_INSERT))
        self._submit_park = batch_submitter(session, session.prepare(
            "INSERT INTO parked_payments (src_topic, src_partition, payment_id, merchant_id, "
            "currency, reason, item, status, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'parked', ?) "
            "IF NOT EXISTS"
        ))
        self._parked = session.prepare(
            "SELECT payment_id, merchant_id, currency, reason, item, status, src_topic, "
            "src_partition FROM parked_payments WHERE src_topic = ? AND src_partition = ?"
        )
        self._release = session.prepare(
            "UPDATE parked_payments SET status = 'released', released_at = ? "
            "WHERE src_topic = ? AND src_partition = ? AND payment_id = ?"
        )

    def record(self, entries: Sequence[LedgerEntry]) -> list[StoredLedgerRow]:
        return record_with(self._submit, entries, self._attempts)

    def park(self, parked: Sequence[ParkedPayment]) -> None:
        """One conditional batch per source partition: a payment parked before keeps
        its row (and its status, if released meanwhile)."""
        now = datetime.now(UTC)
        rows = [NewRow((p.source.topic, p.source.partition),
                       (p.source.topic, p.source.partition, p.payment_id),
                       (p.source.topic, p.source.partition, p.payment_id, p.merchant_id,
                        p.currency, p.reason, p.event_json, now))
                for p in parked]
        insert_new(self._submit_park, rows, lambda r: (r.src_topic, r.src_partition, r.payment_id),
                   "park payments", self._attempts)

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
