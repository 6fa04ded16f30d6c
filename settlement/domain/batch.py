"""Payouts and settlement batches: what the batcher builds and the bank receives.

A payout is what one merchant is paid in one transaction (one EndToEndId and
UETR); a batch is one pacs.008 to one bank, per currency, cutoff window and
shard. All ids are deterministic functions of their inputs, so a re-send is
the same message and the bank can refuse it as a duplicate (DESIGN I2).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, datetime
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from settlement.domain.errors import InvalidTransitionError


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(parts).encode()).digest()


def short_id(prefix: str, *parts: str, length: int = 26) -> str:
    """A deterministic id of at most 35 characters (ISO 20022 Max35Text), A-Z0-9."""
    body = uuid.UUID(bytes=_digest(*parts)[:16]).hex.upper()
    return f"{prefix}{body}"[: min(35, len(prefix) + length)]


def deterministic_uetr(*parts: str) -> str:
    """A UETR in UUIDv4 form (version and variant bits set), derived from its inputs."""
    return str(uuid.UUID(bytes=_digest("uetr", *parts)[:16], version=4))


class Party(BaseModel):
    """A party with its account and its bank, as it appears in a pacs.008."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=140)
    account_id: str = Field(min_length=1, max_length=34)
    account_scheme: Literal["IBAN", "OTHER"] = "IBAN"
    bic: str = Field(min_length=8, max_length=11)


class PayoutTx(BaseModel):
    """One payout as one credit transfer transaction (CdtTrfTxInf)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    payout_id: str
    instr_id: str = Field(max_length=35)
    end_to_end_id: str = Field(max_length=35)
    uetr: str
    amount_minor: int = Field(gt=0)
    currency: str
    creditor: Party
    remittance: str = Field(max_length=140)
    payments: int = Field(ge=1, description="How many payments this payout nets.")


class SealedBatch(BaseModel):
    """A batch ready to render: header facts plus its transactions, sorted by payout_id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_id: str
    msg_id: str = Field(max_length=35)
    created_at: datetime  # CreDtTm: the seal time, stored, so a re-render is identical
    settlement_date: date  # IntrBkSttlmDt
    currency: str
    bank_bic: str  # the creditor agent all transactions go to
    transactions: tuple[PayoutTx, ...]

    @property
    def nb_of_txs(self) -> int:
        return len(self.transactions)

    @property
    def ctrl_sum_minor(self) -> int:
        return sum(t.amount_minor for t in self.transactions)


class PayoutStatus(Enum):
    PENDING = "pending"      # collecting payments in an open batch
    SENT = "sent"            # sealed and published to bank.outbound
    ACCEPTED = "accepted"    # pacs.002 ACSP/ACCP/ACSC
    REJECTED = "rejected"    # pacs.002 RJCT; terminal for this attempt
    RETRYING = "retrying"    # an operator asked for a new attempt; placed in a later batch
    SETTLED = "settled"      # booked (camt.054)
    RETURNED = "returned"    # pacs.004 after settlement


_ALLOWED: dict[PayoutStatus, frozenset[PayoutStatus]] = {
    PayoutStatus.PENDING: frozenset({PayoutStatus.SENT}),
    PayoutStatus.SENT: frozenset({PayoutStatus.ACCEPTED, PayoutStatus.REJECTED,
                                  PayoutStatus.SETTLED}),
    PayoutStatus.ACCEPTED: frozenset({PayoutStatus.SETTLED, PayoutStatus.REJECTED}),
    PayoutStatus.SETTLED: frozenset({PayoutStatus.RETURNED}),
    PayoutStatus.REJECTED: frozenset({PayoutStatus.RETRYING}),
    PayoutStatus.RETRYING: frozenset({PayoutStatus.SENT}),
    PayoutStatus.RETURNED: frozenset(),
}


def transition(current: PayoutStatus, target: PayoutStatus) -> PayoutStatus:
    """The one guarded way to change a payout's status (DESIGN I5)."""
    if target not in _ALLOWED[current]:
        raise InvalidTransitionError(f"payout cannot go from {current.value} to {target.value}")
    return target


def payout_id_for(merchant_id: str, currency: str, window_id: str, payment_id: str,
                  mode: str) -> str:
    """Per window: one payout per merchant, currency and window; per payment: one each."""
    if mode == "payment":
        return short_id("PO", "payment", payment_id)
    return short_id("PO", "window", merchant_id, currency, window_id)


def batch_id_for(bank_bic: str, currency: str, window_id: str, shard: int) -> str:
    """Readable and deterministic: BIC-CCY-window-shard."""
    return f"{bank_bic}-{currency}-{window_id}-{shard}"


def shard_of(payout_id: str, shards: int) -> int:
    return int.from_bytes(_digest("shard", payout_id)[:4], "big") % shards


def transaction_ids(payout_id: str, attempt: int = 1) -> tuple[str, str, str]:
    """(InstrId, EndToEndId, UETR) of one payout attempt; a retry gets new ones.

    The EndToEndId carries the payout id (E<body>-<attempt>, at most 35 characters), so a
    bank's answer quoting it finds its payout without a lookup table.
    """
    if not payout_id.startswith("PO") or not 1 <= attempt <= 9_999_999:
        raise ValueError(f"not a payout id / attempt: {payout_id!r} {attempt}")
    body = payout_id[2:]
    return f"I{body}-{attempt}", f"E{body}-{attempt}", deterministic_uetr(payout_id, str(attempt))


def payout_of_end_to_end_id(end_to_end_id: str) -> tuple[str, int] | None:
    """Inverse of the EndToEndId scheme: (payout_id, attempt), or None if it is not ours."""
    body, sep, attempt = end_to_end_id[1:].rpartition("-")
    if not end_to_end_id.startswith("E") or not sep or not body or not attempt.isdigit():
        return None
    return f"PO{body}", int(attempt)


RETRY_ROW_PREFIX = "~attempt-"


def retry_row_id(attempt: int) -> str:
    """The batch row that stands for a whole payout's new attempt (not a payment)."""
    return f"{RETRY_ROW_PREFIX}{attempt}"
