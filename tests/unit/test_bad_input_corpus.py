"""The bad-input corpus (tests/corpus/, docs/bad-input.md): every case produces its clear error
and ends where it says (DLQ, parked, exit code), none crashes, and the valid records around it
are all recorded. Pure handling here: the stage handlers on in-memory fakes, the CLI in-process.
tests/integration/test_bad_input_corpus.py sends the record cases through real workers."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from structlog.testing import capture_logs

from settlement import bootstrap
from settlement.config import LedgerSettings, TopicSettings
from settlement.domain.merchant import MerchantAccount
from settlement.service.deadletter import header
from settlement.service.inbound import InboundHandler
from settlement.service.ledger import LedgerHandler
from settlement.service.ports import InboundRecord, SourceRef
from tests import corpus
from tests.corpus import Case
from tests.unit.cli import invoke
from tests.unit.fakes import FakeLedgerStore, FakeMerchants, FakeReconStore
from tests.unit.test_inbound_handler import FakeInbound

CASES = corpus.load()
TOPICS = TopicSettings()
ACCOUNT = MerchantAccount(
    merchant_id="m-1", currency="EUR", creditor_name="Acme", account_id="DE89370400440532013000",
    bank_bic="MOCKDEFFXXX")
BANK = "MOCKDEFFXXX"
STATEMENT_DAY = "2026-11-02"  # the day of statements/camt053.xml
# at least this many of each kind (bank messages together), so the corpus cannot quietly shrink
MINIMUM = {"event": 12, "bank message": 12, "camt.053": 6, "cli": 8, "config": 6,
           "merchants-import": 6}


def _ids(cases: list[Case]) -> list[str]:
    return [c.id for c in cases]


def plain(text: str) -> str:
    """Terminal output as one line: rich's wrapping and typer's box drawing removed."""
    return " ".join(re.sub("[\u2500-\u257f]", " ", text).split())


def test_the_corpus_has_50_cases_across_every_kind() -> None:
    counts = Counter("bank message" if c.kind in ("pacs.002", "pacs.004", "camt.054") else c.kind
                     for c in CASES)
    assert len(CASES) >= 50
    assert {c.kind for c in CASES} == set(corpus.KINDS)
    assert {k: n for k, n in counts.items() if n < MINIMUM[k]} == {}, counts


def test_docs_bad_input_counts_the_cases_there_are() -> None:
    doc = (corpus.ROOT.parents[1] / "docs" / "bad-input.md").read_text(encoding="utf-8")
    listed = {kind: int(n) for kind, n in re.findall(r"^\| `([a-z0-9.-]+)` \| (\d+) \|", doc, re.M)}
    assert listed == Counter(c.kind for c in CASES), "update the table in docs/bad-input.md"
    assert f"{len(CASES)} cases" in doc


def test_every_case_names_a_destination_that_fits_its_kind() -> None:
    for case in CASES:
        if case.kind == "event":
            assert set(case.expect) & {"dlq", "parked"}, case.id
        elif case.kind in ("pacs.002", "pacs.004", "camt.054"):
            assert "parked" in case.expect, case.id
        elif case.kind == "camt.053":
            assert set(case.expect) & {"parked", "exit"}, case.id
        else:
            assert case.expect.get("exit") == 2, case.id


# -- events: the ledger handler ------------------------------------------------------------


def valid_event(n: int) -> bytes:
    event = json.loads(corpus.VALID_EVENT.read_text())
    event.update(event_id=f"evt-ok-{n}", payment_id=f"pay-ok-{n}")
    return json.dumps(event).encode()


def rec(value: bytes | None, offset: int, key: bytes | None = b"k") -> InboundRecord:
    return InboundRecord(SourceRef(TOPICS.payments, 0, offset), key, value, [])


@pytest.mark.parametrize("case", corpus.of_kind("event"), ids=_ids(corpus.of_kind("event")))
def test_event(case: Case) -> None:
    store = FakeLedgerStore()
    handler = LedgerHandler(store, FakeMerchants([ACCOUNT]), TOPICS, LedgerSettings(), "ledger-corpus")
    before = [valid_event(0), *case.before()]
    records = [rec(v, i) for i, v in enumerate(before)]
    bad = rec(case.value(), len(records), case.key())
    records += [bad, rec(valid_event(1), len(records) + 1)]
    with capture_logs() as logs:
        result = handler.handle(records)

    dead = [o for o in result.outputs if o.topic == TOPICS.payments_dlq]
    if "dlq" in case.expect:
        [letter] = dead
        assert header(letter.headers, "dlq.reason") == case.expect["dlq"]
        assert case.error in (header(letter.headers, "dlq.detail") or "")
        assert letter.value == (case.value() or b"") and letter.key == bad.key  # the original
        assert header(letter.headers, "dlq.source.offset") == str(bad.source.offset)
    else:
        assert dead == []
        [(parked, _)] = [v for k, v in store.parked_rows.items() if not k.startswith("pay-ok")]
        assert parked.reason == case.expect["parked"]
        assert any(e["event"] == "ledger.payment_parked" and case.error in e["reason"] for e in logs)
    # nothing accepted is lost: the valid records around it were recorded and routed once
    items = Counter(json.loads(o.value)["payment_id"] for o in result.outputs if o.topic == TOPICS.items)
    accepted = {json.loads(v)["payment_id"] for v in case.before() if v} | {"pay-ok-0", "pay-ok-1"}
    assert items == Counter(accepted)
    assert accepted <= set(store.amounts)


# -- bank messages (and camt.053 on bank.inbound): the inbound handler ---------------------

BANK_PARKED = [c for c in corpus.of_kind(*corpus.BANK_KINDS) if "parked" in c.expect]


def valid_statement(n: int) -> bytes:
    body = (corpus.ROOT / "statements" / "camt053.xml").read_bytes()
    return body.replace(b"STMT-CORPUS-", f"STMT-OK-{n}-".encode())


def inbound_store() -> FakeInbound:
    store = FakeInbound()
    store.add("POCORPUS0001", "ECORPUS0001-1", "MSG-CORPUS-1")  # sent, not yet answered
    return store


@pytest.mark.parametrize("case", BANK_PARKED, ids=_ids(BANK_PARKED))
def test_bank_message(case: Case) -> None:
    store = inbound_store()
    handler = InboundHandler(store, TOPICS, "inbound-corpus")
    headers = [] if case.key() is not None else [("bank_bic", BANK.encode())]
    records = [
        InboundRecord(SourceRef(TOPICS.bank_inbound, 0, 0), BANK.encode(), valid_statement(0),
                      [("bank_bic", BANK.encode())]),
        InboundRecord(SourceRef(TOPICS.bank_inbound, 0, 1), case.key() or BANK.encode(),
                      case.value(), headers),
        InboundRecord(SourceRef(TOPICS.bank_inbound, 0, 2), BANK.encode(), valid_statement(1),
                      [("bank_bic", BANK.encode())]),
    ]
    result = handler.handle(records)
    [(reason, detail)] = store.parked
    assert reason == case.expect["parked"]
    assert case.error in detail
    assert result.outputs == []  # nothing applied
    assert store.payouts["POCORPUS0001"].status == "sent"
    # the statements around it were stored
    assert store.statements == ["STMT-OK-0-20261102", "STMT-OK-1-20261102"]


def test_the_valid_bank_messages_apply() -> None:
    """The bases the cases break are themselves fine: status, booking, return, statement."""
    store = inbound_store()
    handler = InboundHandler(store, TOPICS, "inbound-corpus")
    bodies = [(corpus.ROOT / "bank" / name).read_bytes()
              for name in ("pacs002.xml", "camt054.xml", "pacs004.xml")]
    bodies.append((corpus.ROOT / "statements" / "camt053.xml").read_bytes())
    result = handler.handle([InboundRecord(SourceRef(TOPICS.bank_inbound, 0, n), BANK.encode(), body,
                                           [("bank_bic", BANK.encode())])
                             for n, body in enumerate(bodies)])
    assert store.parked == []
    assert [json.loads(o.value)["type"] for o in result.outputs] == [
        "payout.accepted", "payout.settled", "payout.returned"]
    assert store.statements == ["STMT-CORPUS-20261102"]


# -- statement files: settlement reconcile ----------------------------------------------------

RECONCILED = [c for c in corpus.of_kind("camt.053") if "exit" in c.expect]


NO_SESSION = SimpleNamespace(cluster=SimpleNamespace(shutdown=lambda: None))  # what reconcile closes


@pytest.fixture
def recon_store(monkeypatch: pytest.MonkeyPatch) -> FakeReconStore:
    """reconcile's Cassandra replaced by an empty store: the statement file is all it reads."""
    store = FakeReconStore()
    monkeypatch.setattr(bootstrap, "cassandra", lambda settings: NO_SESSION)
    monkeypatch.setattr(bootstrap, "recon_store", lambda settings, session: store)
    return store


