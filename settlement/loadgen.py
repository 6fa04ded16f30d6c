"""Deterministic sample payments for demos, tests and benchmarks.

`generate(...)` is pure: the same arguments give the same events, the same
invalid records and the same merchants, so a checker can recompute what a run
must produce from its seed alone.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import orjson
from schwifty import IBAN

from settlement.domain.merchant import MerchantAccount

# Mock-bank BICs (valid format, country codes real, bank codes fictitious).
SAMPLE_BANKS = [
    ("MOCKDEFFXXX", "DE"), ("MOCKFRPPXXX", "FR"), ("MOCKNL2AXXX", "NL"),
    ("MOCKESMMXXX", "ES"), ("MOCKITMMXXX", "IT"),
]
_BANK_CODES = {"DE": "37040044", "FR": "30006", "NL": "ABNA", "ES": "21000418", "IT": "X0542811101"}
_ACCOUNT_LEN = {"DE": 10, "FR": 11, "NL": 10, "ES": 12, "IT": 12}

INVALID_KINDS = (
    "not_json", "wrong_shape", "missing_field", "amount_not_positive", "fee_exceeds_amount",
    "unknown_currency", "amount_minor_not_integer_minor_units", "unknown_schema_version",
    "fee_negative", "event_conflict",
)

Expect = Literal["ledger", "dlq", "duplicate"]


@dataclass(frozen=True)
class SampleRecord:
    key: bytes
    value: bytes
    expect: Expect
    payment_id: str
    reason: str | None = None  # the DLQ reason code, for expect == "dlq"
    amount_minor: int = 0
    fee_minor: int = 0
    currency: str = ""
    merchant_id: str = ""


def merchants(count: int, banks: int, currencies: list[str], seed: int,
              per_payment_share: float = 0.2, id_prefix: str = "") -> list[MerchantAccount]:
    """Merchants m-0000..; each has one bank and an account per currency."""
    rng = random.Random(f"merchants:{seed}")
    out = []
    for i in range(count):
        bic, country = SAMPLE_BANKS[i % min(banks, len(SAMPLE_BANKS))]
        mode: Literal["window", "payment"] = (
            "payment" if rng.random() < per_payment_share else "window")
        for ccy in currencies:
            acct = str(i * 10 + currencies.index(ccy) + 1).rjust(_ACCOUNT_LEN[country], "0")
            iban = IBAN.generate(country, bank_code=_BANK_CODES[country], account_code=acct)
            out.append(MerchantAccount(
                merchant_id=f"{id_prefix}m-{i:04d}", currency=ccy, creditor_name=f"Sample Merchant {i}",
                account_id=str(iban), bank_bic=bic, payout_mode=mode,
            ))
    return out


def _event(event_id: str, payment_id: str, merchant: str, amount: int, fee: int, ccy: str,
           at: datetime) -> dict[str, object]:
    return {
        "schema_version": 1, "event_id": event_id, "payment_id": payment_id,
        "merchant_id": merchant, "amount_minor": amount, "fee_minor": fee,
        "currency": ccy, "captured_at": at.isoformat(),
    }


def _minor_units(value: object) -> int:
    """An amount `_event` put into an event dict (always an int)."""
    if not isinstance(value, int):
        raise TypeError(f"expected int minor units, got {value!r}")
    return value


def _invalid(kind: str, base: dict[str, object]) -> bytes:
    ev = dict(base)
    if kind == "not_json":
        return b"{not json at all" + str(ev["event_id"]).encode()
    if kind == "wrong_shape":
        return orjson.dumps([ev])
    if kind == "missing_field":
        ev.pop("merchant_id")
    elif kind == "amount_not_positive":
        ev["amount_minor"] = 0
    elif kind == "fee_exceeds_amount":
        ev["fee_minor"] = _minor_units(ev["amount_minor"]) + 1
    elif kind == "unknown_currency":
        ev["currency"] = "XZZ"
    elif kind == "amount_minor_not_integer_minor_units":
        ev["amount_minor"] = _minor_units(ev["amount_minor"]) + 0.5
    elif kind == "unknown_schema_version":
        ev["schema_version"] = 99
    elif kind == "fee_negative":
        ev["fee_minor"] = -1
    return orjson.dumps(ev)


def generate(
    count: int, *, merchants_n: int, currencies: list[str], seed: int,
    invalid_ratio: float = 0.0, duplicate_ratio: float = 0.0,
    start: datetime | None = None, span: timedelta = timedelta(hours=1),
    id_prefix: str = "",
) -> Iterator[SampleRecord]:
    """`count` records; about `invalid_ratio` of them bad, `duplicate_ratio` redelivered."""
    rng = random.Random(f"events:{seed}")
    t0 = start or datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    step = span / max(count, 1)
    valid_sent: list[dict[str, object]] = []
    kinds = list(INVALID_KINDS)
    for n in range(count):
        ccy = currencies[n % len(currencies)]
        merchant = f"{id_prefix}m-{rng.randrange(merchants_n):04d}"
        exp_scale = 1 if ccy in ("JPY", "KRW") else 100
        amount = rng.randint(1, 5000) * exp_scale + rng.randint(0, exp_scale - 1)
        fee = amount * 29 // 1000 + (30 if exp_scale == 100 else 0)
        fee = min(fee, amount)
        pid = f"{id_prefix}pay-{seed}-{n:07d}"
        ev = _event(f"{id_prefix}evt-{seed}-{n:07d}", pid, merchant, amount, fee, ccy,
                    t0 + step * n)
        roll = rng.random()
        if roll < invalid_ratio:
            kind = kinds[n % len(kinds)]
            if kind == "event_conflict" and valid_sent:
                orig = valid_sent[rng.randrange(len(valid_sent))]
                clash = dict(orig)
                clash["amount_minor"] = _minor_units(orig["amount_minor"]) + 1
                yield SampleRecord(str(orig["payment_id"]).encode(), orjson.dumps(clash), "dlq",
                                   str(orig["payment_id"]), "event_conflict")
                continue
            if kind == "event_conflict":
                kind = "not_json"
            yield SampleRecord(pid.encode(), _invalid(kind, ev), "dlq", pid, kind)
            continue
        if roll < invalid_ratio + duplicate_ratio and valid_sent:
            orig = valid_sent[rng.randrange(len(valid_sent))]
            yield SampleRecord(str(orig["payment_id"]).encode(), orjson.dumps(orig), "duplicate",
                               str(orig["payment_id"]))
            continue
        valid_sent.append(ev)
        yield SampleRecord(pid.encode(), orjson.dumps(ev), "ledger", pid, None,
                           amount, fee, ccy, merchant)
