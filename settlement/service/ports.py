"""Ports: what the stage handlers need from the outside, as Protocols.

Records in and out are plain dataclasses, so handlers are testable with
in-memory fakes and the Kafka loop stays generic over any handler.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from settlement.domain.merchant import MerchantAccount
from settlement.domain.payment import PaymentSucceeded, SettlementItem

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class SourceRef:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class InboundRecord:
    source: SourceRef
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = field(default_factory=list)


@dataclass
class HandlerResult:
    """Records to produce in the transaction, and work to do once it committed."""

    outputs: list[OutboundRecord] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)

    def extend(self, other: HandlerResult) -> None:
        self.outputs.extend(other.outputs)
        self.after_commit.extend(other.after_commit)


class Handler(Protocol):
    """A stage: records in, records out. The Kafka loop supplies the transaction."""

    def handle(self, records: Sequence[InboundRecord]) -> HandlerResult: ...

    def tick(self, owned: Sequence[tuple[str, int]]) -> HandlerResult:
        """Periodic work for the partitions this worker owns (e.g. releasing parked items)."""
        ...


class RecordStatus(Enum):
    NEW = "new"                # first write: emit downstream
    REPLAYED = "replayed"      # same source record again after an abort/crash: emit again
    DUPLICATE = "duplicate"    # same event delivered at another offset: nothing to do
    CONFLICT = "conflict"      # same payment_id, different payload: first wins, DLQ this one


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    event: PaymentSucceeded
    fingerprint: str
    source: SourceRef


@dataclass(frozen=True, slots=True)
class StoredLedgerRow:
    """What the store reports back about the row that now holds a payment_id."""

    event_id: str
    fingerprint: str
    source: SourceRef
    applied: bool  # True when this call's write created the row


@dataclass(frozen=True, slots=True)
class ParkedPayment:
    payment_id: str
    merchant_id: str
    currency: str
    reason: str
    event_json: str
    source: SourceRef


class LedgerStore(Protocol):
    def record(self, entries: Sequence[LedgerEntry]) -> list[StoredLedgerRow]:
        """Write each entry if its payment_id is new; return the row that holds it now."""
        ...

    def park(self, parked: Sequence[ParkedPayment]) -> None:
        """Hold valid payments that cannot be routed yet (idempotent)."""
        ...

    def parked(self, topic: str, partition: int) -> list[ParkedPayment]:
        """Payments still parked for one source partition."""
        ...

    def mark_released(self, parked: Sequence[ParkedPayment]) -> None: ...


class MerchantDirectory(Protocol):
    def lookup(self, merchant_id: str, currency: str) -> MerchantAccount | None: ...


class ItemSink(Protocol):
    """Turns an item into the record for the next stage (topic and serialization)."""

    def __call__(self, item: SettlementItem) -> OutboundRecord: ...