def _reconcile(path: Path) -> Any:
    return invoke(["reconcile", "--date", STATEMENT_DAY, "--statement", str(path)])


@pytest.mark.parametrize("case", RECONCILED, ids=_ids(RECONCILED))
def test_statement_file(case: Case, tmp_path: Path, recon_store: FakeReconStore) -> None:
    path = tmp_path / "statement.xml"
    path.write_bytes(case.value() or b"")
    result = _reconcile(path)
    assert result.exit_code == case.expect["exit"], result.output
    assert isinstance(result.exception, SystemExit)  # typer.Exit, no traceback
    stderr = plain(result.stderr)
    assert plain(case.expect.get("reconcile_error", case.error)) in stderr
    parked = case.expect.get("parked", "")
    if parked.startswith("refused_"):
        assert f"refused ({parked.removeprefix('refused_')})" in stderr
    assert recon_store.saved == []  # nothing stored


def test_the_valid_statement_file_reconciles(tmp_path: Path, recon_store: FakeReconStore) -> None:
    """The base statement is read: its entry matches nothing expected, so it is a break (1)."""
    path = tmp_path / "statement.xml"
    path.write_bytes((corpus.ROOT / "statements" / "camt053.xml").read_bytes())
    result = _reconcile(path)
    assert result.exit_code == 1, result.output
    assert "unexpected_at_bank" in result.stdout and len(recon_store.saved) == 1


# -- commands: cli, config, merchants-import ------------------------------------------------

COMMANDS = corpus.of_kind("cli", "config", "merchants-import")


@pytest.mark.parametrize("case", COMMANDS, ids=_ids(COMMANDS))
def test_command(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SETTLEMENT_"):
            monkeypatch.delenv(name)
    # nothing may connect: a case that got past its check would fail here, not reach the stack
    env = {"SETTLEMENT_CASSANDRA__PORT": "1", "SETTLEMENT_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
           **case.env()}
    result = invoke(case.argv(tmp_path), env=env)
    assert result.exit_code == case.expect["exit"], result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    assert plain(case.error) in plain(result.stderr)
