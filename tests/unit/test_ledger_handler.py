"""The ledger handler's exactly-once decisions, against in-memory fakes."""

import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from settlement.config import LedgerSettings, TopicSettings
from settlement.domain.merchant import MerchantAccount
from settlement.service.deadletter import header
from settlement.service.ledger import LedgerHandler
from settlement.service.ports import InboundRecord, SourceRef
from tests.unit.fakes import FakeLedgerStore, FakeMerchants

TOPICS = TopicSettings()
ACCOUNT = MerchantAccount(
    merchant_id="m-1", currency="EUR", creditor_name="Acme", account_id="DE89370400440532013000",
    bank_bic="MOCKDEFFXXX", payout_mode="window",
)


def event(pid: str = "pay-1", **changes: Any) -> bytes:
    ev = {"schema_version": 1, "event_id": f"evt-{pid}", "payment_id": pid, "merchant_id": "m-1",
          "amount_minor": 1000, "fee_minor": 30, "currency": "EUR",
          "captured_at": "2026-11-02T08:00:00+00:00", **changes}
    return json.dumps(ev).encode()


def rec(value: bytes, offset: int, partition: int = 0) -> InboundRecord:
    return InboundRecord(SourceRef(TOPICS.payments, partition, offset), b"k", value,
                         [("traceparent", b"00-abc")])


@pytest.fixture
def store() -> FakeLedgerStore:
    return FakeLedgerStore()


def handler(store: FakeLedgerStore, accounts: list[MerchantAccount] | None = None) -> LedgerHandler:
    return LedgerHandler(store, FakeMerchants([ACCOUNT] if accounts is None else accounts),
                         TOPICS, LedgerSettings(), worker_id="ledger-test")


def topics_of(result: Any) -> list[str]:
    return [o.topic for o in result.outputs]


def test_new_payment_is_recorded_and_routed_by_bank_and_currency(store: FakeLedgerStore) -> None:
    result = handler(store).handle([rec(event(), 0)])
    assert topics_of(result) == [TOPICS.items]
    out = result.outputs[0]
    assert out.key == b"MOCKDEFFXXX:EUR"
    item = json.loads(out.value)
    assert (item["payment_id"], item["amount_minor"], item["fee_minor"]) == ("pay-1", 1000, 30)
    assert store.amounts == {"pay-1": 1000}


def test_reprocessing_the_same_record_after_an_abort_emits_again(store: FakeLedgerStore) -> None:
    h = handler(store)
    h.handle([rec(event(), 7)])  # its transaction "aborted": the item never became visible
    again = h.handle([rec(event(), 7)])
    assert topics_of(again) == [TOPICS.items]
    assert h.stats.recorded == 1 and h.stats.replayed == 1
    assert len(store.rows) == 1


def test_a_second_delivery_at_another_offset_is_skipped(store: FakeLedgerStore) -> None:
    h = handler(store)
    h.handle([rec(event(), 7)])
    dup = h.handle([rec(event(), 9)])
    assert dup.outputs == []
    assert h.stats.duplicates == 1


def test_duplicate_inside_one_batch_is_skipped(store: FakeLedgerStore) -> None:
    h = handler(store)
    result = h.handle([rec(event(), 1), rec(event(), 2)])
    assert topics_of(result) == [TOPICS.items]


def test_same_payment_with_a_different_payload_goes_to_the_dlq_first_wins(
    store: FakeLedgerStore,
) -> None:
    h = handler(store)
    h.handle([rec(event(), 1)])
    conflict = h.handle([rec(event(amount_minor=999_999), 5)])
    assert topics_of(conflict) == [TOPICS.payments_dlq]
    assert header(conflict.outputs[0].headers, "dlq.reason") == "event_conflict"
    assert store.amounts["pay-1"] == 1000


def test_dead_letter_keeps_original_bytes_and_says_where_and_why(store: FakeLedgerStore) -> None:
    raw = b"\x00 definitely not json"
    with capture_logs() as logs:
        result = handler(store).handle([rec(raw, 42, partition=3)])
    [out] = result.outputs
    assert out.topic == TOPICS.payments_dlq and out.value == raw and out.key == b"k"
    h = out.headers
    assert header(h, "dlq.reason") == "not_json"
    assert header(h, "dlq.error_class") == "InvalidEventError"
    assert (header(h, "dlq.source.topic"), header(h, "dlq.source.partition"),
            header(h, "dlq.source.offset")) == (TOPICS.payments, "3", "42")
    assert header(h, "traceparent") == "00-abc"  # producer headers survive for replay
    assert any(e["event"] == "ledger.dead_lettered" and e["reason"] == "not_json" for e in logs)


def test_bad_record_does_not_block_the_good_ones_around_it(store: FakeLedgerStore) -> None:
    result = handler(store).handle([rec(event("a"), 1), rec(b"{", 2), rec(event("b"), 3)])
    assert sorted(topics_of(result)) == sorted([TOPICS.items, TOPICS.payments_dlq, TOPICS.items])


def test_unknown_merchant_is_parked_then_released_once_the_account_exists(
    store: FakeLedgerStore,
) -> None:
    h = handler(store, accounts=[])
    parked = h.handle([rec(event(), 3)])
    assert parked.outputs == [] and "pay-1" in store.rows  # recorded, not routed, not lost
    assert h.tick([(TOPICS.payments, 0)]).outputs == []  # still no account
    h._merchants = FakeMerchants([ACCOUNT])  # the operator adds the account
    release = h.tick([(TOPICS.payments, 0)])
    assert topics_of(release) == [TOPICS.items]
    assert h.tick([(TOPICS.payments, 1)]).outputs == []  # other partitions: not ours
    for cb in release.after_commit:
        cb()
    assert h.tick([(TOPICS.payments, 0)]).outputs == []  # released exactly once
