"""Statement faults asked for via the admin API show up in the next camt.053 of that account."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.unit.test_mockbank_support import (
    BIC,
    MONDAY,
    OPEN,
    OPEN_2,
    PROCESSOR_EUR,
    advance,
    client,
    of_type,
    outbox,
    pacs008,
    parsed,
    send,
    statement_sum,
)


def _monday_with_fault(tmp_path: Path, fault: str, **params: Any) -> tuple[TestClient, list[Any]]:
    """Two settlements on Monday (100, 250), the fault, then Monday and Tuesday closed."""
    c = client(tmp_path)
    send(c, pacs008([(OPEN, 100), (OPEN_2, 250)]))
    r = c.post(f"/admin/banks/{BIC}/statement-faults",
               json={"account": PROCESSOR_EUR, "fault": fault, **params})
    assert r.status_code == 200, r.text
    advance(c, advance_days=2)
    stmts = [s for s in (parsed(m) for m in of_type(outbox(c), "camt.053")) if s.account_id == PROCESSOR_EUR]
    assert [s.to_date for s in stmts] == [MONDAY, MONDAY + timedelta(days=1)]
    return c, stmts


def test_without_faults_the_statement_lists_both_bookings(tmp_path: Path) -> None:
    c = client(tmp_path)
    send(c, pacs008([(OPEN, 100), (OPEN_2, 250)]))
    advance(c, advance_days=1)
    monday = parsed(of_type(outbox(c), "camt.053")[0])
    assert [e.amount_minor for e in monday.entries] == [100, 250]
    assert monday.opening_minor + statement_sum(monday) == monday.closing_minor


def test_missing_entry_leaves_one_booking_out_but_keeps_the_true_closing(tmp_path: Path) -> None:
    _, (monday, tuesday) = _monday_with_fault(tmp_path, "missing_entry")
    assert [e.amount_minor for e in monday.entries] == [250]
    assert monday.closing_minor == 1_000_000 - 350
    assert monday.opening_minor + statement_sum(monday) != monday.closing_minor
    assert tuesday.entries == () and tuesday.opening_minor == monday.closing_minor


def test_altered_amount_shows_an_entry_off_by_the_delta(tmp_path: Path) -> None:
    c, (monday, _) = _monday_with_fault(tmp_path, "altered_amount", delta_minor=5)
    assert [e.amount_minor for e in monday.entries] == [105, 250]
    assert monday.opening_minor + statement_sum(monday) == monday.closing_minor - 5
    note = parsed(of_type(outbox(c), "camt.054")[0])
    assert [e.amount_minor for e in note.entries] == [100, 250]  # the notification was right


def test_altered_amount_defaults_to_one_minor_unit_on_the_named_transaction(tmp_path: Path) -> None:
    c = client(tmp_path)
    send(c, pacs008([(OPEN, 100), (OPEN_2, 250)]))
    e2e = c.get(f"/admin/banks/{BIC}/transactions").json()[1]["end_to_end_id"]
    c.post(f"/admin/banks/{BIC}/statement-faults",
           json={"account": PROCESSOR_EUR, "fault": "altered_amount", "end_to_end_id": e2e})
    advance(c, advance_days=1)
    monday = parsed(of_type(outbox(c), "camt.053")[0])
    assert [e.amount_minor for e in monday.entries] == [100, 251]


def test_duplicated_entry_lists_one_booking_twice_with_the_same_reference(tmp_path: Path) -> None:
    _, (monday, _) = _monday_with_fault(tmp_path, "duplicated_entry")
    assert [e.amount_minor for e in monday.entries] == [100, 100, 250]
    assert monday.entries[0].acct_svcr_ref == monday.entries[1].acct_svcr_ref
    assert monday.opening_minor + statement_sum(monday) == monday.closing_minor - 100


def test_unexpected_entry_books_a_credit_nobody_sent(tmp_path: Path) -> None:
    c, (monday, tuesday) = _monday_with_fault(tmp_path, "unexpected_entry", amount_minor=777)
    extra = [e for e in monday.entries if not e.end_to_end_ids]
    assert [(e.credit_debit, e.amount_minor) for e in extra] == [("CRDT", 777)]
    assert monday.opening_minor + statement_sum(monday) == monday.closing_minor
    assert tuesday.opening_minor == 1_000_000 - 350 + 777
    assert len(of_type(outbox(c), "camt.054")) == 1  # no notification for it


def test_next_day_booking_moves_an_entry_into_the_following_statement(tmp_path: Path) -> None:
    c, (monday, tuesday) = _monday_with_fault(tmp_path, "next_day_booking")
    assert [e.amount_minor for e in monday.entries] == [250]
    assert [(e.amount_minor, e.booking_date, e.value_date) for e in tuesday.entries] == [
        (100, date(2026, 11, 3), date(2026, 11, 3))]
    for s in (monday, tuesday):
        assert s.opening_minor + statement_sum(s) == s.closing_minor
    note = parsed(of_type(outbox(c), "camt.054")[0])
    assert note.entries[0].booking_date == MONDAY  # the notification said Monday


def test_a_fault_waits_for_a_statement_with_an_entry(tmp_path: Path) -> None:
    c = client(tmp_path)
    c.post(f"/admin/banks/{BIC}/statement-faults", json={"account": PROCESSOR_EUR, "fault": "missing_entry"})
    advance(c, advance_days=1)
    send(c, pacs008([(OPEN, 100), (OPEN_2, 250)], settlement_date=MONDAY + timedelta(days=1)))
    advance(c, advance_days=1)
    stmts = [s for s in (parsed(m) for m in of_type(outbox(c), "camt.053")) if s.account_id == PROCESSOR_EUR]
    assert [[e.amount_minor for e in s.entries] for s in stmts] == [[], [250]]


@pytest.mark.parametrize("body", [
    {"account": PROCESSOR_EUR, "fault": "lost_in_space"},
    {"account": OPEN, "fault": "missing_entry"},
])
def test_unknown_faults_and_non_processor_accounts_are_refused(tmp_path: Path, body: dict[str, str]) -> None:
    assert client(tmp_path).post(f"/admin/banks/{BIC}/statement-faults", json=body).status_code == 400
