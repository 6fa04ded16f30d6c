"""Inbound decisions: bank answers move payouts along the state machine, or are parked."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest

from settlement.config import TopicSettings
from settlement.domain.bank_messages import (
    Entry,
    Notification,
    PaymentReturn,
    StatusReport,
    TxStatusReport,
)
from settlement.domain.batch import PayoutStatus, transition
from settlement.domain.errors import InvalidTransitionError, RetryableError
from settlement.iso20022.camt054 import render_camt054
from settlement.iso20022.pacs002 import render_pacs002
from settlement.iso20022.pacs004 import render_pacs004
from settlement.service.inbound import InboundHandler
from settlement.service.ports import InboundRecord, PayoutRef, SourceRef

TOPICS = TopicSettings()
AT = datetime(2026, 11, 2, 10, 0, 5, tzinfo=UTC)


class FakeInbound:
    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], str] = {}
        self.payouts: dict[str, PayoutRef] = {}
        self.e2e: dict[str, str] = {}
        self.batches: dict[str, list[str]] = {}
        self.causes: dict[tuple[str, str], str] = {}
        self.parked: list[tuple[str, str]] = []
        self.statements: list[str] = []
        self.expected_returns: list[object] = []

    def add(self, payout_id: str, e2e: str, msg_id: str, status: str = "sent") -> None:
        self.payouts[payout_id] = PayoutRef(payout_id, "B1", "m-1", 970, "EUR", status)
        self.e2e[e2e] = payout_id
        self.batches.setdefault(msg_id, []).append(payout_id)

    def register(self, bank: str, msg_id: str, kind: str, src: str) -> str:
        prev = self.seen.setdefault((bank, msg_id), src)
        return "new" if prev == src and (bank, msg_id) not in self.causes else (
            "replay" if prev == src else "duplicate")

    def payout_by_e2e(self, e2e: str) -> PayoutRef | None:
        pid = self.e2e.get(e2e)
        return None if pid is None else self.payouts[pid]

    def payouts_of_msg(self, msg_id: str) -> list[PayoutRef]:
        return [self.payouts[p] for p in self.batches.get(msg_id, [])]

    def transition(self, po: PayoutRef, target: str, cause: str, src: str,
                   reason: str | None) -> str:
        cur = self.payouts[po.payout_id]
        if cur.status == target:
            return "replay" if self.causes.get((po.payout_id, target), src) == src else target
        if cur.status != po.status:
            return cur.status
        self.payouts[po.payout_id] = PayoutRef(po.payout_id, po.batch_id, po.merchant_id,
                                               po.amount_minor, po.currency, target)
        self.causes[(po.payout_id, target)] = src
        return "applied"

    def park(self, bank: str, msg_id: str, kind: str, reason: str, detail: str, body: bytes,
             src: str) -> None:
        self.parked.append((reason, detail))

    def save_expected_return(self, row: object) -> None:
        self.expected_returns.append(row)

    def save_statement(self, *args: object) -> None:
        self.statements.append(str(args[3]))


class Feed:
    def __init__(self) -> None:
        self.offset = 0

    def __call__(self, body: bytes) -> InboundRecord:
        self.offset += 1
        return InboundRecord(SourceRef(TOPICS.bank_inbound, 0, self.offset), b"MOCKDEFFXXX", body,
                             [("bank_bic", b"MOCKDEFFXXX")])


@pytest.fixture
def env() -> tuple[InboundHandler, FakeInbound, Feed]:
    store = FakeInbound()
    store.add("PO1", "E1", "MSG1")
    store.add("PO2", "E2", "MSG1")
    return InboundHandler(store, TOPICS, "in-test"), store, Feed()


def pacs002(msg_id: str, *txs: tuple[str, str, str | None], group: tuple[str, str] | None = None
            ) -> bytes:
    return render_pacs002(StatusReport(
        msg_id=msg_id, created_at=AT, orgnl_msg_id="MSG1",
        group_status=group[0] if group else None, group_reason=group[1] if group else None,
        transactions=tuple(TxStatusReport(orgnl_end_to_end_id=e, status=s, reason=r)  # type: ignore[arg-type]
                           for e, s, r in txs)))


def events(result: object) -> list[dict[str, object]]:
    return [orjson.loads(o.value) for o in result.outputs]  # type: ignore[attr-defined]


def test_state_machine_allows_only_the_documented_path() -> None:
    assert transition(PayoutStatus.SENT, PayoutStatus.ACCEPTED) is PayoutStatus.ACCEPTED
    for bad in [(PayoutStatus.REJECTED, PayoutStatus.ACCEPTED),
                (PayoutStatus.SENT, PayoutStatus.RETURNED),
                (PayoutStatus.RETURNED, PayoutStatus.SETTLED)]:
        with pytest.raises(InvalidTransitionError):
            transition(*bad)


def test_accept_and_reject_per_transaction_emit_events_with_reasons(env) -> None:
    h, store, feed = env
    res = h.handle([feed(pacs002("S1", ("E1", "ACSP", None), ("E2", "RJCT", "AC04")))])
    assert [(e["type"], e["payout_id"], e["reason"]) for e in events(res)] == [
        ("payout.accepted", "PO1", None), ("payout.rejected", "PO2", "AC04")]
    assert store.payouts["PO1"].status == "accepted" and store.payouts["PO2"].status == "rejected"


def test_group_reject_ff01_rejects_the_whole_batch(env) -> None:
    h, store, feed = env
    h.handle([feed(pacs002("S1", group=("RJCT", "FF01")))])
    assert {p.status for p in store.payouts.values()} == {"rejected"}


def test_duplicate_refusal_du01_changes_nothing(env) -> None:
    h, store, feed = env
    res = h.handle([feed(pacs002("S9", group=("RJCT", "DU01")))])
    assert res.outputs == [] and {p.status for p in store.payouts.values()} == {"sent"}


def test_the_same_bank_message_twice_is_applied_once(env) -> None:
    h, _, feed = env
    body = pacs002("S1", ("E1", "ACSP", None))
    assert len(h.handle([feed(body)]).outputs) == 1
    assert h.handle([feed(body)]).outputs == []


def test_unknown_payout_and_impossible_transition_are_parked_not_applied(env) -> None:
    h, store, feed = env
    h.handle([feed(pacs002("S1", ("NOPE", "ACSP", None)))])
    ret = render_pacs004(PaymentReturn(
        msg_id="R1", created_at=AT, return_id="RT1", orgnl_end_to_end_id="E1",
        returned_minor=970, currency="EUR", settlement_date=date(2026, 11, 4), reason="AC04"))
    h.handle([feed(ret)])  # PO1 was never settled: a return is impossible
    assert [r for r, _ in store.parked] == ["unknown_payout", "invalid_transition"]
    assert store.payouts["PO1"].status == "sent"


def test_booking_settles_and_a_later_return_returns(env) -> None:
    h, store, feed = env
    h.handle([feed(pacs002("S1", ("E1", "ACSP", None)))])
    booking = render_camt054(Notification(
        msg_id="N1", created_at=AT, notification_id="N1", account_id="DE89370400440532013000",
        account_currency="EUR", entries=(Entry(
            acct_svcr_ref="BK1", amount_minor=970, currency="EUR", credit_debit="DBIT",
            booking_date=date(2026, 11, 2), value_date=date(2026, 11, 2),
            end_to_end_ids=("E1",)),)))
    h.handle([feed(booking)])
    assert store.payouts["PO1"].status == "settled"
    ret = render_pacs004(PaymentReturn(
        msg_id="R1", created_at=AT, return_id="RT1", orgnl_end_to_end_id="E1",
        returned_minor=970, currency="EUR", settlement_date=date(2026, 11, 4), reason="MD07"))
    [event] = events(h.handle([feed(ret)]))
    assert (event["type"], event["reason"]) == ("payout.returned", "MD07")
    [expected] = store.expected_returns  # reconciliation now expects the credit
    assert (expected.kind, expected.end_to_end_id, expected.amount_minor, expected.ref,
            expected.settlement_date) == ("return", "E1", 970, "RT1", date(2026, 11, 4))


@pytest.mark.parametrize("body", [
    b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>",
    b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:pacs.002.001.10'><FIToFIPmt",
    b"<Document xmlns='urn:example:not-iso'/>",
    b"x" * (11 * 1024 * 1024),
], ids=["xxe", "truncated", "wrong_namespace", "oversized"])
def test_hostile_or_broken_input_is_parked_with_a_reason(env, body: bytes) -> None:
    h, store, feed = env
    assert h.handle([feed(body)]).outputs == []
    [(reason, detail)] = store.parked
    assert reason.startswith("refused_") and detail


@pytest.mark.parametrize(("key", "headers", "bank"), [
    (b"\xff\xfeMOCK", [], "\ufffd\ufffdMOCK"),  # not UTF-8: this crashed the worker
    (b"B" * 100_000, [], "B" * 64),  # past Cassandra's 64 KiB key limit if used as it is
    (None, [], "?"),
], ids=["binary_key", "huge_key", "no_key"])
def test_any_record_key_names_a_bank_and_the_message_is_still_parked(
    key: bytes | None, headers: list[tuple[str, bytes]], bank: str,
) -> None:
    parked: list[str] = []

    class Store(FakeInbound):
        def park(self, bank_bic: str, *args: object) -> None:  # type: ignore[override]
            parked.append(bank_bic)

    h = InboundHandler(Store(), TOPICS, "in-test")
    h.handle([InboundRecord(SourceRef(TOPICS.bank_inbound, 0, 1), key, b"<x/>", headers)])
    assert parked == [bank]


def test_a_messages_transactions_are_applied_at_the_same_time() -> None:
    """Two payouts' LWTs meet at a barrier: one after the other, the first would wait alone."""
    meet = threading.Barrier(2, timeout=5)

    class Slow(FakeInbound):
        def transition(self, po: PayoutRef, *args: Any) -> str:
            meet.wait()
            return super().transition(po, *args)

    store = Slow()
    store.add("PO1", "E1", "MSG1")
    store.add("PO2", "E2", "MSG1")
    h = InboundHandler(store, TOPICS, "in-test", concurrency=2)
    try:
        res = h.handle([Feed()(pacs002("S1", ("E1", "ACSP", None), ("E2", "RJCT", "AC04")))])
    finally:
        h.close()
    assert [e["payout_id"] for e in events(res)] == ["PO1", "PO2"]


