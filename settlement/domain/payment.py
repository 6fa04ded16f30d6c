"""The payment-succeeded event contract and the item the ledger hands to the batcher.

The event is the public input contract: `schemas/payment_succeeded.v1.json` is
generated from `PaymentSucceeded` (`settlement schema export`) and a test fails
when the two drift.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from settlement.domain.errors import InvalidEventError
from settlement.domain.money import exponent, is_known_currency

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
MAX_AMOUNT_MINOR = 10**15  # 10 trillion major units: far past any real payment, inside bigint

Identifier = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$",
        description="Opaque id: letters, digits and . _ : - ; at most 128 characters.",
    ),
]


def _check_currency(value: str) -> str:
    if not is_known_currency(value):
        raise PydanticCustomError(
            "unknown_currency", "{value} is not an ISO 4217 currency with a minor unit",
            {"value": value},
        )
    return value


Currency = Annotated[
    str,
    Field(min_length=3, max_length=3, description="ISO 4217 alphabetic code, e.g. EUR"),
    AfterValidator(_check_currency),
]


# Far outside any real capture time, and far from the ends of Python's datetime range:
# converting 9999-12-31T23:30-01:00 to UTC, or finding its cutoff window, would overflow.
EARLIEST_CAPTURE = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_CAPTURE = datetime(9000, 1, 1, tzinfo=UTC)


def _to_utc(value: datetime) -> datetime:
    if not EARLIEST_CAPTURE <= value < LATEST_CAPTURE:  # compared without converting
        raise PydanticCustomError(
            "datetime_out_of_range", "{value} is not between 1970-01-01 and 9000-01-01 UTC",
            {"value": value.isoformat()},
        )
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class PaymentSucceeded(BaseModel):
    """A captured card/wallet payment, ready to be settled to its merchant."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, title="PaymentSucceeded",
    )

    schema_version: Literal[1] = Field(description="Contract version; only 1 exists.")
    event_id: Identifier = Field(description="Unique per event; a redelivery carries the same id.")
    payment_id: Identifier = Field(description="The payment; paid out exactly once.")
    merchant_id: Identifier
    amount_minor: StrictInt = Field(
        gt=0, le=MAX_AMOUNT_MINOR,
        description="Gross amount in integer minor units of `currency` (EUR cents, JPY yen).",
    )
    fee_minor: StrictInt = Field(
        ge=0, le=MAX_AMOUNT_MINOR,
        description="Processor fee in minor units; the merchant is paid amount - fee.",
    )
    currency: Currency
    captured_at: UtcDatetime = Field(
        description="Capture time, RFC 3339 with an offset, from 1970 to 9000 (UTC).")
    metadata: dict[str, str] = Field(
        default_factory=dict, max_length=32,
        description="Free-form producer annotations; carried, never interpreted.",
    )

    @model_validator(mode="after")
    def _fee_within_amount(self) -> PaymentSucceeded:
        if self.fee_minor > self.amount_minor:
            raise PydanticCustomError(
                "fee_exceeds_amount", "fee_minor {fee} exceeds amount_minor {amount}",
                {"fee": self.fee_minor, "amount": self.amount_minor},
            )
        return self

    @property
    def net_minor(self) -> int:
        return self.amount_minor - self.fee_minor

    def fingerprint(self) -> str:
        """Stable digest of every field: equal fingerprints mean the same event."""
        meta = ",".join(f"{k}={v}" for k, v in sorted(self.metadata.items()))
        canon = "|".join((
            str(self.schema_version), self.event_id, self.payment_id, self.merchant_id,
            str(self.amount_minor), str(self.fee_minor), self.currency,
            self.captured_at.isoformat(), meta,
        ))
        return hashlib.sha256(canon.encode()).hexdigest()


# pydantic error type -> DLQ reason code. The first error decides; detail keeps them all.
_TYPE_CODES = {
    "json_invalid": "not_json",
    "json_type": "not_json",
    "model_type": "wrong_shape",
    "model_attributes_type": "wrong_shape",
    "dict_type": "wrong_shape",
    "missing": "missing_field",
    "extra_forbidden": "unexpected_field",
    "unknown_currency": "unknown_currency",
    "fee_exceeds_amount": "fee_exceeds_amount",
    "timezone_aware": "captured_at_not_utc_aware",
}


def _classify(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    loc = tuple(err.get("loc", ()))
    etype = err["type"]
    if loc[:1] == ("schema_version",) and etype != "missing":
        return "unknown_schema_version"
    if loc[:1] in (("amount_minor",), ("fee_minor",)):
        field = str(loc[0])
        if etype in ("int_type", "int_from_float", "int_parsing"):
            return f"{field}_not_integer_minor_units"
        if etype == "greater_than":
            return "amount_not_positive"
        if etype == "greater_than_equal":
            return "fee_negative"
        if etype == "less_than_equal":
            return f"{field}_too_large"
    if etype in _TYPE_CODES:
        return _TYPE_CODES[etype]
    if etype.endswith("_type") or etype.endswith("_parsing"):
        return "wrong_type"
    return "invalid_field"


def _detail(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def decode_payment(raw: bytes | None, *, max_bytes: int) -> PaymentSucceeded:
    """Bytes from Kafka -> a validated event, or `InvalidEventError` with a DLQ reason."""
    if not raw:
        raise InvalidEventError("empty_message", "record value is empty or null")
    if len(raw) > max_bytes:
        raise InvalidEventError(
            "oversized", f"record is {len(raw)} bytes; the limit is {max_bytes}"
        )
    try:
        return PaymentSucceeded.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidEventError(_classify(exc), _detail(exc)) from exc


class SettlementItem(BaseModel):
    """What the ledger emits to `settlement.items` for each recorded payment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_version: Literal[1] = 1
    payment_id: str
    event_id: str
    merchant_id: str
    amount_minor: int
    fee_minor: int
    currency: str
    captured_at: datetime
    bank_bic: str
    payout_mode: Literal["window", "payment"]

    @property
    def partition_key(self) -> str:
        """Route by bank and currency so one batcher owns a batch (DESIGN: one writer)."""
        return f"{self.bank_bic}:{self.currency}"

    @classmethod
    def for_payment(
        cls, event: PaymentSucceeded, bank_bic: str, payout_mode: Literal["window", "payment"]
    ) -> SettlementItem:
        exponent(event.currency)  # the event validated this; fail loudly if that ever changes
        return cls(
            payment_id=event.payment_id, event_id=event.event_id,
            merchant_id=event.merchant_id, amount_minor=event.amount_minor,
            fee_minor=event.fee_minor, currency=event.currency,
            captured_at=event.captured_at, bank_bic=bank_bic, payout_mode=payout_mode,
        )
