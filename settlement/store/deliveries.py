"""Cassandra side of the gateway: the delivery queue, attempts, and outbox cursors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cassandra.cluster import Session
from cassandra.util import uuid_from_time

from settlement.service.ports import Delivery
from settlement.store.session import execute


class CassandraDeliveryStore:
    def __init__(self, session: Session) -> None:
        self._s = session
        p = session.prepare
        self._enqueue = p(
            "INSERT INTO deliveries (src_partition, msg_id, bank_bic, batch_id, xml, status, "
            "attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?) IF NOT EXISTS")
        self._cursor_new = p("INSERT INTO bank_cursors (bank_bic, cursor, updated_at) "
                             "VALUES (?, 0, ?) IF NOT EXISTS")
        self._due = p("SELECT msg_id, bank_bic, batch_id, xml, status, attempts, next_attempt_at "
                      "FROM deliveries WHERE src_partition = ?")
        self._done = p("UPDATE deliveries SET status = 'delivered', delivered_at = ? "
                       "WHERE src_partition = ? AND msg_id = ?")
        self._fail = p("UPDATE deliveries SET attempts = ?, last_error = ?, next_attempt_at = ? "
                       "WHERE src_partition = ? AND msg_id = ?")
        self._attempt = p(
            "INSERT INTO delivery_attempts (msg_id, attempt_at, bank_bic, outcome, http_status, "
            "latency_ms, error) VALUES (?, ?, ?, ?, ?, ?, ?)")
        self._banks = p("SELECT bank_bic, cursor FROM bank_cursors")
        self._set_cursor = p("UPDATE bank_cursors SET cursor = ?, updated_at = ? WHERE bank_bic = ?")
        self._known_banks: set[str] = set()

    def _exec(self, stmt: Any, params: tuple[Any, ...], what: str) -> Any:
        return execute(self._s, stmt, params, what)

    def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        now = datetime.now(UTC)
        for d in deliveries:
            self._exec(self._enqueue, (d.src_partition, d.msg_id, d.bank_bic, d.batch_id, d.xml,
                                       now), "enqueue delivery")
            if d.bank_bic not in self._known_banks:
                self._exec(self._cursor_new, (d.bank_bic, now), "register bank")
                self._known_banks.add(d.bank_bic)

    def due(self, partition: int, now: datetime) -> list[Delivery]:
        out = []
        for r in self._exec(self._due, (partition,), "read delivery queue"):
            when = r.next_attempt_at.replace(tzinfo=UTC) if r.next_attempt_at else now
            if r.status == "pending" and when <= now:
                out.append(Delivery(r.msg_id, r.bank_bic, r.batch_id, bytes(r.xml), partition,
                                    r.attempts or 0))
        return out

    def delivered(self, delivery: Delivery, at: datetime) -> None:
        self._exec(self._done, (at, delivery.src_partition, delivery.msg_id), "mark delivered")

    def failed(self, delivery: Delivery, error: str, retry_at: datetime) -> None:
        self._exec(self._fail, (delivery.attempts + 1, error, retry_at, delivery.src_partition,
                                delivery.msg_id), "record failed delivery")

    def attempt(self, delivery: Delivery, outcome: str, status: int | None, latency_ms: int,
                error: str | None) -> None:
        self._exec(self._attempt, (delivery.msg_id, uuid_from_time(datetime.now(UTC)),
                                   delivery.bank_bic, outcome, status, latency_ms, error),
                   "record delivery attempt")

    def banks(self) -> dict[str, int]:
        return {r.bank_bic: r.cursor or 0 for r in self._exec(self._banks, (), "list banks")}

    def set_cursor(self, bank_bic: str, cursor: int) -> None:
        self._exec(self._set_cursor, (cursor, datetime.now(UTC), bank_bic), "store outbox cursor")
