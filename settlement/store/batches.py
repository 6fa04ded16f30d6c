"""Cassandra batch store: epoch-guarded conditional batches, one partition per batch.

Single ownership: each items partition has an owner epoch, bumped by LWT when a
worker is assigned it. Every write to a batch partition is a conditional batch
`IF status = 'open' AND owner_epoch <= my_epoch` that also stamps my epoch, so
once the current owner has touched a batch no older (zombie) worker can change
it, and a sealed batch never changes again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cassandra.query import BatchStatement, BatchType

from settlement.domain.errors import RetryableError
from settlement.domain.reconciliation import ExpectedBooking
from settlement.service.ports import AddOutcome, BatchHeader, BatchRow, SealState
from settlement.store.expected import CassandraExpectedStore
from settlement.store.session import execute, execute_all, wrap_error, write_batched

CHUNK = 100  # rows per conditional batch: well under batch_size_fail_threshold (50 KiB)


class CassandraBatchStore:
    def __init__(self, session: Session, concurrency: int = 128, batch_rows: int = 32) -> None:
        self._s = session
        self._concurrency = concurrency
        self._batch_rows = batch_rows
        self._expected = CassandraExpectedStore(session, concurrency)
        p = session.prepare
        self._claim_new = p("INSERT INTO batcher_owners (items_topic, items_partition, epoch, owner) "
                            "VALUES (?, ?, 1, ?) IF NOT EXISTS")
        self._claim_bump = p("UPDATE batcher_owners SET epoch = ?, owner = ? "
                             "WHERE items_topic = ? AND items_partition = ? IF epoch = ?")
        self._create = p(
            "INSERT INTO batches (batch_id, status, owner_epoch, bank_bic, currency, window_id, "
            "cutoff_at, settlement_date, shard, items_partition) "
            "VALUES (?, 'open', ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS")
        self._index = p(
            "INSERT INTO batch_index (items_topic, items_partition, batch_id, bank_bic, currency, "
            "window_id, cutoff_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'open')")
        self._guard = p("UPDATE batches SET owner_epoch = ? WHERE batch_id = ? "
                        "IF status = 'open' AND owner_epoch <= ?")
        self._row = p(
            "INSERT INTO batches (batch_id, payout_id, payment_id, merchant_id, payout_mode, "
            "amount_minor, fee_minor, captured_at, late, attempt) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._present = p("SELECT payment_id FROM batches WHERE batch_id = ? AND payout_id = ? "
                          "AND payment_id = ?")
        self._seal = p(
            "UPDATE batches SET status = 'sealed', sealed_at = ?, sealed_by = ?, msg_id = ?, "
            "owner_epoch = ? WHERE batch_id = ? IF status = 'open' AND owner_epoch <= ?")
        self._rows = p(
            "SELECT payout_id, payment_id, merchant_id, payout_mode, amount_minor, fee_minor, "
            "captured_at, late, attempt FROM batches WHERE batch_id = ?")
        self._rows.consistency_level = ConsistencyLevel.SERIAL  # LWT-written: read via Paxos
        self._header = p(
            "SELECT batch_id, status, bank_bic, currency, window_id, cutoff_at, settlement_date, "
            "shard, items_partition, sealed_at, sealed_by, msg_id, owner_epoch "
            "FROM batches WHERE batch_id = ? LIMIT 1")
        self._header.consistency_level = ConsistencyLevel.SERIAL
        self._open = p("SELECT batch_id, status, cutoff_at FROM batch_index "
                       "WHERE items_topic = ? AND items_partition = ?")
        self._msg_get = p("SELECT xml FROM batch_messages WHERE batch_id = ?")
        self._msg_put = p(
            "INSERT INTO batch_messages (batch_id, msg_id, bank_bic, currency, settlement_date, "
            "nb_of_txs, ctrl_sum, xml, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._payout = p(
            "INSERT INTO payouts (payout_id, batch_id, merchant_id, currency, window_id, "
            "amount_minor, gross_minor, fee_minor, payments, late_payments, attempt, "
            "end_to_end_id, instr_id, uetr, status, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?")
        self._by_msg = p("INSERT INTO batches_by_msg (msg_id, batch_id, bank_bic) VALUES (?, ?, ?)")
        self._retried = p(
            "UPDATE payouts USING TIMESTAMP ? SET batch_id = ?, window_id = ?, attempt = ?, "
            "end_to_end_id = ?, instr_id = ?, uetr = ?, status = ?, updated_at = ? "
            "WHERE payout_id = ?")
        self._unsent = p("UPDATE payouts USING TIMESTAMP ? SET status = 'unsent' "
                         "WHERE payout_id = ?")
        self._index_sealed = p(
            "UPDATE batch_index SET status = ?, nb_of_txs = ?, ctrl_sum = ?, payments = ?, "
            "late_payments = ?, msg_id = ?, sealed_at = ? "
            "WHERE items_topic = ? AND items_partition = ? AND batch_id = ?")
        self._pending_put = p(
            "INSERT INTO payouts_pending (scope, batch_id, items_topic, items_partition, msg_id, "
            "sealed_at) VALUES (0, ?, ?, ?, ?, ?)")
        self._pending_all = p("SELECT batch_id, items_topic, items_partition FROM payouts_pending "
                              "WHERE scope = 0")
        self._pending_del = p("DELETE FROM payouts_pending WHERE scope = 0 AND batch_id = ?")

    # -- ownership ------------------------------------------------------------

    def claim(self, topic: str, partition: int, owner: str) -> int:
        """Take ownership of an items partition: a new epoch, higher than every earlier one."""
        for _ in range(20):
            row = self._one(self._claim_new, (topic, partition, owner), "claim partition")
            if row.applied:
                return 1
            epoch = int(row.epoch)
            bumped = self._one(self._claim_bump, (epoch + 1, owner, topic, partition, epoch),
                               "claim partition")
            if bumped.applied:
                return epoch + 1
        raise RetryableError(f"could not claim {topic}/{partition}: contended")

    # -- items -----------------------------------------------------------------

    def create(self, headers: Sequence[BatchHeader], epoch: int) -> None:
        params = [(h.batch_id, epoch, h.bank_bic, h.currency, h.window_id, h.cutoff_at,
                   h.settlement_date, h.shard, h.items_partition) for h in headers]
        created = self._all(self._create, params, "create batches")
        # Index only batches that are open: an item replayed after its batch was sealed
        # names that batch again, and this plain INSERT would set its status back to 'open'.
        still_open = [h for h, res in zip(headers, created, strict=True) if _is_open(res.one())]
        self._all(self._index, [(h.items_topic, h.items_partition, h.batch_id, h.bank_bic,
                                 h.currency, h.window_id, h.cutoff_at) for h in still_open],
                  "index batches")

    def add(self, groups: dict[str, list[BatchRow]],
            epoch: int | Mapping[str, int]) -> dict[str, AddOutcome]:
        """Add rows to open batches: one conditional batch per batch (per chunk), all at once,
        each under `epoch` or, for batches of several items partitions, its own `epoch[id]`."""
        stmts: list[tuple[str, int, BatchStatement]] = []
        for batch_id, rows in groups.items():
            mine = epoch if isinstance(epoch, int) else epoch[batch_id]
            for i in range(0, len(rows), CHUNK):
                b = BatchStatement(batch_type=BatchType.LOGGED)
                b.add(self._guard, (mine, batch_id, mine))
                for r in rows[i:i + CHUNK]:
                    b.add(self._row, (batch_id, r.payout_id, r.payment_id, r.merchant_id,
                                      r.payout_mode, r.amount_minor, r.fee_minor, r.captured_at,
                                      r.late, r.attempt))
                stmts.append((batch_id, mine, b))
        futures = [(bid, mine, self._s.execute_async(b)) for bid, mine, b in stmts]
        out: dict[str, AddOutcome] = {}
        for bid, mine, fut in futures:
            try:
                rs = fut.result()
            except Exception as exc:
                raise wrap_error(exc, f"add rows to batch {bid}") from exc
            outcome = _outcome(rs.one(), mine)
            # One failed chunk decides for the batch: the caller re-checks row by row.
            if out.get(bid, AddOutcome.APPLIED) is AddOutcome.APPLIED:
                out[bid] = outcome
        return out

    def present(self, keys: Sequence[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
        results = self._all(self._present, list(keys), "check batch rows")
        return {k for k, rows in zip(keys, results, strict=True) if rows.one() is not None}

    # -- sealing ---------------------------------------------------------------

    def seal(self, batch_id: str, epoch: int, sealed_by: str, sealed_at: datetime,
             msg_id: str) -> SealState:
        row = self._one(self._seal, (sealed_at, sealed_by, msg_id, epoch, batch_id, epoch),
                        f"seal {batch_id}")
        if row.applied:
            return SealState(True, "sealed", sealed_by, sealed_at, msg_id, epoch)
        # A failed conditional update returns only the IF columns: read the rest (SERIAL).
        found = self.header(batch_id)
        if found is None:
            return SealState(False, None, None, None, None, None)
        return found[1]

    def header(self, batch_id: str, topic: str = "") -> tuple[BatchHeader, SealState] | None:
        r = self._one(self._header, (batch_id,), f"read batch {batch_id}")
        if r is None or r.status is None:
            return None
        sd = r.settlement_date
        head = BatchHeader(r.batch_id, r.bank_bic, r.currency, r.window_id,
                           r.cutoff_at.replace(tzinfo=UTC), sd.date() if hasattr(sd, "date") else sd,
                           r.shard, topic, r.items_partition)
        sealed_at = r.sealed_at.replace(tzinfo=UTC) if r.sealed_at else None
        return head, SealState(False, r.status, r.sealed_by, sealed_at, r.msg_id, r.owner_epoch)

    def rows(self, batch_id: str) -> list[BatchRow]:
        res = execute(self._s, self._rows, (batch_id,), f"read batch {batch_id}")
        return [BatchRow(r.payout_id, r.payment_id, r.merchant_id, r.payout_mode,
                         r.amount_minor, r.fee_minor, r.captured_at, bool(r.late), r.attempt or 1)
                for r in res if r.payment_id is not None]

    def batches_of(self, topic: str, partition: int) -> list[tuple[str, str, datetime]]:
        res = execute(self._s, self._open, (topic, partition), "list batches")
        return [(r.batch_id, r.status, r.cutoff_at) for r in res]

    def message(self, batch_id: str) -> bytes | None:
        row = self._one(self._msg_get, (batch_id,), f"read message of {batch_id}")
        return None if row is None else bytes(row.xml)

    def save_payouts(self, params: list[tuple[Any, ...]]) -> None:
        # Written once, before the pacs.008 is stored and sent, so no bank answer can be
        # ahead of it; the write timestamp is the seal time (deterministic, so a replayed
        # save is the same write), older than any later status transition, which wins.
        stamped = [(*p, int(p[15].timestamp() * 1_000_000)) for p in params]
        write_batched(self._s, self._payout, stamped, "save payouts", self._batch_rows)

    def save_retried(self, params: list[tuple[Any, ...]]) -> None:
        # Same layout as save_payouts; only the attempt's own facts change.
        rows = [(int(p[15].timestamp() * 1_000_000), p[1], p[4], p[10], p[11], p[12], p[13],
                 p[14], p[15], p[0]) for p in params]
        write_batched(self._s, self._retried, rows, "save retried payouts", self._batch_rows)

    def save_expected(self, batch_id: str, rows: Sequence[ExpectedBooking]) -> None:
        self._expected.save_payouts(batch_id, rows)

    def save_message(self, params: tuple[Any, ...]) -> None:
        self._all(self._by_msg, [(params[1], params[0], params[2])], "index pacs.008")
        self._all(self._msg_put, [params], "save pacs.008")

    def mark_pending(self, batch_id: str, topic: str, partition: int, msg_id: str,
                     sealed_at: datetime) -> None:
        self._all(self._pending_put, [(batch_id, topic, partition, msg_id, sealed_at)],
                  "mark payouts pending")

    def pending_of(self, topic: str, partition: int) -> list[str]:
        rows = execute(self._s, self._pending_all, (), "list pending payouts")
        return sorted(r.batch_id for r in rows
                      if r.items_topic == topic and r.items_partition == partition)

    def clear_pending(self, batch_id: str) -> None:
        self._all(self._pending_del, [(batch_id,)], "clear pending payouts")

    def mark_index(self, params: tuple[Any, ...]) -> None:
        self._all(self._index_sealed, [params], "update batch index")

    def mark_unsent(self, payout_ids: Sequence[str], sealed_at: datetime) -> None:
        # One microsecond after the seal's own write of these rows, so it wins over their
        # 'sent' and loses to any later transition (an operator's retry).
        stamp = int(sealed_at.timestamp() * 1_000_000) + 1
        write_batched(self._s, self._unsent, [(stamp, p) for p in payout_ids],
                      "mark payouts unsent", self._batch_rows)

    # -- plumbing --------------------------------------------------------------

    def _one(self, stmt: Any, params: tuple[Any, ...], what: str) -> Any:
        return execute(self._s, stmt, params, what).one()

    def _all(self, stmt: Any, params: list[tuple[Any, ...]], what: str) -> list[Any]:
        return execute_all(self._s, stmt, params, what, self._concurrency)


def _is_open(row: Any) -> bool:
    """Created now, or found open (a retry after a crash between create and index)."""
    return bool(row.applied) or getattr(row, "status", None) == "open"


def _outcome(row: Any, epoch: int) -> AddOutcome:
    if row.applied:
        return AddOutcome.APPLIED
    status = getattr(row, "status", None)
    if status is None:
        return AddOutcome.MISSING
    if status != "open":
        return AddOutcome.SEALED
    if (row.owner_epoch or 0) > epoch:
        return AddOutcome.FENCED
    raise RetryableError(f"conditional batch not applied for no known reason: {row}")
