"""End of day: one camt.053 per processor account, with the statement faults asked for.

A statement covers every entry booked since the previous one (weekend bookings land in
Monday's). Balances are always the bank's true ledger: opening = previous closing and
closing = opening + credits - debits of the entries really booked. Faults then act:

  next_day_booking  an entry is really re-booked on the next business day (value date too):
                    it leaves this statement and appears in the next; both stay consistent
  unexpected_entry  a real CRDT nobody sent is booked (amount_minor, default 100): consistent,
                    but nothing on the processor side explains it
  missing_entry     an entry is left out of the list (closing still counts it)
  altered_amount    an entry's amount is shown + delta_minor (default 1)
  duplicated_entry  an entry is listed twice (same AcctSvcrRef)
  skip_statement    the statement is made (sequence number, balances, entries stated) but
                    never sent: the next one shows a gap in ElctrncSeqNb and dates
The missing, altered and duplicated entries break opening + entries == closing, as a buggy bank file would.
A fault targets the entry with `end_to_end_id`, else the first entry; a fault needing an
entry waits for the next statement that has one.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from settlement.bank.mockbank.store import Row
from settlement.domain.bank_messages import Entry, Statement

if TYPE_CHECKING:
    from settlement.bank.mockbank.bank import Bank

_NEEDS_ENTRY = frozenset({"next_day_booking", "missing_entry", "altered_amount", "duplicated_entry"})


def _next_business_day(day: date) -> date:
    day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _entry(row: Row) -> Entry:
    return Entry(
        acct_svcr_ref=row["acct_svcr_ref"], amount_minor=row["amount_minor"], currency=row["currency"],
        credit_debit=row["credit_debit"], booking_date=date.fromisoformat(row["booking_date"]),
        value_date=date.fromisoformat(row["value_date"]),
        end_to_end_ids=(row["end_to_end_id"],) if row["end_to_end_id"] else (),
        uetrs=(row["uetr"],) if row["uetr"] else (), msg_id=row["msg_id"],
        is_return=bool(row["is_return"]), return_reason=row["return_reason"])


def _target(rows: list[Row], params: dict[str, Any]) -> Row | None:
    wanted = params.get("end_to_end_id")
    return next((r for r in rows if wanted is None or r["end_to_end_id"] == wanted), None)


def _signed(row: Row) -> int:
    return int(row["amount_minor"]) * (1 if row["credit_debit"] == "CRDT" else -1)


def close_day(bank: Bank, day: date, at: datetime) -> list[dict[str, Any]]:
    """The statements of local business day `day` (none on Saturday and Sunday)."""
    if day.weekday() >= 5:
        return []
    made = [_statement(bank, account.id, account.currency, day, at)
            for account in bank.config.processor_accounts]
    return [m for m in made if m is not None]


def _statement(bank: Bank, account: str, currency: str, day: date, at: datetime) -> dict[str, Any] | None:
    store = bank.store
    rows = store.unstated_entries(account, day.isoformat())
    applied: list[tuple[Row, Row | None]] = []  # (fault, its target entry)
    for fault in store.pending_faults(account):
        params = json.loads(fault["params"])
        target = _target(rows, params)
        if fault["fault"] in _NEEDS_ENTRY and target is None:
            continue
        if fault["fault"] == "next_day_booking" and target is not None:
            store.move_entry(target["id"], _next_business_day(day).isoformat())
            rows.remove(target)
        elif fault["fault"] == "unexpected_entry":
            amount = int(params.get("amount_minor", 100))
            ref = f"{bank.bic[:8]}{store.next_seq('entry'):012d}"
            store.add_entry({"account": account, "currency": currency, "amount_minor": amount,
                             "credit_debit": "CRDT", "booking_date": day.isoformat(),
                             "value_date": day.isoformat(), "acct_svcr_ref": ref})
            store.add_balance(account, amount)
            rows = store.unstated_entries(account, day.isoformat())
        applied.append((fault, target))
    state = store.statement_state(account)
    seq = int(state["seq"]) + 1 if state else 1
    opening = int(state["closing_minor"]) if state else 0
    closing = opening + sum(_signed(r) for r in rows)
    shown = [_entry(r) for r in rows]
    for fault, target in applied:
        if target is None or fault["fault"] in ("next_day_booking", "unexpected_entry",
                                                 "skip_statement"):
            continue
        index = next(i for i, e in enumerate(shown) if e.acct_svcr_ref == target["acct_svcr_ref"])
        if fault["fault"] == "missing_entry":
            del shown[index]
        elif fault["fault"] == "altered_amount":
            delta = int(json.loads(fault["params"]).get("delta_minor", 1))
            amount = abs(shown[index].amount_minor + delta)
            shown[index] = shown[index].model_copy(update={"amount_minor": amount})
        else:
            shown.insert(index + 1, shown[index])
    previous = state["to_date"] if state and state["to_date"] else None
    # the first statement starts with the account's first booking (e.g. on a weekend)
    first = min((date.fromisoformat(r["booking_date"]) for r in rows), default=day)
    from_date = date.fromisoformat(previous) + timedelta(days=1) if previous else min(day, first)
    statement_id = f"STM{day:%Y%m%d}{seq:06d}{account[-12:]}"
    statement = Statement(
        msg_id=bank.new_msg_id("STM"), created_at=at, statement_id=statement_id, electronic_seq_nb=seq,
        account_id=account, account_currency=currency, servicer_bic=bank.bic, from_date=from_date,
        to_date=day, opening_minor=opening, closing_minor=closing, entries=tuple(shown))
    skipped = any(fault["fault"] == "skip_statement" for fault, _ in applied)
    emitted = None if skipped else bank.emit(statement, at)[0]
    store.mark_stated([int(r["id"]) for r in rows], statement_id)
    store.save_statement_state(account, seq, closing, day.isoformat())
    for fault, _ in applied:
        store.mark_fault_applied(int(fault["id"]), statement_id)
    return emitted
