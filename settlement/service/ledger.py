"""The ledger stage: validate, record exactly once, route to the batcher or park.

Per batch of records from one poll:
  1. decode and validate each record; bad ones become dead letters;
  2. record the valid ones (the store writes each payment_id once, by LWT);
  3. emit a settlement item for each first write or replay of the same record;
     a second delivery of an identical event is skipped; a different payload
     under a known payment_id is a conflict and becomes a dead letter;
  4. payments whose merchant has no payout account are parked, and released by
     `tick` once the account exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
import structlog

from settlement import metrics
from settlement.config import LedgerSettings, TopicSettings
from settlement.domain.errors import InvalidEventError
from settlement.domain.payment import PaymentSucceeded, SettlementItem, decode_payment
from settlement.service.deadletter import dead_letter
from settlement.service.ports import (
    HandlerResult,
    Headers,
    InboundRecord,
    LedgerEntry,
    LedgerStore,
    MerchantDirectory,
    OutboundRecord,
    ParkedPayment,
    RecordStatus,
    StoredLedgerRow,
)
from settlement.service.tracing import trace_context

log = structlog.get_logger(__name__)

NO_PAYOUT_ACCOUNT = "merchant_without_payout_account"


@dataclass
class LedgerStats:
    recorded: int = 0
    replayed: int = 0
    duplicates: int = 0
    conflicts: int = 0
    dead_letters: int = 0
    parked: int = 0
    released: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


def item_record(item: SettlementItem, topic: str, trace: Headers | None = None) -> OutboundRecord:
    return OutboundRecord(
        topic=topic,
        key=item.partition_key.encode(),
        value=item.model_dump_json().encode(),
        headers=[("payment_id", item.payment_id.encode()), *(trace or [])],
    )


def classify(entry: LedgerEntry, row: StoredLedgerRow) -> RecordStatus:
    if row.fingerprint != entry.fingerprint:
        return RecordStatus.CONFLICT
    if row.source == entry.source:
        # Not applied yet ours: a previous attempt wrote it and then aborted or
        # died before its transaction committed, so the item was never published.
        return RecordStatus.NEW if row.applied else RecordStatus.REPLAYED
    return RecordStatus.DUPLICATE


class LedgerHandler:
    def __init__(
        self,
        store: LedgerStore,
        merchants: MerchantDirectory,
        topics: TopicSettings,
        settings: LedgerSettings,
        worker_id: str,
    ) -> None:
        self._store = store
        self._merchants = merchants
        self._topics = topics
        self._settings = settings
        self._worker_id = worker_id
        self.stats = LedgerStats()

    def handle(self, records: Sequence[InboundRecord]) -> HandlerResult:
        result = HandlerResult()
        entries: list[LedgerEntry] = []
        for rec in records:
            try:
                event = decode_payment(rec.value, max_bytes=self._settings.max_event_bytes)
            except InvalidEventError as exc:
                self._dead_letter(result, rec, exc.code, exc.detail, "InvalidEventError",
                                  payment_id=self._payment_id_of(rec))
                continue
            entries.append(LedgerEntry(event, event.fingerprint(), rec.source))

        by_source = {rec.source: rec for rec in records}
        # First occurrence of each payment_id goes to the store; later ones in the
        # same batch are judged against the row the first one resolved to.
        firsts: dict[str, LedgerEntry] = {}
        for entry in entries:
            firsts.setdefault(entry.event.payment_id, entry)
        unique = list(firsts.values())
        rows = dict(zip(
            (e.event.payment_id for e in unique), self._store.record(unique), strict=True
        ))

        to_park: list[ParkedPayment] = []
        for entry in entries:
            status = classify(entry, rows[entry.event.payment_id])
            if status is RecordStatus.CONFLICT:
                self.stats.conflicts += 1
                row = rows[entry.event.payment_id]
                self._dead_letter(
                    result, by_source[entry.source], "event_conflict",
                    f"payment {entry.event.payment_id} is already recorded from event "
                    f"{row.event_id} at {row.source.topic}/{row.source.partition}@"
                    f"{row.source.offset} with a different payload; the first event wins",
                    "ConflictError", payment_id=entry.event.payment_id,
                )
                continue
            if status is RecordStatus.DUPLICATE:
                self.stats.duplicates += 1
                log.info("ledger.duplicate_skipped", payment_id=entry.event.payment_id,
                         event_id=entry.event.event_id)
                continue
            if status is RecordStatus.NEW:
                self.stats.recorded += 1
            else:
                self.stats.replayed += 1
            parked = self._route(entry.event, result, trace_context(by_source[entry.source].headers))
            if parked is not None:
                to_park.append(ParkedPayment(
                    payment_id=entry.event.payment_id, merchant_id=entry.event.merchant_id,
                    currency=entry.event.currency, reason=parked,
                    event_json=entry.event.model_dump_json(), source=entry.source,
                ))
        if to_park:
            self._store.park(to_park)
            self.stats.parked += len(to_park)
            for p in to_park:
                metrics.parked("ledger", p.reason)
                log.warning("ledger.payment_parked", payment_id=p.payment_id,
                            merchant_id=p.merchant_id, currency=p.currency, reason=p.reason)
        return result

    def _route(self, event: PaymentSucceeded, result: HandlerResult,
               trace: Headers | None = None) -> str | None:
        """Emit the item; return a park reason instead when it cannot be routed."""
        account = self._merchants.lookup(event.merchant_id, event.currency)
        if account is None:
            return NO_PAYOUT_ACCOUNT
        item = SettlementItem.for_payment(event, account.bank_bic, account.payout_mode)
        result.outputs.append(item_record(item, self._topics.items, trace))
        return None

    def close(self) -> None:
        """Nothing to release: the Cassandra session belongs to the worker."""

    def assigned(self, partitions: Sequence[tuple[str, int]]) -> None:
        """The ledger needs no ownership claim: its writes are content-determined."""

    def tick(self, owned: Sequence[tuple[str, int]]) -> HandlerResult:
        """Release parked payments whose merchant now has a payout account."""
        result = HandlerResult()
        releasable: list[ParkedPayment] = []
        still_parked = 0
        for topic, partition in owned:
            if topic != self._topics.payments:
                continue
            for p in self._store.parked(topic, partition):
                event = PaymentSucceeded.model_validate_json(p.event_json)
                if self._route(event, result) is None:
                    releasable.append(p)
                else:
                    still_parked += 1
        metrics.parked_now(still_parked)
        if releasable:
            self.stats.released += len(releasable)
            # Marked only after the items are committed: a crash in between
            # re-releases (the batcher dedups by payment_id) but never loses one.
            result.after_commit.append(lambda: self._store.mark_released(releasable))
            for p in releasable:
                log.info("ledger.payment_released", payment_id=p.payment_id,
                         merchant_id=p.merchant_id, currency=p.currency)
            log.info("ledger.parked_released", count=len(releasable))
        return result

    def _dead_letter(
        self, result: HandlerResult, rec: InboundRecord, code: str, detail: str, error_class: str,
        payment_id: str | None = None,
    ) -> None:
        self.stats.dead_letters += 1
        self.stats.by_reason[code] = self.stats.by_reason.get(code, 0) + 1
        result.outputs.append(dead_letter(
            rec, self._topics.payments_dlq, code, detail, error_class, self._worker_id
        ))
        log.warning("ledger.dead_lettered", reason=code, payment_id=payment_id, detail=detail[:300],
                    topic=rec.source.topic, partition=rec.source.partition,
                    offset=rec.source.offset)

    def _payment_id_of(self, rec: InboundRecord) -> str | None:
        """Best effort, for the log line of a bad record: its payment_id, if it has one."""
        if not rec.value or len(rec.value) > self._settings.max_event_bytes:
            return None
        try:
            doc = orjson.loads(rec.value)
        except orjson.JSONDecodeError:
            return None
        pid = doc.get("payment_id") if isinstance(doc, dict) else None
        return pid[:100] if isinstance(pid, str) else None


def decode_item(raw: bytes) -> SettlementItem:
    return SettlementItem.model_validate(orjson.loads(raw))
