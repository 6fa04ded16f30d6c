"""The gateway stage: deliver each pacs.008 to its bank, and bring the banks' answers in.

A pacs.008 from bank.outbound is first written to the delivery queue
(Cassandra), then tried right away; whatever the bank answers goes to
bank.inbound in the same transaction as the offset. If the bank is slow, down
or its breaker is open, the offset still commits: the queue holds the
obligation and `tick` retries it with backoff, so one failing bank never holds
up the others. Re-deliveries carry the same MsgId, so the bank can recognise
them. `tick` also polls each bank's outbox (statuses, returns, notifications,
statements); the inbound stage deduplicates by the bank's MsgId.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import structlog

from settlement.config import GatewaySettings, TopicSettings
from settlement.domain.errors import RetryableError
from settlement.service.deadletter import dead_letter, header
from settlement.service.ports import (
    BankAnswer,
    BankClient,
    Delivery,
    DeliveryStore,
    HandlerResult,
    InboundRecord,
    OutboundRecord,
)

log = structlog.get_logger(__name__)


@dataclass
class GatewayStats:
    delivered: int = 0
    failed_attempts: int = 0
    skipped_breaker_open: int = 0
    polled: int = 0


def poll_owner(bank_bic: str, partitions: int) -> int:
    """The bank.outbound partition whose owner polls this bank's outbox (one poller per bank)."""
    return zlib.crc32(bank_bic.encode()) % partitions


