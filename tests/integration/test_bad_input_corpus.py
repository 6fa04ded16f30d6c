"""The corpus's record cases through real workers (one ledger, one inbound, one namespace):
each bad event lands on the DLQ with its reason and original bytes (or is parked), each bad
bank message is parked with its reason, the workers never stop, and the valid records sent
between them are all recorded, once. The pure checks of every case: tests/unit/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from settlement.domain.merchant import MerchantAccount
from settlement.kafka.reader import headers_dict
from settlement.store.session import connect
from tests import corpus
from tests.conftest import InProcessWorker, Namespace, wait_until
from tests.corpus import Case
from tests.integration.helpers import committed, item_counts, ledger_rows, produce_raw, register

ACCOUNT = MerchantAccount(
    merchant_id="m-1", currency="EUR", creditor_name="Acme", account_id="DE89370400440532013000",
    bank_bic="MOCKDEFFXXX")
BANK = "MOCKDEFFXXX"
EVENTS = [c for c in corpus.of_kind("event") if c.integration]
BANK_CASES = [c for c in corpus.of_kind(*corpus.BANK_KINDS) if c.integration and "parked" in c.expect]


def _valid_event(n: int) -> bytes:
    event = json.loads(corpus.VALID_EVENT.read_text())
    event.update(event_id=f"evt-ok-{n}", payment_id=f"pay-ok-{n}")
    return json.dumps(event).encode()


def _rows(ns: Namespace, cql: str) -> list[Any]:
    session = connect(ns.settings.cassandra, keyspace=ns.settings.cassandra.keyspace)
    try:
        return list(session.execute(cql))
    finally:
        session.cluster.shutdown()


def _key(case: Case) -> bytes:
    return case.key() or f"corpus-{case.id}".encode()


@pytest.fixture(scope="module")
def ledger(ns_module: Namespace) -> Iterator[dict[str, Any]]:
    """Every event case between valid events, through one real ledger worker."""
    ns = ns_module
    register(ns.settings, [ACCOUNT])
    records: list[tuple[bytes | None, bytes | None]] = []
    for n, case in enumerate(EVENTS):
        records.append((f"pay-ok-{n}".encode(), _valid_event(n)))
        records += [(_key(case), value) for value in case.before()]
        records.append((_key(case), case.value()))
    records.append((f"pay-ok-{len(EVENTS)}".encode(), _valid_event(len(EVENTS))))
    produce_raw(ns.settings, records)  # a tombstone is a record whose value is None
    valid = {f"pay-ok-{n}" for n in range(len(EVENTS) + 1)} | {
        json.loads(v)["payment_id"] for c in EVENTS for v in c.before() if v}
    dead = [c for c in EVENTS if "dlq" in c.expect]
    parked = [c for c in EVENTS if "parked" in c.expect]
    worker = InProcessWorker(ns.build_worker("ledger", instance_id="ledger-corpus"))
    with worker:
        wait_until(lambda: len(committed(ns.settings, ns.settings.topics.payments_dlq)) >= len(dead),
                   120, "every bad event dead-lettered")
        wait_until(lambda: set(item_counts(ns.settings)) >= valid, 60, "every valid event routed")
        wait_until(lambda: len(_rows(ns, "SELECT payment_id FROM parked_payments")) >= len(parked),
                   30, "parked payments")
        assert worker.error is None
    letters = committed(ns.settings, ns.settings.topics.payments_dlq)
    yield {
        "dlq": {m.key(): (m.value(), headers_dict(m)) for m in letters},
        "dlq_count": len(letters),
        "items": item_counts(ns.settings),
        "ledger": ledger_rows(ns.settings),
        "parked": {r.payment_id: r.reason for r in _rows(
            ns, "SELECT payment_id, reason FROM parked_payments")},
        "valid": valid,
    }


@pytest.mark.parametrize("case", EVENTS, ids=[c.id for c in EVENTS])
def test_event_ends_where_the_corpus_says(ledger: dict[str, Any], case: Case) -> None:
    if "dlq" in case.expect:
        value, headers = ledger["dlq"][_key(case)]
        assert headers["dlq.reason"] == case.expect["dlq"]
        assert case.error in headers["dlq.detail"]
        assert value == (case.value() or b"")  # the original bytes, to replay once fixed
    else:
        payment_id = json.loads(case.value() or b"{}")["payment_id"]
        assert ledger["parked"][payment_id] == case.expect["parked"]
        assert payment_id in ledger["ledger"]  # recorded, held back, not lost


def test_no_valid_event_is_lost_or_doubled_and_the_dlq_holds_only_the_bad(
    ledger: dict[str, Any],
) -> None:
    items = ledger["items"]
    assert set(items) == ledger["valid"] and set(items.values()) == {1}
    assert ledger["valid"] <= set(ledger["ledger"])
    assert ledger["dlq_count"] == sum("dlq" in c.expect for c in EVENTS)


def _valid_statement(n: int) -> bytes:
    body = (corpus.ROOT / "statements" / "camt053.xml").read_bytes()
    return body.replace(b"STMT-CORPUS-", f"STMT-OK-{n}-".encode())


@pytest.fixture(scope="module")
def inbound(ns_module: Namespace) -> Iterator[dict[str, Any]]:
    """Every bank-message case between valid statements, through one real inbound worker."""
    ns = ns_module
    bodies = [c.value() or b"" for c in BANK_CASES]
    assert len(set(bodies)) == len(bodies), "parked rows are matched to cases by body"
    records: list[tuple[bytes | None, bytes]] = []
    for n, (case, body) in enumerate(zip(BANK_CASES, bodies, strict=True)):
        records.append((BANK.encode(), _valid_statement(n)))
        records.append((case.key() or BANK.encode(), body))
    records.append((BANK.encode(), _valid_statement(len(BANK_CASES))))
    produce_raw(ns.settings, records, topic=ns.settings.topics.bank_inbound)
    worker = InProcessWorker(ns.build_worker("inbound", instance_id="inbound-corpus"))
    parked_cql = "SELECT bank_bic, reason, detail, body FROM parked_bank_messages"
    with worker:
        wait_until(lambda: len(_rows(ns, parked_cql)) >= len(BANK_CASES), 120, "every bad message parked")
        wait_until(lambda: len(_rows(ns, "SELECT statement_id FROM bank_statements"))
                   >= len(BANK_CASES) + 1, 60, "every valid statement stored")
        assert worker.error is None
    yield {
        "parked": {bytes(r.body or b""): (r.bank_bic, r.reason, r.detail) for r in _rows(ns, parked_cql)},
        "parked_count": len(_rows(ns, parked_cql)),
        "statements": sorted(r.statement_id for r in _rows(
            ns, "SELECT statement_id FROM bank_statements")),
    }


@pytest.mark.parametrize("case", BANK_CASES, ids=[c.id for c in BANK_CASES])
def test_bank_message_is_parked_where_the_corpus_says(inbound: dict[str, Any], case: Case) -> None:
    bank, reason, detail = inbound["parked"][case.value() or b""]
    assert reason == case.expect["parked"]
    assert case.error in detail
    assert bank == (case.key() or BANK.encode()).decode("utf-8", "replace")


def test_every_valid_statement_around_them_was_stored(inbound: dict[str, Any]) -> None:
    assert inbound["statements"] == sorted(
        f"STMT-OK-{n}-20261102" for n in range(len(BANK_CASES) + 1))
    assert inbound["parked_count"] == len(BANK_CASES)
