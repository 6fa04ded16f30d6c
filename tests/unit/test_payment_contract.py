"""Every bad-input case of issue 2 maps to one clear DLQ reason."""

import json
from pathlib import Path
from typing import Any

import pytest

from settlement.cli.admin import SCHEMA_FILE, _schema_json
from settlement.domain.errors import InvalidEventError
from settlement.domain.payment import decode_payment

MAX = 1024 * 1024
GOOD: dict[str, Any] = {
    "schema_version": 1, "event_id": "evt-1", "payment_id": "pay-1", "merchant_id": "m-1",
    "amount_minor": 1000, "fee_minor": 30, "currency": "EUR",
    "captured_at": "2026-11-02T09:00:00+01:00",
}


def with_(**changes: Any) -> bytes:
    ev = dict(GOOD)
    for k, v in changes.items():
        if v is None:
            ev.pop(k)
        else:
            ev[k] = v
    return json.dumps(ev).encode()


def test_valid_event_decodes_to_utc_with_exact_ints() -> None:
    ev = decode_payment(with_(), max_bytes=MAX)
    assert ev.amount_minor == 1000 and ev.fee_minor == 30 and ev.net_minor == 970
    assert ev.captured_at.isoformat() == "2026-11-02T08:00:00+00:00"


BAD_CASES = [
    ("non_json_bytes", b"\x00\xffnot json", "not_json"),
    ("empty", b"", "empty_message"),
    ("json_array_wrong_shape", b"[1, 2, 3]", "wrong_shape"),
    ("json_string_wrong_shape", b'"payment"', "wrong_shape"),
    ("missing_field", with_(merchant_id=None), "missing_field"),
    ("extra_field", with_(surprise=1), "unexpected_field"),
    ("amount_as_string", with_(amount_minor="1000"), "amount_minor_not_integer_minor_units"),
    ("amount_zero", with_(amount_minor=0), "amount_not_positive"),
    ("amount_negative", with_(amount_minor=-1), "amount_not_positive"),
    ("fee_negative", with_(fee_minor=-1), "fee_negative"),
    ("fee_greater_than_amount", with_(fee_minor=1001), "fee_exceeds_amount"),
    ("unknown_currency", with_(currency="XZZ"), "unknown_currency"),
    ("lowercase_currency", with_(currency="eur"), "unknown_currency"),
    ("fractional_minor_units", with_(amount_minor=1000.5), "amount_minor_not_integer_minor_units"),
    ("float_whole_number", with_(amount_minor=1000.0), "amount_minor_not_integer_minor_units"),
    ("fee_fractional", with_(fee_minor=0.5), "fee_minor_not_integer_minor_units"),
    ("unknown_schema_version", with_(schema_version=2), "unknown_schema_version"),
    ("naive_timestamp", with_(captured_at="2026-11-02T09:00:00"), "captured_at_not_utc_aware"),
    ("id_with_spaces", with_(payment_id="pay 1"), "invalid_field"),
    # past the end of the datetime range once in UTC: this crashed the worker (OverflowError)
    ("captured_at_overflows_in_utc", with_(captured_at="9999-12-31T23:30:00-01:00"), "invalid_field"),
    ("oversized", with_(metadata={"pad": "x" * MAX}), "oversized"),
]


@pytest.mark.parametrize(("raw", "reason"), [(r, c) for _, r, c in BAD_CASES],
                         ids=[n for n, _, _ in BAD_CASES])
def test_bad_input_gets_a_clear_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        decode_payment(raw, max_bytes=MAX)
    assert info.value.code == reason
    assert info.value.detail  # a human-readable explanation goes into the DLQ header too


def test_fingerprint_changes_with_any_field() -> None:
    base = decode_payment(with_(), max_bytes=MAX).fingerprint()
    assert decode_payment(with_(), max_bytes=MAX).fingerprint() == base
    for change in ({"amount_minor": 1001}, {"event_id": "evt-2"}, {"currency": "USD"},
                   {"metadata": {"a": "b"}}):
        assert decode_payment(with_(**change), max_bytes=MAX).fingerprint() != base


def test_committed_json_schema_matches_the_model() -> None:
    committed = Path(__file__).resolve().parents[2] / "schemas" / SCHEMA_FILE
    assert committed.read_text(encoding="utf-8") == _schema_json(), (
        "schemas/ drifted from PaymentSucceeded: run `settlement schema export`"
    )
