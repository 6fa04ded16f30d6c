"""Reconciliation's expected side in Cassandra: packed chunks per bank and settlement date.

The batcher saves a sealed batch's payouts (chunks of CHUNK, keyed `<batch_id>#<n>`) and
the inbound stage each return it applies (keyed by the return id). Both are plain,
deterministic writes, so a replayed seal or pacs.004 writes the same rows again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date

import orjson
from cassandra.cluster import Session

from settlement.domain.reconciliation import ExpectedBooking, ExpectedChunk, ExpectedKind
from settlement.store.session import execute, execute_all

CHUNK = 1000


def _key(row: ExpectedBooking) -> tuple[str, date, str, str]:
    return row.bank_bic, row.settlement_date, row.currency, row.msg_id


class CassandraExpectedStore:
    def __init__(self, session: Session, concurrency: int = 64) -> None:
        self._s = session
        self._concurrency = concurrency
        p = session.prepare
        self._put = p(
            "INSERT INTO expected_bookings (bank_bic, settlement_date, kind, ref, currency, msg_id, "
            "items, total_minor, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._day = p("INSERT INTO recon_days (settlement_date, bank_bic) VALUES (?, ?)")
        self._read = p(
            "SELECT kind, ref, currency, msg_id, body FROM expected_bookings "
            "WHERE bank_bic = ? AND settlement_date = ?")
        self._read.fetch_size = 50
        self._banks = p("SELECT bank_bic FROM recon_days WHERE settlement_date = ?")

    def save_payouts(self, batch_id: str, rows: Sequence[ExpectedBooking]) -> None:
        """A sealed batch's payouts (all of one bank, date, currency and pacs.008)."""
        if not rows:
            return
        bank, day, currency, msg_id = _key(rows[0])
        if any(_key(r) != (bank, day, currency, msg_id) for r in rows):
            raise ValueError("a batch's expected bookings share bank, date, currency and MsgId")
        params = []
        for n, start in enumerate(range(0, len(rows), CHUNK)):
            part = rows[start:start + CHUNK]
            body = orjson.dumps([[r.end_to_end_id, r.amount_minor, r.merchant_id, r.gross_minor,
                                  r.fee_minor] for r in part])
            params.append((bank, day, ExpectedKind.PAYOUT.value, f"{batch_id}#{n:04d}", currency,
                           msg_id, len(part), sum(r.amount_minor for r in part), body))
        self.index_day(bank, day)
        execute_all(self._s, self._put, params, "save expected payouts", self._concurrency)

    def save_return(self, row: ExpectedBooking) -> None:
        body = orjson.dumps([[row.end_to_end_id, row.amount_minor, row.merchant_id, 0, 0]])
        self.index_day(row.bank_bic, row.settlement_date)
        execute_all(self._s, self._put, [(
            row.bank_bic, row.settlement_date, ExpectedKind.RETURN.value, row.ref, row.currency,
            row.msg_id, 1, row.amount_minor, body)], "save expected return")

    def index_day(self, bank_bic: str, day: date) -> None:
        """`bank_bic` has something to reconcile on `day` (bookings expected, or a statement)."""
        execute(self._s, self._day, (day, bank_bic), "index reconciliation day")

    def banks(self, day: date) -> list[str]:
        return sorted(r.bank_bic for r in execute(self._s, self._banks, (day,), "list banks of day"))

    def day(self, bank_bic: str, day: date) -> Iterator[ExpectedChunk]:
        """Every expected booking of one bank and settlement date, chunk by chunk."""
        for row in execute(self._s, self._read, (bank_bic, day), "read expected bookings"):
            kind = ExpectedKind(row.kind)
            yield ExpectedChunk(kind, bank_bic, day, row.currency, row.msg_id,
                                row.ref if kind is ExpectedKind.RETURN else "", orjson.loads(row.body))
