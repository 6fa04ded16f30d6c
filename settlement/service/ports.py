"""Ports: what the stage handlers need from the outside, as Protocols.

Records in and out are plain dataclasses, so handlers are testable with
in-memory fakes and the Kafka loop stays generic over any handler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Protocol

from settlement.domain.merchant import MerchantAccount
from settlement.domain.payment import PaymentSucceeded, SettlementItem
from settlement.domain.reconciliation import (
    ExpectedBooking,
    ExpectedChunk,
    ReconResult,
    RunRecord,
)

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
    partition: int | None = None  # None: by key; set when a record must land in one partition


@dataclass
class HandlerResult:
    """Records to produce in the transaction, and work to do once it committed or aborted.

    `after_abort` undoes in-memory bookkeeping that assumed the outputs would be
    published: an aborted transaction discards them, and its input is read again, but
    a tick's outputs have no input to be re-read from.
    """

    outputs: list[OutboundRecord] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    after_abort: list[Callable[[], None]] = field(default_factory=list)

    def extend(self, other: HandlerResult) -> None:
        self.outputs.extend(other.outputs)
        self.after_commit.extend(other.after_commit)
        self.after_abort.extend(other.after_abort)


class Handler(Protocol):
    """A stage: records in, records out. The Kafka loop supplies the transaction."""

    def handle(self, records: Sequence[InboundRecord]) -> HandlerResult: ...

    def tick(self, owned: Sequence[tuple[str, int]]) -> HandlerResult:
        """Periodic work for the partitions this worker owns (e.g. releasing parked items)."""
        ...

    def assigned(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Called when partitions are assigned, before their records are handled."""
        ...

    def close(self) -> None:
        """Release what the handler owns (HTTP clients, pools) when the worker stops."""
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

    def warm(self) -> None:
        """Load what the next lookups need, if it is stale (a seal looks up every merchant)."""


class ItemSink(Protocol):
    """Turns an item into the record for the next stage (topic and serialization)."""

    def __call__(self, item: SettlementItem) -> OutboundRecord: ...


@dataclass(frozen=True, slots=True)
class BatchHeader:
    batch_id: str
    bank_bic: str
    currency: str
    window_id: str
    cutoff_at: datetime
    settlement_date: date
    shard: int
    items_topic: str
    items_partition: int


@dataclass(frozen=True, slots=True)
class BatchRow:
    payout_id: str
    payment_id: str
    merchant_id: str
    payout_mode: str
    amount_minor: int
    fee_minor: int
    captured_at: datetime
    late: bool
    attempt: int = 1


class AddOutcome(Enum):
    APPLIED = "applied"
    SEALED = "sealed"
    FENCED = "fenced"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class SealState:
    """What the header says after a seal attempt."""

    applied: bool
    status: str | None
    sealed_by: str | None
    sealed_at: datetime | None
    msg_id: str | None
    owner_epoch: int | None


class BatchStore(Protocol):
    def claim(self, topic: str, partition: int, owner: str) -> int: ...

    def create(self, headers: Sequence[BatchHeader], epoch: int) -> None: ...

    def add(self, groups: dict[str, list[BatchRow]],
            epoch: int | Mapping[str, int]) -> dict[str, AddOutcome]:
        """Rows into open batches, under one owner epoch or each batch's own."""
        ...

    def present(self, keys: Sequence[tuple[str, str, str]]) -> set[tuple[str, str, str]]: ...

    def seal(self, batch_id: str, epoch: int, sealed_by: str, sealed_at: datetime,
             msg_id: str) -> SealState: ...

    def header(self, batch_id: str) -> tuple[BatchHeader, SealState] | None: ...

    def rows(self, batch_id: str) -> list[BatchRow]: ...

    def batches_of(self, topic: str, partition: int) -> list[tuple[str, str, datetime]]: ...

    def message(self, batch_id: str) -> bytes | None: ...

    def save_payouts(self, params: list[tuple[object, ...]]) -> None: ...

    def save_retried(self, params: list[tuple[object, ...]]) -> None:
        """A new attempt of an existing payout: its batch, ids and status, nothing else."""
        ...

    def save_expected(self, batch_id: str, rows: Sequence[ExpectedBooking]) -> None:
        """What reconciliation expects the bank to book for this batch (before save_message)."""
        ...

    def save_message(self, params: tuple[object, ...]) -> None: ...

    def mark_index(self, params: tuple[object, ...]) -> None: ...

    def mark_pending(self, batch_id: str, topic: str, partition: int, msg_id: str,
                     sealed_at: datetime) -> None:
        """A sealed batch whose payout rows are written after its pacs.008 is published:
        before the message is stored, so a stored message always has its rows or this."""
        ...

    def pending_of(self, topic: str, partition: int) -> list[str]:
        """Batches of an items partition whose payout rows are still to be written."""
        ...

    def clear_pending(self, batch_id: str) -> None:
        """The batch's payout rows are written (after they are)."""
        ...

    def mark_unsent(self, payout_ids: Sequence[str], sealed_at: datetime) -> None:
        """Payouts of a sealed batch whose pacs.008 could not be sent: status 'unsent',
        over the seal's own write (deterministic, so a replayed seal writes the same)."""
        ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """A pacs.008 the gateway owes a bank, until the bank has answered it."""

    msg_id: str
    bank_bic: str
    batch_id: str
    xml: bytes
    src_partition: int
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class BankAnswer:
    status_code: int
    body: bytes
    latency_ms: int