class GatewayHandler:
    def __init__(self, store: DeliveryStore, client: BankClient, topics: TopicSettings,
                 settings: GatewaySettings, worker_id: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._client = client
        self._topics = topics
        self._settings = settings
        self._worker_id = worker_id
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="bank-call")
        self._polled_at: dict[str, datetime] = {}
        # Delivered in the still-open transaction: not due again until it commits (or the
        # transaction could have timed out and the batch been redone).
        self._inflight: dict[str, datetime] = {}
        self._probe: Future[None] | None = None
        self.stats = GatewayStats()

    def assigned(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Nothing to claim: the queue is partitioned like the topic."""

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    def handle(self, records: Sequence[InboundRecord]) -> HandlerResult:
        result = HandlerResult()
        fresh: list[Delivery] = []
        for rec in records:
            msg_id, bank = header(rec.headers, "msg_id"), (rec.key or b"").decode()
            if not msg_id or not bank or not rec.value:
                result.outputs.append(dead_letter(
                    rec, f"{self._topics.bank_outbound}.dlq", "not_a_batch_message",
                    "bank.outbound record without key (BIC), msg_id header or body",
                    "ValueError", self._worker_id))
                log.warning("gateway.dead_lettered", reason="not_a_batch_message", msg_id=msg_id,
                            batch_id=header(rec.headers, "batch_id"), topic=rec.source.topic,
                            partition=rec.source.partition, offset=rec.source.offset)
                continue
            fresh.append(Delivery(msg_id, bank, header(rec.headers, "batch_id") or "",
                                  rec.value, rec.source.partition))
        if fresh:
            self._store.enqueue(fresh)  # the obligation, before any attempt
            self._deliver(fresh, result)
        return result

    def tick(self, owned: Sequence[tuple[str, int]]) -> HandlerResult:
        result = HandlerResult()
        now = self._clock()
        mine = sorted(p for t, p in owned if t == self._topics.bank_outbound)
        stale = now - timedelta(minutes=2)
        due = [d for p in mine for d in self._store.due(p, now)
               if self._inflight.get(d.msg_id, stale) <= stale]
        if due:
            self._deliver(due, result)
        if mine:
            self._poll(set(mine), now, result)
        if self._probe is None or self._probe.done():  # off the loop: a down bank may time out
            self._probe = self._pool.submit(self._client.probe_idle)
        return result

    # -- delivery ----------------------------------------------------------

    def _deliver(self, deliveries: list[Delivery], result: HandlerResult) -> None:
        ready = [d for d in deliveries if self._client.allows(d.bank_bic)]
        self.stats.skipped_breaker_open += len(deliveries) - len(ready)
        futures = [(d, self._pool.submit(self._client.send, d.bank_bic, d.xml)) for d in ready]
        for d, fut in futures:
            try:
                answer: BankAnswer = fut.result()
            except RetryableError as exc:
                self.stats.failed_attempts += 1
                retry_at = self._clock() + self._backoff(d.attempts + 1)
                self._store.attempt(d, "failed", None, 0, str(exc)[:500])
                self._store.failed(d, str(exc)[:500], retry_at)
                log.warning("gateway.delivery_failed", bank=d.bank_bic, msg_id=d.msg_id,
                            batch_id=d.batch_id, attempt=d.attempts + 1, error=str(exc)[:200],
                            retry_at=retry_at.isoformat())
                continue
            self.stats.delivered += 1
            self._store.attempt(d, "answered", answer.status_code, answer.latency_ms, None)
            result.outputs.append(OutboundRecord(
                topic=self._topics.bank_inbound, key=d.bank_bic.encode(), value=answer.body,
                headers=[("bank_bic", d.bank_bic.encode()), ("msg_type", b"pacs.002"),
                         ("orgnl_msg_id", d.msg_id.encode()), ("via", b"sync")]))
            self._inflight[d.msg_id] = self._clock()
            result.after_commit.append(partial(self._committed, d))
            # Aborted: the answer is gone with the transaction; deliver again at the next
            # tick (the bank answers a repeated MsgId the same) instead of in 2 minutes.
            result.after_abort.append(partial(self._forget, d.msg_id))
            log.info("gateway.delivered", bank=d.bank_bic, msg_id=d.msg_id, batch_id=d.batch_id,
                     latency_ms=answer.latency_ms)

    def _cursor_committed(self, bank: str, cursor: int) -> None:
        self._store.set_cursor(bank, cursor)
        self._inflight.pop(f"poll:{bank}", None)

    def _forget(self, inflight_key: str) -> None:
        self._inflight.pop(inflight_key, None)

    def _committed(self, d: Delivery) -> None:
        self._store.delivered(d, self._clock())
        self._inflight.pop(d.msg_id, None)

    def _backoff(self, attempt: int) -> timedelta:
        return timedelta(seconds=min(2.0 ** min(attempt, 10), self._settings.retry_backoff_max_s))

    # -- polling -----------------------------------------------------------

    def _poll(self, mine: set[int], now: datetime, result: HandlerResult) -> None:
        every = timedelta(seconds=self._settings.poll_interval_s)
        for bank, cursor in sorted(self._store.banks().items()):
            if poll_owner(bank, self._topics.partitions) not in mine or not self._client.allows(bank):
                continue
            if now - self._polled_at.get(bank, datetime.min.replace(tzinfo=UTC)) < every:
                continue
            if self._inflight.get(f"poll:{bank}", now - timedelta(minutes=2)) > now - timedelta(minutes=2):
                continue  # the last poll's messages are not committed yet
            self._polled_at[bank] = now
            try:
                messages, nxt = self._client.poll(bank, cursor)
            except RetryableError as exc:
                log.warning("gateway.poll_failed", bank=bank, error=str(exc)[:200])
                continue
            for m in messages:
                result.outputs.append(OutboundRecord(
                    topic=self._topics.bank_inbound, key=bank.encode(), value=m.xml,
                    headers=[("bank_bic", bank.encode()), ("msg_type", m.msg_type.encode()),
                             ("msg_id", m.msg_id.encode()), ("via", b"poll")]))
            if messages:
                self.stats.polled += len(messages)
                # After commit: a crash in between re-polls; inbound dedups by MsgId.
                self._inflight[f"poll:{bank}"] = now
                result.after_commit.append(partial(self._cursor_committed, bank, nxt))
                result.after_abort.append(partial(self._forget, f"poll:{bank}"))
