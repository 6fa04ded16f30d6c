"""Reconciliation vocabulary: what we expect the bank to book, what it booked, what differs.

Amounts are integer minor units. A payout is expected as a DBIT on the processor's account
on its batch's settlement date; a return (pacs.004 received) as a CRDT on the return's
settlement date. Everything here is plain data; matching lives in `settlement.recon`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import NamedTuple


class BreakType(StrEnum):
    MISSING_AT_BANK = "missing_at_bank"  # we sent it, the bank did not book it
    UNEXPECTED_AT_BANK = "unexpected_at_bank"  # booked, nothing on our side explains it
    AMOUNT_MISMATCH = "amount_mismatch"  # booked for another amount (beyond the tolerance)
    CURRENCY_MISMATCH = "currency_mismatch"  # booked in another currency
    DUPLICATE_AT_BANK = "duplicate_at_bank"  # booked more than once
    VALUE_DATE_MISMATCH = "value_date_mismatch"  # booked, on another day (timing)
    RETURN_UNBOOKED = "return_unbooked"  # a pacs.004 came, its credit is not on the statement
    RETURN_UNEXPECTED = "return_unexpected"  # a return credit with no pacs.004 behind it
    BALANCE_MISMATCH = "balance_mismatch"  # opening + entries != closing (or != previous closing)
    STATEMENT_GAP = "statement_gap"  # a missing sequence number or day


class ExpectedKind(StrEnum):
    PAYOUT = "payout"
    RETURN = "return"


@dataclass(frozen=True, slots=True)
class ExpectedBooking:
    """One booking we expect on a bank statement (a payout sent, or a return received)."""

    kind: ExpectedKind
    bank_bic: str
    settlement_date: date
    currency: str
    end_to_end_id: str
    amount_minor: int
    msg_id: str  # the pacs.008 MsgId (payout) or the pacs.004 MsgId (return)
    merchant_id: str
    gross_minor: int = 0
    fee_minor: int = 0
    ref: str = ""  # the return id, for a return


@dataclass(frozen=True, slots=True)
class ExpectedChunk:
    """Expected bookings sharing kind, bank, date, currency and MsgId, as stored: items are
    [EndToEndId, amount_minor, merchant_id, gross_minor, fee_minor]."""

    kind: ExpectedKind
    bank_bic: str
    settlement_date: date
    currency: str
    msg_id: str
    ref: str  # the return id, for a return
    items: list[list[object]]

    def bookings(self) -> list[ExpectedBooking]:
        return [ExpectedBooking(self.kind, self.bank_bic, self.settlement_date, self.currency,
                                str(e2e), int(str(amount)), self.msg_id, str(merchant),
                                int(str(gross)), int(str(fee)), self.ref)
                for e2e, amount, merchant, gross, fee in self.items]


class BookedLine(NamedTuple):
    """One statement entry, slim (a million of these stream through a reconciliation)."""

    acct_svcr_ref: str | None
    amount_minor: int
    currency: str
    credit_debit: str  # CRDT | DBIT
    status: str  # BOOK | PDNG | INFO
    booking_date: date
    value_date: date
    end_to_end_ids: tuple[str, ...]
    uetrs: tuple[str, ...]
    msg_id: str | None
    is_return: bool

    @property
    def signed_minor(self) -> int:
        return self.amount_minor if self.credit_debit == "CRDT" else -self.amount_minor


@dataclass(frozen=True, slots=True)
class StatementInfo:
    """A statement's header, as reconciliation needs it (entries stream separately)."""

    bank_bic: str
    account_id: str
    currency: str
    statement_id: str
    msg_id: str
    electronic_seq_nb: int | None
    from_date: date
    to_date: date
    opening_minor: int
    closing_minor: int
    source: str  # where it came from: "cassandra" or a file path


@dataclass(frozen=True, slots=True)
class Break:
    """One difference between what we expected and what the bank booked."""

    type: BreakType
    bank_bic: str
    currency: str
    account_id: str = ""
    end_to_end_id: str = ""
    acct_svcr_ref: str = ""
    msg_id: str = ""
    statement_id: str = ""
    expected_minor: int | None = None
    booked_minor: int | None = None
    expected_date: date | None = None
    booked_date: date | None = None
    detail: str = ""

    @property
    def difference_minor(self) -> int:
        return (self.booked_minor or 0) - (self.expected_minor or 0)

    def sort_key(self) -> tuple[str, ...]:
        return (self.type.value, self.bank_bic, self.currency, self.account_id, self.end_to_end_id,
                self.acct_svcr_ref, self.msg_id, self.statement_id, self.detail)


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far a booking may differ and still match cleanly (both default to exact)."""

    amount_minor: int = 0
    value_date_days: int = 0  # a later booking within this many days is timing, not missing
    window_days: int = 3  # how far to look (either side) for a booking on another day

    def __post_init__(self) -> None:
        if self.amount_minor < 0 or self.value_date_days < 0 or self.window_days < 0:
            raise ValueError("tolerances must be >= 0")


@dataclass
class CurrencyTotals:
    expected_count: int = 0
    expected_minor: int = 0
    booked_count: int = 0
    booked_minor: int = 0  # signed: debits negative
    matched_count: int = 0
    matched_minor: int = 0


@dataclass
class MerchantDay:
    """Merchant settlement report line: per merchant, currency and day."""

    payouts: int = 0
    gross_minor: int = 0
    fees_minor: int = 0
    net_paid_minor: int = 0  # net of the payouts the bank booked
    returned_minor: int = 0


@dataclass
class ReconResult:
    """Everything a run found (the report writer stores it; the digest identifies it)."""

    breaks: list[Break] = field(default_factory=list)
    matched: int = 0
    totals: dict[tuple[str, str], CurrencyTotals] = field(default_factory=dict)  # (bank, ccy)
    merchants: dict[tuple[str, str, str], MerchantDay] = field(default_factory=dict)  # bank, merchant, ccy
    statements: list[StatementInfo] = field(default_factory=list)
    entries: int = 0

    def break_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for b in self.breaks:
            counts[b.type.value] = counts.get(b.type.value, 0) + 1
        return dict(sorted(counts.items()))


@dataclass
class RunRecord:
    run_id: str
    run_date: date
    banks: list[str]
    accounts: list[str]
    inputs: list[str]
    tolerance: str
    status: str  # clean | breaks
    expected_count: int
    entries_count: int
    matched_count: int
    break_counts: dict[str, int]
    totals: dict[str, dict[str, int]]
    digest: str
    started_at: datetime
    finished_at: datetime
    code_version: str
    supersedes: str = ""
    breaks: list[Break] = field(default_factory=list)

    @property
    def breaks_count(self) -> int:
        return sum(self.break_counts.values())

    @property
    def duration_ms(self) -> int:
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


def pack_lines(lines: list[str]) -> bytes:
    return zlib.compress("\n".join(lines).encode(), 1)


def unpack_lines(body: bytes) -> list[str]:
    text = zlib.decompress(body).decode()
    return text.split("\n") if text else []
