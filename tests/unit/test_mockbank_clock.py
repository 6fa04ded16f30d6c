"""Mock bank clock: settlement with camt.054, returns with pacs.004, camt.053 chains, restarts."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from settlement.bank.mockbank.bank import Bank
from settlement.bank.mockbank.clock import Clock, ClockError
from settlement.bank.mockbank.hub import MockBank
from tests.unit.test_mockbank_support import (
    BIC,
    MONDAY,
    OPEN,
    OPEN_2,
    OPEN_USD,
    PROCESSOR_EUR,
    PROCESSOR_USD,
    START,
    advance,
    client,
    make_config,
    of_type,
    outbox,
    pacs008,
    parsed,
    send,
    statement_sum,
)


def test_accepted_transactions_settle_at_the_booking_time_with_one_camt054(tmp_path: Path) -> None:
    c = client(tmp_path)
    send(c, pacs008([(OPEN, 100), (OPEN_2, 250)]))
    assert advance(c, advance_seconds=3599) == []  # 08:59:59 Berlin
    emitted = advance(c, advance_seconds=1)
    assert [e["type"] for e in emitted] == ["camt.054.001.08"]
    note = parsed(of_type(outbox(c), "camt.054")[0])
    assert note.account_id == PROCESSOR_EUR
    assert [(e.credit_debit, e.amount_minor, e.booking_date) for e in note.entries] == [
        ("DBIT", 100, MONDAY), ("DBIT", 250, MONDAY)]
    refs = [e.acct_svcr_ref for e in note.entries]
    assert len(set(refs)) == 2 and all(refs)
    txs = c.get(f"/admin/banks/{BIC}/transactions").json()
    assert [e.end_to_end_ids[0] for e in note.entries] == [t["end_to_end_id"] for t in txs]
    assert [e.uetrs[0] for e in note.entries] == [t["uetr"] for t in txs]
    balances = {a["id"]: a["balance_minor"] for a in c.get(f"/admin/banks/{BIC}/accounts").json()}
    assert balances[PROCESSOR_EUR] == 1_000_000 - 350 and balances[OPEN] == 100


def test_a_batch_for_a_later_date_waits_for_that_date(tmp_path: Path) -> None:
    c = client(tmp_path)
    send(c, pacs008([(OPEN, 100)], settlement_date=MONDAY + timedelta(days=2)))
    assert of_type(advance(c, advance_days=2), "camt.054") == []  # Wednesday 08:00
    assert len(of_type(advance(c, advance_seconds=3600), "camt.054")) == 1


def test_a_returned_transaction_comes_back_after_n_business_days(tmp_path: Path) -> None:
    c = client(tmp_path, return_rate=1.0, return_after_business_days=2, return_reasons=["AC04"])
    send(c, pacs008([(OPEN, 100)], settlement_date=date(2026, 11, 5)))  # Thursday
    advance(c, to="2026-11-05T10:00:00+01:00")
    assert of_type(outbox(c), "pacs.004") == []
    advance(c, to="2026-11-09T08:59:00+01:00")  # Monday is business day 2, not yet 09:00
    assert of_type(outbox(c), "pacs.004") == []
    advance(c, to="2026-11-09T09:00:00+01:00")
    ret = parsed(of_type(outbox(c), "pacs.004")[0])
    tx = c.get(f"/admin/banks/{BIC}/transactions").json()[0]
    assert (ret.orgnl_end_to_end_id, ret.orgnl_uetr, ret.returned_minor, ret.reason) == (
        tx["end_to_end_id"], tx["uetr"], 100, "AC04")
    assert ret.settlement_date == date(2026, 11, 9) and tx["returned"] is True
    credit = parsed(of_type(outbox(c), "camt.054")[-1]).entries[0]
    assert (credit.credit_debit, credit.is_return, credit.return_reason, credit.amount_minor) == (
        "CRDT", True, "AC04", 100)
    balances = {a["id"]: a["balance_minor"] for a in c.get(f"/admin/banks/{BIC}/accounts").json()}
    assert balances[PROCESSOR_EUR] == 1_000_000 and balances[OPEN] == 0


def test_each_business_day_ends_with_one_consistent_camt053_per_processor_account(tmp_path: Path) -> None:
    c = client(tmp_path)
    send(c, pacs008([(OPEN, 100), (OPEN_2, 250)]))
    send(c, pacs008([(OPEN, 40)], msg="2", settlement_date=MONDAY + timedelta(days=1)))
    send(c, pacs008([(OPEN_USD, 7)], msg="3", currency="USD"))
    advance(c, to="2026-11-09T12:00:00+01:00")  # through Friday and the weekend
    statements = [parsed(m) for m in of_type(outbox(c), "camt.053")]
    eur = [s for s in statements if s.account_id == PROCESSOR_EUR]
    usd = [s for s in statements if s.account_id == PROCESSOR_USD]
    assert len(eur) == len(usd) == 5  # Mon-Fri, no statements on Saturday and Sunday
    assert [s.electronic_seq_nb for s in eur] == [1, 2, 3, 4, 5]
    assert [s.to_date for s in eur] == [MONDAY + timedelta(days=i) for i in range(5)]
    assert eur[0].opening_minor == 1_000_000
    for prev, cur in itertools.pairwise(eur):
        assert cur.opening_minor == prev.closing_minor
    for s in statements:
        assert s.opening_minor + statement_sum(s) == s.closing_minor
    assert [len(s.entries) for s in eur] == [2, 1, 0, 0, 0]
    assert eur[-1].closing_minor == 1_000_000 - 390 and usd[0].closing_minor == 1_000_000 - 7


def test_every_emitted_message_validates_and_reads_back_with_the_same_amounts(tmp_path: Path) -> None:
    c = client(tmp_path, return_rate=0.5, reject_rate=0.2)
    send(c, pacs008([(OPEN, 1000 + i) for i in range(20)]))
    advance(c, advance_days=7)
    messages = outbox(c)
    assert {m["type"] for m in messages} == {
        "pacs.002.001.10", "camt.054.001.08", "pacs.004.001.10", "camt.053.001.08"}
    txs = {t["end_to_end_id"]: t for t in c.get(f"/admin/banks/{BIC}/transactions").json()}
    for m in messages:
        model = parsed(m)  # validate_schema=True inside
        if m["type"].startswith("pacs.004"):
            assert model.returned_minor == txs[model.orgnl_end_to_end_id]["amount_minor"]
        if m["type"].startswith("camt.05"):
            for entry in model.entries:
                assert entry.amount_minor == txs[entry.end_to_end_ids[0]]["amount_minor"]


def test_state_and_clock_survive_a_restart(tmp_path: Path) -> None:
    c = client(tmp_path)
    send(c, pacs008([(OPEN, 100)]))
    before = outbox(c)
    c2 = client(tmp_path)  # a new app on the same state_dir
    assert c2.get("/admin/clock").json()["now"] == START.isoformat()
    assert outbox(c2) == before
    assert send(c2, pacs008([(OPEN, 100)])).content.decode() == before[0]["xml"]
    advance(c2, advance_days=1)
    c3 = client(tmp_path)
    txs = c3.get(f"/admin/banks/{BIC}/transactions").json()
    assert [t["credited_count"] for t in txs] == [1]
    assert len(of_type(outbox(c3), "camt.053")) == 2  # EUR and USD for Monday
    assert datetime.fromisoformat(c3.get("/admin/clock").json()["now"]) == START + timedelta(days=1)


def test_the_core_runs_without_http(tmp_path: Path) -> None:
    hub = MockBank(make_config(tmp_path))
    bank: Bank = hub.banks[BIC]
    bank.receive_pacs008(pacs008([(OPEN, 100)]))
    assert [e["type"] for e in hub.advance(seconds=7200)] == ["camt.054.001.08"]
    assert bank.transactions()[0]["settled_at"] == "2026-11-02T08:00:00.000000Z"
    hub.close()


def test_a_clock_move_answers_everything_it_made_due_even_if_the_outbox_is_read_during_it(
        tmp_path: Path) -> None:
    """The demo counts the camt.053s a move answers with. A reader of the outbox (the gateway,
    or the server's tick) that processes what is due while the move is under way must not
    emit part of the move's messages, or the move answers fewer than it caused."""
    hub = MockBank(make_config(tmp_path))
    bank: Bank = hub.banks[BIC]
    bank.receive_pacs008(pacs008([(OPEN, 100)]))
    other: list[list[str]] = []
    readers: list[threading.Thread] = []
    set_clock = hub.clock.set

    def set_then_read(to: datetime) -> datetime:
        moved = set_clock(to)
        reader = threading.Thread(target=lambda: other.append(
            [r["type"] for r in bank.outbox(0, 1000)[0] if r["type"].startswith("camt.053")]))
        readers.append(reader)
        reader.start()
        reader.join(timeout=0.5)  # blocked until the move is done, when the move holds the bank
        return moved

    hub.clock.set = set_then_read  # type: ignore[method-assign]
    emitted = hub.advance(to=START + timedelta(days=1))
    hub.clock.set = set_clock  # type: ignore[method-assign]
    readers[0].join(timeout=5)
    assert sorted(e["type"] for e in emitted) == [
        "camt.053.001.08", "camt.053.001.08", "camt.054.001.08"]  # Monday's EUR and USD
    assert len(other) == 1 and len(other[0]) == 2  # the reader saw them once the move was done
    assert hub.process_due() == []
    hub.close()


def test_a_clock_following_real_time_moves_with_it_and_never_backwards(tmp_path: Path) -> None:
    real = [datetime(2030, 1, 1, tzinfo=UTC)]
    clock = Clock(tmp_path / "c.sqlite", start=START, real=lambda: real[0])
    real[0] += timedelta(seconds=30)
    assert clock.now() == START + timedelta(seconds=30)
    clock.advance(timedelta(hours=1))
    clock.close()
    real[0] += timedelta(seconds=10)
    again = Clock(tmp_path / "c.sqlite", start=START, real=lambda: real[0])
    assert again.now() == START + timedelta(hours=1, seconds=40)
    try:
        again.set(START)
    except ClockError:
        pass
    else:
        raise AssertionError("a clock must not go backwards")
    again.close()
