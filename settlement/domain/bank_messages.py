"""What banks tell us, independent of ISO 20022 versions: statuses, returns, bookings,
statements. Parsers in iso20022/ produce these; the mock bank renders them.

Amounts are integer minor units of `currency`; dates are the bank's dates.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_FROZEN = ConfigDict(frozen=True, extra="forbid")

# pacs.002 statuses we act on (ExternalPaymentTransactionStatus1Code)
AcceptedStatus = Literal["ACSP", "ACCP", "ACSC", "ACTC", "ACWC", "PDNG"]
TxStatus = Literal["ACSP", "ACCP", "ACSC", "ACTC", "ACWC", "PDNG", "RJCT"]


class TxStatusReport(BaseModel):
    """One transaction's status (pacs.002 TxInfAndSts)."""

    model_config = _FROZEN

    orgnl_end_to_end_id: str
    orgnl_uetr: str | None = None
    orgnl_instr_id: str | None = None
    status: TxStatus
    reason: str | None = Field(default=None, description="ISO reason code, e.g. AC01, AM04")
    reason_text: str | None = None


class StatusReport(BaseModel):
    """pacs.002: the bank's answer to one pacs.008 (group status and per transaction)."""

    model_config = _FROZEN

    msg_id: str
    created_at: datetime
    orgnl_msg_id: str
    orgnl_msg_type: str = "pacs.008.001.08"
    group_status: TxStatus | None = None  # e.g. RJCT + FF01 for a schema-invalid file
    group_reason: str | None = None
    transactions: tuple[TxStatusReport, ...] = ()


class PaymentReturn(BaseModel):
    """pacs.004: money of a settled transaction sent back (one TxInf per return)."""

    model_config = _FROZEN

    msg_id: str
    created_at: datetime
    return_id: str
    orgnl_msg_id: str | None = None
    orgnl_end_to_end_id: str
    orgnl_uetr: str | None = None
    returned_minor: int = Field(gt=0)
    currency: str
    settlement_date: date
    reason: str  # e.g. AC04 (account closed), MD07 (debtor deceased)


class Entry(BaseModel):
    """One booking on an account (camt.053 Ntry / camt.054 Ntry)."""

    model_config = _FROZEN

    entry_ref: str | None = None  # NtryRef
    acct_svcr_ref: str | None = None  # AcctSvcrRef: the bank's own reference
    amount_minor: int = Field(ge=0)
    currency: str
    credit_debit: Literal["CRDT", "DBIT"]
    status: Literal["BOOK", "PDNG", "INFO"] = "BOOK"
    booking_date: date
    value_date: date
    # references of the underlying transaction(s); empty for a batch booked as one entry
    end_to_end_ids: tuple[str, ...] = ()
    uetrs: tuple[str, ...] = ()
    msg_id: str | None = None  # the pacs.008 MsgId, for a batch booked as one entry
    is_return: bool = False
    return_reason: str | None = None


class Notification(BaseModel):
    """camt.054: bookings notified as they happen."""

    model_config = _FROZEN

    msg_id: str
    created_at: datetime
    notification_id: str
    account_id: str
    account_currency: str
    entries: tuple[Entry, ...]


class Statement(BaseModel):
    """camt.053: one account's end-of-day statement."""

    model_config = _FROZEN

    msg_id: str
    created_at: datetime
    statement_id: str
    electronic_seq_nb: int | None = None
    account_id: str
    account_currency: str
    servicer_bic: str | None = None
    from_date: date
    to_date: date
    opening_minor: int  # signed: negative for a debit balance
    closing_minor: int
    entries: tuple[Entry, ...]
