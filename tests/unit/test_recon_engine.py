"""Reconciliation matching on small hand-made statements: one test per break type."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from settlement.domain.batch import transaction_ids
from settlement.domain.reconciliation import (
    BookedLine,
    BreakType,
    ExpectedBooking,
    ExpectedKind,
    StatementInfo,
    Tolerance,
)
from settlement.recon.engine import Reconciler, reconcile_all

DAY = date(2026, 11, 20)
BANK = "BANKDEFFXXX"


def e2e(n: int) -> str:
    return transaction_ids(f"PO{n:024d}", 1)[1]


def payout(n: int, amount: int, *, day: date = DAY, msg: str = "MSG1", ccy: str = "EUR") -> ExpectedBooking:
    return ExpectedBooking(ExpectedKind.PAYOUT, BANK, day, ccy, e2e(n), amount, msg, f"m-{n % 3}",
                           gross_minor=amount + 30, fee_minor=30)


def ret(n: int, amount: int, *, day: date = DAY) -> ExpectedBooking:
    return ExpectedBooking(ExpectedKind.RETURN, BANK, day, "EUR", e2e(n), amount, "RET1",
                           f"m-{n % 3}", ref=f"RT{n}")


def line(amount: int, *refs: str, ref: str | None = None, cd: str = "DBIT", day: date = DAY,
         ccy: str = "EUR", msg: str | None = None, is_return: bool = False,
         status: str = "BOOK", uetrs: tuple[str, ...] = ()) -> BookedLine:
    return BookedLine(ref or f"R{amount}{''.join(refs)}", amount, ccy, cd, status, day, day,
                      tuple(refs), uetrs, msg, is_return)


def stmt(lines: list[BookedLine], *, opening: int = 10_000_000, seq: int = 2, from_date: date = DAY,
         closing: int | None = None) -> StatementInfo:
    booked = sum(ln.signed_minor for ln in lines if ln.status == "BOOK")
    return StatementInfo(BANK, "DE89370400440532013000", "EUR", f"STM{seq}", f"M{seq}", seq,
                         from_date, DAY, opening, opening + booked if closing is None else closing,
                         "test")


def run(expected: list[ExpectedBooking], lines: list[BookedLine], *, info: StatementInfo | None = None,
        previous: StatementInfo | None = None, statuses: dict[str, str] | None = None,
        tol: Tolerance = Tolerance()):
    result, _ = reconcile_all(DAY, tol, expected, [(info or stmt(lines), lines, previous)],
                                   statuses)
    return result, [(b.type, b.end_to_end_id, b.expected_minor, b.booked_minor) for b in result.breaks]


def test_a_clean_day_has_no_breaks_and_matches_everything() -> None:
    exp = [payout(1, 1000), payout(2, 2500), ret(7, 400)]
    lines = [line(1000, e2e(1)), line(2500, e2e(2)), line(400, e2e(7), cd="CRDT", is_return=True)]
    result, breaks = run(exp, lines)
    assert breaks == []
    assert result.matched == 3
    totals = result.totals[(BANK, "EUR")]
    assert (totals.expected_count, totals.matched_count, totals.booked_minor) == (3, 3, -3100)


def test_missing_at_bank_with_its_amount() -> None:
    _, breaks = run([payout(1, 1000), payout(2, 2500)], [line(1000, e2e(1))])
    assert breaks == [(BreakType.MISSING_AT_BANK, e2e(2), 2500, None)]


def test_a_rejected_payout_is_not_expected_on_the_statement() -> None:
    result, breaks = run([payout(1, 1000), payout(2, 2500)], [line(1000, e2e(1))],
                         statuses={e2e(2): "rejected"})
    assert breaks == []
    assert result.totals[(BANK, "EUR")].expected_count == 1


def test_unexpected_at_bank() -> None:
    _, breaks = run([payout(1, 1000)], [line(1000, e2e(1)), line(100, cd="CRDT", ref="X1")])
    assert breaks == [(BreakType.UNEXPECTED_AT_BANK, "", None, 100)]


def test_amount_mismatch_beyond_the_tolerance_only() -> None:
    _, breaks = run([payout(1, 1000)], [line(1001, e2e(1))])
    assert breaks == [(BreakType.AMOUNT_MISMATCH, e2e(1), 1000, 1001)]
    _, breaks = run([payout(1, 1000)], [line(1001, e2e(1))], tol=Tolerance(amount_minor=1))
    assert breaks == []


def test_currency_mismatch() -> None:
    _, breaks = run([payout(1, 1000)], [line(1000, e2e(1), ccy="USD")])
    assert [b[0] for b in breaks] == [BreakType.CURRENCY_MISMATCH]


def test_duplicate_at_bank_same_reference_twice() -> None:
    dup = line(1000, e2e(1), ref="A1")
    result, breaks = run([payout(1, 1000)], [dup, dup])
    assert breaks == [(BreakType.DUPLICATE_AT_BANK, e2e(1), 1000, 1000)]
    assert result.matched == 1


def test_value_date_mismatch_is_timing_and_still_matched() -> None:
    late = line(1000, e2e(1))._replace(value_date=date(2026, 11, 23))
    result, breaks = run([payout(1, 1000)], [late])
    assert breaks == [(BreakType.VALUE_DATE_MISMATCH, e2e(1), 1000, 1000)]
    assert result.breaks[0].expected_date == DAY and result.breaks[0].booked_date == date(2026, 11, 23)


def test_a_booking_in_the_next_days_statement_is_timing_not_missing() -> None:
    rec = Reconciler(DAY, Tolerance())
    rec.expect(payout(1, 1000))
    rec.statement(stmt([]), 0, None)
    next_day = replace(stmt([]), statement_id="STM3", to_date=date(2026, 11, 23))
    rec.explain_entry(next_day, line(1000, e2e(1), day=date(2026, 11, 23)))
    result = rec.finish(lambda _: {})
    assert [(b.type, b.statement_id) for b in result.breaks] == [
        (BreakType.VALUE_DATE_MISMATCH, "STM3")]


def test_an_entry_for_yesterdays_payout_is_timing_not_unexpected() -> None:
    rec = Reconciler(DAY, Tolerance())
    entry = line(1000, e2e(1))
    rec.entry(stmt([entry]), entry)
    rec.explain_expected(payout(1, 1000, day=date(2026, 11, 19)))
    result = rec.finish(lambda _: {})
    assert [(b.type, b.expected_date) for b in result.breaks] == [
        (BreakType.VALUE_DATE_MISMATCH, date(2026, 11, 19))]


def test_return_unbooked_and_return_unexpected() -> None:
    _, breaks = run([payout(1, 1000), ret(1, 1000)], [line(1000, e2e(1))])
    assert breaks == [(BreakType.RETURN_UNBOOKED, e2e(1), 1000, None)]
    _, breaks = run([payout(1, 1000)], [line(1000, e2e(1)),
                                        line(1000, e2e(1), cd="CRDT", is_return=True, ref="RR")])
    assert breaks == [(BreakType.RETURN_UNEXPECTED, e2e(1), None, 1000)]


def test_balance_mismatch_when_entries_do_not_add_up() -> None:
    lines = [line(1000, e2e(1))]
    _, breaks = run([payout(1, 1000)], lines, info=stmt(lines, closing=10_000_000 - 999))
    assert breaks == [(BreakType.BALANCE_MISMATCH, "", 10_000_000 - 999, 10_000_000 - 1000)]


def test_balance_mismatch_when_opening_is_not_yesterdays_closing() -> None:
    previous = replace(stmt([], seq=1), from_date=date(2026, 11, 19), to_date=date(2026, 11, 19),
                       closing_minor=5)
    _, breaks = run([], [], previous=previous)
    assert breaks == [(BreakType.BALANCE_MISMATCH, "", 5, 10_000_000)]


@pytest.mark.parametrize(("prev_seq", "prev_day", "detail"), [
    (0, date(2026, 11, 19), "sequence 0 -> 2"),
    (1, date(2026, 11, 18), "days 2026-11-18 -> 2026-11-20"),
])
def test_statement_gap_on_a_missing_sequence_number_or_day(prev_seq: int, prev_day: date,
                                                           detail: str) -> None:
    previous = replace(stmt([], seq=prev_seq), from_date=prev_day, to_date=prev_day,
                       closing_minor=10_000_000)
    result, breaks = run([], [], previous=previous)
    assert [b[0] for b in breaks] == [BreakType.STATEMENT_GAP]
    assert detail in result.breaks[0].detail


def test_one_entry_for_a_whole_batch_by_msg_id() -> None:
    exp = [payout(1, 1000, msg="B1"), payout(2, 2000, msg="B1"), payout(3, 500, msg="B2")]
    result, breaks = run(exp, [line(3000, msg="B1"), line(500, e2e(3))])
    assert breaks == [] and result.matched == 3
    _, breaks = run(exp, [line(2999, msg="B1"), line(500, e2e(3))])
    assert [b[0] for b in breaks] == [BreakType.AMOUNT_MISMATCH]


def test_one_entry_with_txdtls_for_several_payouts() -> None:
    result, breaks = run([payout(1, 1000), payout(2, 2000)], [line(3000, e2e(1), e2e(2))])
    assert breaks == [] and result.matched == 2


def test_many_entries_for_one_payout_that_add_up() -> None:
    result, breaks = run([payout(1, 1000)], [line(600, e2e(1)), line(400, e2e(1))])
    assert breaks == [] and result.matched == 1
    _, breaks = run([payout(1, 1000)], [line(600, e2e(1)), line(300, e2e(1))])
    assert breaks == [(BreakType.AMOUNT_MISMATCH, e2e(1), 1000, 600)]


def test_matching_by_uetr_alone() -> None:
    uetr = transaction_ids(f"PO{2:024d}", 1)[2]
    result, breaks = run([payout(2, 700)], [line(700, uetrs=(uetr,))])
    assert breaks == [] and result.matched == 1


def test_pending_entries_are_neither_matched_nor_balanced() -> None:
    lines = [line(1000, e2e(1)), line(50, e2e(9), status="PDNG")]
    result, breaks = run([payout(1, 1000)], lines)
    assert breaks == [] and result.entries == 2


def test_the_same_inputs_give_the_same_digest_and_a_change_another() -> None:
    exp = [payout(1, 1000), payout(2, 2500)]
    lines = [line(1000, e2e(1))]
    first = reconcile_all(DAY, Tolerance(), exp, [(stmt(lines), lines, None)])[1]
    again = reconcile_all(DAY, Tolerance(), exp, [(stmt(lines), lines, None)])[1]
    other = [line(1001, e2e(1))]
    changed = reconcile_all(DAY, Tolerance(), exp, [(stmt(other), other, None)])[1]
    assert first == again != changed


def test_merchant_report_nets_gross_fees_paid_and_returned() -> None:
    exp = [payout(3, 1000), payout(6, 2000), ret(6, 2000)]  # both merchant m-0
    lines = [line(1000, e2e(3)), line(2000, e2e(6)), line(2000, e2e(6), cd="CRDT", is_return=True)]
    result, _ = run(exp, lines)
    m = result.merchants[(BANK, "m-0", "EUR")]
    assert (m.payouts, m.gross_minor, m.fees_minor, m.net_paid_minor, m.returned_minor) == (
        2, 3060, 60, 3000, 2000)