def test_applied_at_the_same_time_it_comes_out_as_one_after_the_other(env) -> None:
    """Events and parks in message order; the same payout twice in one message is applied
    in that order (the second is a replay of the first, as it always was)."""
    h, store, feed = env
    for i in range(3, 40):
        store.add(f"PO{i}", f"E{i}", "MSG1")
    txs = [(f"E{i}", "ACSP" if i % 3 else "RJCT", None if i % 3 else "AC04") for i in range(1, 40)]
    txs[5:5] = [("NOPE", "ACSP", None), ("E1", "ACSP", None)]
    res = h.handle([feed(pacs002("S1", *txs))])
    assert [e["payout_id"] for e in events(res)] == (
        [f"PO{i}" for i in range(1, 6)] + ["PO1"] + [f"PO{i}" for i in range(6, 40)])
    assert [e["type"] for e in events(res)][:6] == ["payout.accepted"] * 2 + [
        "payout.rejected"] + ["payout.accepted"] * 3
    assert store.parked == [("unknown_payout", "OrgnlEndToEndId NOPE matches no payout")]
    assert h.stats.applied == 40


def test_an_error_in_one_transaction_fails_the_message_after_the_others_are_done() -> None:
    """The loop retries the whole message; no apply thread may run on behind it."""
    done: list[str] = []

    class Failing(FakeInbound):
        def transition(self, po: PayoutRef, *args: Any) -> str:
            if po.payout_id == "PO1":
                raise RetryableError("Cassandra is down")
            time.sleep(0.2)
            done.append(po.payout_id)
            return super().transition(po, *args)

    store = Failing()
    store.add("PO1", "E1", "MSG1")
    store.add("PO2", "E2", "MSG1")
    h = InboundHandler(store, TOPICS, "in-test", concurrency=4)
    with pytest.raises(RetryableError):
        h.handle([Feed()(pacs002("S1", ("E1", "ACSP", None), ("E2", "ACSP", None)))])
    assert done == ["PO2"]
    h.close()
