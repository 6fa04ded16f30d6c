"""Cassandra side of the inbound stage: dedup, payout lookups, guarded transitions, parking."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cassandra.util import uuid_from_time

from settlement.domain.batch import payout_of_end_to_end_id
from settlement.domain.errors import NotYetError
from settlement.domain.reconciliation import ExpectedBooking
from settlement.service.ports import PayoutRef
from settlement.store.expected import CassandraExpectedStore
from settlement.store.session import execute, execute_all

READ_CONCURRENCY = 64  # a group reject's payout reads in flight at once
# A sealed batch's payout rows are written after its pacs.008 is published, normally
# within seconds. An answer about a payout not found while a batch is pending waits for
# them (retried); a marker older than this no longer holds answers back: they are parked
# as unknown, as an answer about a payout that does not exist is, and can be retried.
PENDING_WAIT_S = 300.0


class CassandraInboundStore:
    def __init__(self, session: Session) -> None:
        self._s = session
        self._expected = CassandraExpectedStore(session)
        p = session.prepare
        self._statement_day = p("INSERT INTO statements_by_day (to_date, bank_bic, account_id, "
                                "statement_id) VALUES (?, ?, ?, ?)")
        self._register = p(
            "INSERT INTO inbound_messages (bank_bic, msg_id, msg_type, src, received_at) "
            "VALUES (?, ?, ?, ?, ?) IF NOT EXISTS")
        self._reopen = p("UPDATE inbound_messages SET src = ?, outcome = 'retried' "
                         "WHERE bank_bic = ? AND msg_id = ? IF outcome = 'parked'")
        self._outcome = p("UPDATE inbound_messages SET outcome = 'parked' "
                          "WHERE bank_bic = ? AND msg_id = ?")
        self._by_msg = p("SELECT batch_id FROM batches_by_msg WHERE msg_id = ?")
        self._batch_payouts = p("SELECT payout_id FROM batches WHERE batch_id = ?")
        self._payout = p("SELECT payout_id, batch_id, merchant_id, amount_minor, currency, status, "
                         "end_to_end_id FROM payouts WHERE payout_id = ?")
        self._payout.consistency_level = ConsistencyLevel.SERIAL  # written by LWT
        self._pending = p("SELECT batch_id, sealed_at FROM payouts_pending WHERE scope = 0")
        self._move = p("UPDATE payouts SET status = ?, updated_at = ? WHERE payout_id = ? "
                       "IF status = ?")
        self._cause = p("SELECT src FROM payout_transitions WHERE payout_id = ? AND status = ?")
        self._record = p(
            "INSERT INTO payout_transitions (payout_id, status, cause, src, reason, at) "
            "VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS")
        self._park = p(
            "INSERT INTO parked_bank_messages (bank_bic, parked_id, msg_id, msg_type, reason, "
            "detail, body, src, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'parked')")
        self._parked_src = p("SELECT src FROM parked_bank_messages WHERE bank_bic = ?")
        self._statement = p(
            "INSERT INTO bank_statements (bank_bic, account_id, to_date, statement_id, msg_id, "
            "seq_nb, body, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")

    def _exec(self, stmt: Any, params: tuple[Any, ...], what: str) -> Any:
        return execute(self._s, stmt, params, what)

    def register(self, bank_bic: str, msg_id: str, msg_type: str, src: str) -> str:
        row = self._exec(self._register, (bank_bic, msg_id, msg_type, src, datetime.now(UTC)),
                         "register bank message").one()
        if row.applied:
            return "new"
        if row.src == src:
            return "replay"
        if row.outcome == "parked":  # an operator retry of a parked message: apply it again
            again = self._exec(self._reopen, (src, bank_bic, msg_id), "reopen message").one()
            if again.applied:
                return "new"
        return "duplicate"

    def _ref(self, payout_id: str, end_to_end_id: str | None = None) -> PayoutRef | None:
        return _payout_ref(self._exec(self._payout, (payout_id,), "read payout").one(),
                           end_to_end_id)

    def _pending_batches(self) -> list[str]:
        """Sealed batches whose payout rows are still being written (PENDING_WAIT_S)."""
        horizon = datetime.now(UTC).timestamp() - PENDING_WAIT_S
        return sorted(r.batch_id for r in self._exec(self._pending, (), "list pending payouts")
                      if r.sealed_at is None or r.sealed_at.replace(tzinfo=UTC).timestamp() > horizon)

    def payout_by_e2e(self, end_to_end_id: str) -> PayoutRef | None:
        found = payout_of_end_to_end_id(end_to_end_id)
        if found is None:
            return None
        ref = self._ref(found[0], end_to_end_id)
        if ref is not None:
            return ref
        # Not found, or found at an earlier attempt: early (its batch's rows are still
        # being written) or unknown. Read again once no batch is pending: its rows were
        # written before its marker went, so the second read sees them.
        pending = self._pending_batches()
        if pending:
            raise NotYetError(f"payout {found[0]} (EndToEndId {end_to_end_id}) not found "
                              f"while the payouts of {len(pending)} sealed batch(es) are being "
                              f"written, e.g. {pending[0]}: asking again")
        return self._ref(found[0], end_to_end_id)

    def payouts_of_msg(self, msg_id: str) -> list[PayoutRef]:
        r = self._exec(self._by_msg, (msg_id,), "find batch").one()
        if r is None:
            return []
        if r.batch_id in self._pending_batches():
            raise NotYetError(f"the payouts of {msg_id} (batch {r.batch_id}) are being "
                              "written: asking again")
        ids = sorted({x.payout_id for x in self._exec(self._batch_payouts, (r.batch_id,),
                                                       "list payouts") if x.payout_id})
        # Read together, not one after another: a group reject of a 10,000-payout pacs.008
        # is 10,000 Paxos reads (SERIAL).
        rows = execute_all(self._s, self._payout, [(i,) for i in ids], "read payouts",
                           READ_CONCURRENCY)
        refs = [_payout_ref(r.one()) for r in rows]
        return [x for x in refs if x is not None and x.status != "nothing_to_pay"]

    def transition(self, payout: PayoutRef, target: str, cause: str, src: str,
                   reason: str | None) -> str:
        now = datetime.now(UTC)
        if payout.status == target:
            # Already there: ours if the transition record names this record (or none does,
            # after a crash between the two writes); else another message moved it first.
            r = self._exec(self._cause, (payout.payout_id, target), "read transition").one()
            if r is None or r.src == src:
                self._exec(self._record, (payout.payout_id, target, cause, src, reason, now),
                           "record transition")
                return "replay"
            return target
        row = self._exec(self._move, (target, now, payout.payout_id, payout.status),
                         "move payout").one()
        if not row.applied:
            return str(row.status)
        self._exec(self._record, (payout.payout_id, target, cause, src, reason, now),
                   "record transition")
        return "applied"

    def park(self, bank_bic: str, msg_id: str, msg_type: str, reason: str, detail: str,
             body: bytes, src: str) -> None:
        # One parked row per source record and reason, even when the record is replayed.
        for r in self._exec(self._parked_src, (bank_bic,), "read parked"):
            if r.src == f"{src}#{reason}#{msg_id}":
                return
        self._exec(self._park, (bank_bic, uuid_from_time(datetime.now(UTC)), msg_id, msg_type,
                                reason, detail, body, f"{src}#{reason}#{msg_id}"), "park message")
        if msg_id != "?":
            self._exec(self._outcome, (bank_bic, msg_id), "mark message parked")

    def save_expected_return(self, row: ExpectedBooking) -> None:
        self._expected.save_return(row)

    def save_statement(self, bank_bic: str, account_id: str, to_date: date, statement_id: str,
                       msg_id: str, seq_nb: int | None, body: bytes) -> None:
        self._exec(self._statement, (bank_bic, account_id, to_date, statement_id, msg_id, seq_nb,
                                     body, datetime.now(UTC)), "store statement")
        self._exec(self._statement_day, (to_date, bank_bic, account_id, statement_id),
                   "index statement by day")
        self._expected.index_day(bank_bic, to_date)


def _payout_ref(r: Any, end_to_end_id: str | None = None) -> PayoutRef | None:
    if r is None or (end_to_end_id is not None and r.end_to_end_id != end_to_end_id):
        return None  # unknown, or an answer about an attempt that is no longer current
    return PayoutRef(r.payout_id, r.batch_id, r.merchant_id, r.amount_minor, r.currency, r.status)
