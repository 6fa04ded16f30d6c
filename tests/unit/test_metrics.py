"""The metric registry, its documentation, and what the stages record into it."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import Metric
from structlog.testing import capture_logs

from settlement import metrics
from settlement.bank.client import BankUnavailableError, HttpBankClient
from settlement.config import GatewaySettings
from settlement.domain.reconciliation import BreakType
from settlement.service.deadletter import header
from settlement.service.tracing import trace_context
from tests.unit import test_batcher_handler as bt
from tests.unit import test_ledger_handler as lt
from tests.unit.fake_batches import FakeBatchStore
from tests.unit.fakes import FakeLedgerStore, FakeMerchants

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def exposed_name(family: Metric) -> str:
    return f"{family.name}_total" if family.type == "counter" else family.name


def test_every_settlement_metric_is_documented_and_every_documented_one_exists() -> None:
    ours = {exposed_name(f) for f in metrics.REGISTRY.collect() if f.name.startswith("settlement_")}
    documented = set(re.findall(r"^\| `(settlement_[a-z_]+)`", DOC.read_text(), re.MULTILINE))
    assert ours == documented, f"docs/operations.md drifted: {sorted(ours ^ documented)}"


def test_record_breaks_counts_by_type_and_every_break_type_starts_at_zero() -> None:
    for t in BreakType:
        assert metrics.REGISTRY.get_sample_value(
            "settlement_reconciliation_breaks_total", {"type": t.value}) is not None, t
    before = value("settlement_reconciliation_breaks_total", type="amount_mismatch")
    metrics.record_breaks(BreakType.AMOUNT_MISMATCH, 3)
    metrics.record_breaks("amount_mismatch", 0)
    assert value("settlement_reconciliation_breaks_total", type="amount_mismatch") == before + 3


def test_every_break_type_is_documented() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", DOC.read_text(), re.MULTILINE))
    assert {t.value for t in BreakType} <= documented


def test_a_committed_transaction_counts_its_records_and_dead_letters_by_reason() -> None:
    role = "unit-commit"
    metrics.committed(role, {("items", None): 5, ("items.dlq", "not_json"): 2})
    metrics.aborted(role)
    assert value("settlement_transactions_committed_total", role=role) == 1
    assert value("settlement_transactions_aborted_total", role=role) == 1
    assert value("settlement_records_produced_total", role=role, topic="items") == 5
    assert value("settlement_records_produced_total", role=role, topic="items.dlq") == 2
    assert value("settlement_dlq_records_total", role=role, topic="items.dlq", reason="not_json") == 2


def test_lag_series_of_partitions_no_longer_owned_go_away() -> None:
    role = "unit-lag"
    metrics.lag(role, "t", 0, 7)
    metrics.lag(role, "t", 1, 3)
    metrics.assigned(role, 1, dropped=[("t", 0), ("t", 5)])  # 5 never had a series
    assert metrics.REGISTRY.get_sample_value(
        "settlement_consumer_lag", {"role": role, "topic": "t", "partition": "0"}) is None
    assert value("settlement_consumer_lag", role=role, topic="t", partition="1") == 3
    assert value("settlement_assigned_partitions", role=role) == 1


# -- the bank client --------------------------------------------------------

def test_bank_calls_record_latency_errors_by_kind_and_the_breaker_state() -> None:
    bic = "UNITBANKXXX"
    answers = iter([httpx.Response(503), httpx.Response(503), httpx.Response(200, content=b"<ok/>")])
    client = HttpBankClient(
        GatewaySettings(attempts_inline=1, breaker_failures=2, breaker_reset_s=60), [],
        transport=httpx.MockTransport(lambda _req: next(answers)))
    try:
        with pytest.raises(BankUnavailableError):
            client.send(bic, b"<x/>")
        assert value("settlement_breaker_state", bank=bic) == 0
        with pytest.raises(BankUnavailableError):
            client.send(bic, b"<x/>")  # the second failure opens the breaker
        assert value("settlement_breaker_state", bank=bic) == 2
        with pytest.raises(BankUnavailableError, match="breaker open"):
            client.send(bic, b"<x/>")  # refused without a call
    finally:
        client.close()
    errors = {k: value("settlement_bank_call_errors_total", bank=bic, call="send", kind=k)
              for k in ("http_5xx", "breaker_open")}
    assert errors == {"http_5xx": 2, "breaker_open": 1}
    assert value("settlement_bank_call_seconds_count", bank=bic, call="send") == 2


def test_a_timed_out_poll_is_an_error_of_kind_timeout() -> None:
    bic = "UNITPOLLXXX"

    def timeout(req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=req)

    client = HttpBankClient(GatewaySettings(), [], transport=httpx.MockTransport(timeout))
    try:
        with pytest.raises(BankUnavailableError):
            client.poll(bic, 0)
    finally:
        client.close()
    assert value("settlement_bank_call_errors_total", bank=bic, call="poll", kind="timeout") == 1
    assert value("settlement_bank_call_seconds_count", bank=bic, call="poll") == 1


# -- the batcher --------------------------------------------------------------

def test_a_sealed_batch_records_its_size_and_the_commit_its_latency_after_the_cutoff() -> None:
    store, clock, log = FakeBatchStore(), bt.Clock(), bt.Log()
    h = bt.make(store, clock)
    h.handle([log.rec(bt.item("p1")), log.rec(bt.item("p2")),
              log.rec(bt.item("p3", merchant="m-pay"))])
    sizes = value("settlement_batch_payouts_sum", bank="MOCKDEFFXXX", currency="EUR")
    seals = value("settlement_seal_latency_seconds_count", bank="MOCKDEFFXXX")
    clock.now = bt.T0 + timedelta(hours=1, seconds=6)
    [cmd] = h.tick([(bt.TOPICS.items, 0)]).outputs
    sealed = h.handle([log.from_output(cmd)])
    assert value("settlement_batch_payouts_sum", bank="MOCKDEFFXXX", currency="EUR") == sizes + 2
    assert value("settlement_seal_latency_seconds_count", bank="MOCKDEFFXXX") == seals  # not yet
    clock.now += timedelta(seconds=4)
    with capture_logs() as logs:
        for callback in sealed.after_commit:
            callback()
    assert value("settlement_seal_latency_seconds_count", bank="MOCKDEFFXXX") == seals + 1
    [published] = [e for e in logs if e["event"] == "batch.published"]
    assert published["seconds_after_cutoff"] == 10.0 and published["batch_id"]


def test_a_bad_item_is_dead_lettered_with_a_log_line_naming_it() -> None:
    h = bt.make(FakeBatchStore(), bt.Clock())
    rec = bt.Log().rec(b"{}", [("payment_id", b"p-bad")])
    with capture_logs() as logs:
        [out] = h.handle([rec]).outputs
    assert header(out.headers, "dlq.reason") == "invalid_item"
    [line] = [e for e in logs if e["event"] == "batcher.dead_lettered"]
    assert line["payment_id"] == "p-bad" and line["reason"] == "invalid_item"


# -- the ledger ---------------------------------------------------------------

def test_the_items_carry_the_payments_trace_context_and_dead_letters_keep_it() -> None:
    h = lt.handler(FakeLedgerStore())
    traced = lt.InboundRecord(lt.SourceRef(lt.TOPICS.payments, 0, 1), b"k", lt.event("t1"),
                              [("traceparent", b"00-trace-01"), ("tracestate", b"v=1"),
                               ("other", b"x")])
    untraced = lt.InboundRecord(lt.SourceRef(lt.TOPICS.payments, 0, 2), b"k", lt.event("t2"), [])
    [item, plain] = h.handle([traced, untraced]).outputs
    assert header(item.headers, "traceparent") == "00-trace-01"
    assert header(item.headers, "tracestate") == "v=1" and header(item.headers, "other") is None
    assert [k for k, _ in plain.headers] == ["payment_id"]  # none invented
    assert trace_context([("tracestate", b"v=1")]) == []  # no traceparent, no context


def test_parking_counts_by_reason_and_the_release_check_reports_how_many_wait() -> None:
    store = FakeLedgerStore()
    h = lt.handler(store, accounts=[])
    before = value("settlement_parked_total", role="ledger", reason="merchant_without_payout_account")
    h.handle([lt.rec(lt.event("p1"), 1), lt.rec(lt.event("p2"), 2)])
    assert value("settlement_parked_total", role="ledger",
                 reason="merchant_without_payout_account") == before + 2
    h.tick([(lt.TOPICS.payments, 0)])
    assert value("settlement_parked_payments") == 2
    h._merchants = FakeMerchants([lt.ACCOUNT])
    with capture_logs() as logs:
        h.tick([(lt.TOPICS.payments, 0)])
    assert value("settlement_parked_payments") == 0
    assert sorted(e["payment_id"] for e in logs if e["event"] == "ledger.payment_released") == [
        "p1", "p2"]


def test_a_dead_letter_log_line_names_the_payment_when_the_record_has_one() -> None:
    with capture_logs() as logs:
        lt.handler(FakeLedgerStore()).handle([lt.rec(lt.event("p-neg", amount_minor=-5), 1)])
    [line] = [e for e in logs if e["event"] == "ledger.dead_lettered"]
    assert line["payment_id"] == "p-neg"


def test_an_open_breaker_nothing_sends_through_is_probed_and_closes_once_the_bank_is_back() -> None:
    bic = "UNITPROBEXXX"
    up = {"now": False}
    calls: list[str] = []

    def bank(req: httpx.Request) -> httpx.Response:
        calls.append(f"{req.method} {req.url.path}?{req.url.query.decode()}")
        return httpx.Response(200, json={"messages": [], "next": 0}) if up["now"] else httpx.Response(503)

    client = HttpBankClient(
        GatewaySettings(attempts_inline=1, breaker_failures=1, breaker_reset_s=0.2), [],
        transport=httpx.MockTransport(bank))
    try:
        with pytest.raises(BankUnavailableError):
            client.send(bic, b"<x/>")  # opens
        assert not client.allows(bic)
        client.probe_idle()  # before the reset: no call
        assert len(calls) == 1
        time.sleep(0.25)
        client.probe_idle()  # past the reset, bank still down: open again, reset restarts
        assert value("settlement_breaker_state", bank=bic) == 2 and not client.allows(bic)
        up["now"] = True
        time.sleep(0.25)
        client.probe_idle()
        assert value("settlement_breaker_state", bank=bic) == 0 and client.allows(bic)
        client.probe_idle()  # closed: nothing to probe
    finally:
        client.close()
    assert calls[1:] == [f"GET /banks/{bic}/messages?after=0&limit=1"] * 2
    assert value("settlement_bank_call_errors_total", bank=bic, call="probe", kind="http_5xx") == 1
