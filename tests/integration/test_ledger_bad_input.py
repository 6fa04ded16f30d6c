"""Each bad input of issue 2 through a real ledger worker: DLQ with reason, nothing blocked."""

from __future__ import annotations

import json

import pytest

from settlement.domain.merchant import MerchantAccount
from settlement.kafka.reader import headers_dict
from tests.conftest import InProcessWorker, Namespace, wait_until
from tests.integration.helpers import committed, item_counts, ledger_rows, produce_raw, register
from tests.unit.test_payment_contract import BAD_CASES, GOOD, with_

ACCOUNT = MerchantAccount(
    merchant_id="m-1", currency="EUR", creditor_name="Acme", account_id="DE89370400440532013000",
    bank_bic="MOCKDEFFXXX",
)
CONFLICT = with_(amount_minor=5555)  # same payment_id/event_id as GOOD, different payload


@pytest.fixture(scope="module")
def outcome(request: pytest.FixtureRequest) -> dict[str, object]:
    """Produce every bad case between good events once; run one real worker over them."""
    ns: Namespace = request.getfixturevalue("ns_module")
    register(ns.settings, [ACCOUNT])
    records: list[tuple[bytes | None, bytes]] = [(b"pay-1", with_())]
    for n, (_name, raw, _reason) in enumerate(BAD_CASES):
        records.append((f"bad-{n}".encode(), raw))
        good = dict(GOOD, event_id=f"evt-ok-{n}", payment_id=f"pay-ok-{n}")
        records.append((f"pay-ok-{n}".encode(), json.dumps(good).encode()))
    records.append((b"pay-1", CONFLICT))
    produce_raw(ns.settings, records)
    expected_dlq = len(BAD_CASES) + 1
    with InProcessWorker(ns.build_worker()):
        wait_until(lambda: len(committed(ns.settings, ns.settings.topics.payments_dlq))
                   >= expected_dlq, 90, "dead letters")
        wait_until(lambda: sum(item_counts(ns.settings).values()) >= len(BAD_CASES) + 1,
                   60, "items")
    dlq = committed(ns.settings, ns.settings.topics.payments_dlq)
    return {"dlq": {m.value(): headers_dict(m) for m in dlq}, "dlq_count": len(dlq),
            "items": item_counts(ns.settings), "ledger": ledger_rows(ns.settings)}


@pytest.mark.parametrize(("raw", "reason"), [(r, c) for _, r, c in BAD_CASES],
                         ids=[n for n, _, _ in BAD_CASES])
def test_bad_record_lands_in_dlq_with_original_bytes_and_reason(
    outcome: dict[str, object], raw: bytes, reason: str
) -> None:
    dlq = outcome["dlq"]
    assert isinstance(dlq, dict)
    assert raw in dlq, "original bytes not found on the DLQ"
    h = dlq[raw]
    assert h["dlq.reason"] == reason
    assert h["dlq.error_class"] == "InvalidEventError"
    assert h["dlq.detail"]
    assert h["dlq.source.topic"].endswith("payments.succeeded")
    assert int(h["dlq.source.offset"]) >= 0 and int(h["dlq.source.partition"]) >= 0


def test_conflicting_redelivery_goes_to_dlq_and_the_first_wins(outcome: dict[str, object]) -> None:
    dlq = outcome["dlq"]
    assert isinstance(dlq, dict)
    assert dlq[CONFLICT]["dlq.reason"] == "event_conflict"
    ledger = outcome["ledger"]
    assert isinstance(ledger, dict)
    assert ledger["pay-1"][0] == GOOD["amount_minor"]


def test_dlq_holds_each_bad_record_exactly_once_and_good_ones_all_pass(
    outcome: dict[str, object],
) -> None:
    assert outcome["dlq_count"] == len(BAD_CASES) + 1
    items = outcome["items"]
    assert isinstance(items, dict)
    expected = {"pay-1"} | {f"pay-ok-{n}" for n in range(len(BAD_CASES))}
    assert set(items) == expected and all(c == 1 for c in items.values())