@dataclass(frozen=True, slots=True)
class PolledMessage:
    cursor: int
    msg_type: str
    msg_id: str
    xml: bytes


class DeliveryStore(Protocol):
    def enqueue(self, deliveries: Sequence[Delivery]) -> None: ...

    def due(self, partition: int, now: datetime) -> list[Delivery]: ...

    def delivered(self, delivery: Delivery, at: datetime) -> None: ...

    def failed(self, delivery: Delivery, error: str, retry_at: datetime) -> None: ...

    def attempt(self, delivery: Delivery, outcome: str, status: int | None, latency_ms: int,
                error: str | None) -> None: ...

    def banks(self) -> dict[str, int]: ...

    def set_cursor(self, bank_bic: str, cursor: int) -> None: ...


class BankClient(Protocol):
    def send(self, bank_bic: str, xml: bytes) -> BankAnswer:
        """Deliver one pacs.008; raise RetryableError when the bank did not answer it."""
        ...

    def poll(self, bank_bic: str, after: int) -> tuple[list[PolledMessage], int]: ...

    def allows(self, bank_bic: str) -> bool:
        """False while the bank's circuit breaker is open."""
        ...

    def probe_idle(self) -> None:
        """One read-only call to each bank whose breaker is open past its reset and unused."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PayoutRef:
    payout_id: str
    batch_id: str
    merchant_id: str
    amount_minor: int
    currency: str
    status: str


class InboundStore(Protocol):
    def register(self, bank_bic: str, msg_id: str, msg_type: str, src: str) -> str:
        """'new', 'replay' (this very record again) or 'duplicate' (seen from another record)."""
        ...

    def payout_by_e2e(self, end_to_end_id: str) -> PayoutRef | None: ...

    def payouts_of_msg(self, msg_id: str) -> list[PayoutRef]: ...

    def transition(self, payout: PayoutRef, target: str, cause: str, src: str,
                   reason: str | None) -> str:
        """'applied', 'replay' (applied before by this src), or the refused current status."""
        ...

    def park(self, bank_bic: str, msg_id: str, msg_type: str, reason: str, detail: str,
             body: bytes, src: str) -> None: ...

    def save_expected_return(self, row: ExpectedBooking) -> None:
        """A return applied: reconciliation expects its credit on the statement."""
        ...

    def save_statement(self, bank_bic: str, account_id: str, to_date: date, statement_id: str,
                       msg_id: str, seq_nb: int | None, body: bytes) -> None: ...


class ReconStore(Protocol):
    """Reconciliation's inputs (expected bookings, stored statements, payout statuses) and
    its report tables."""

    def banks(self, day: date) -> list[str]: ...

    def expected(self, bank: str, day: date) -> Iterator[ExpectedChunk]: ...

    def statements_of(self, day: date) -> list[tuple[str, str, str]]:
        """(bank, account, statement_id) of the statements received with to_date `day`."""
        ...

    def statement_body(self, bank: str, account: str, day: date, statement_id: str) -> bytes: ...

    def previous_statement(self, bank: str, account: str, before: date) -> bytes | None: ...

    def payout_statuses(self, end_to_end_ids: Sequence[str]) -> dict[str, str]: ...

    def save_run(self, run: RunRecord, result: ReconResult,
                 matched: dict[str, list[tuple[int, bytes]]]) -> None: ...
