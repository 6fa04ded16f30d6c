"""The clock-driven part of a bank: settle accepted transactions, return some, close days.

`process_due(bank, until)` handles every due event in time order: settlements and returns
at their instant (booking_time local on the due day), then the end of each local day
(23:59:59) which sends the camt.053 statements. Each event is one SQLite transaction that
books, renders (XSD-validated) and appends to the outbox, or does nothing at all.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from settlement.bank.mockbank import statements
from settlement.bank.mockbank.store import Row, from_ts, ts
from settlement.domain.bank_messages import Entry, Notification, PaymentReturn

if TYPE_CHECKING:
    from settlement.bank.mockbank.bank import Bank

END_OF_DAY = time(23, 59, 59)


def booking_instant(bank: Bank, day: date) -> datetime:
    return datetime.combine(day, bank.config.booking_time, tzinfo=bank.config.zone)


def local_date(bank: Bank, at: datetime) -> date:
    return at.astimezone(bank.config.zone).date()


def business_days_after(day: date, n: int) -> date:
    """`n` Mon-Fri days after `day` (no holidays: the mock keeps the calendar simple)."""
    while n > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            n -= 1
    return day


def process_due(bank: Bank, until: datetime) -> list[dict[str, Any]]:
    emitted: list[dict[str, Any]] = []
    while True:
        due_text = bank.store.next_due()
        due = from_ts(due_text) if due_text else None
        eod_day = date.fromisoformat(str(bank.store.meta("eod_done"))) + timedelta(days=1)
        eod = datetime.combine(eod_day, END_OF_DAY, tzinfo=bank.config.zone)
        if due is not None and due <= eod and due <= until:
            emitted += _settle(bank, due) + _return(bank, due)
        elif eod <= until:
            with bank.store.transaction():
                emitted += statements.close_day(bank, eod_day, eod)
                bank.store.set_meta("eod_done", eod_day.isoformat())
        else:
            return emitted


def _entry_ref(bank: Bank) -> str:
    return f"{bank.bic[:8]}{bank.store.next_seq('entry'):012d}"


def _book(bank: Bank, tx: Row, at: datetime, credit_debit: str, return_reason: str | None) -> Entry:
    day = local_date(bank, at)
    entry = Entry(
        acct_svcr_ref=_entry_ref(bank), amount_minor=tx["amount_minor"], currency=tx["currency"],
        credit_debit="DBIT" if credit_debit == "DBIT" else "CRDT", booking_date=day, value_date=day,
        end_to_end_ids=(tx["end_to_end_id"],), uetrs=(tx["uetr"],) if tx["uetr"] else (),
        msg_id=tx["msg_id"], is_return=return_reason is not None, return_reason=return_reason)
    bank.store.add_entry({
        "account": tx["processor_account"], "currency": entry.currency, "amount_minor": entry.amount_minor,
        "credit_debit": entry.credit_debit, "booking_date": day.isoformat(), "value_date": day.isoformat(),
        "acct_svcr_ref": entry.acct_svcr_ref, "end_to_end_id": tx["end_to_end_id"], "uetr": tx["uetr"],
        "msg_id": tx["msg_id"], "is_return": entry.is_return, "return_reason": return_reason})
    return entry


def _notification(bank: Bank, account: str, currency: str, entries: list[Entry],
                  at: datetime) -> Notification:
    msg_id = bank.new_msg_id("NTF")
    return Notification(msg_id=msg_id, created_at=at, notification_id=msg_id, account_id=account,
                        account_currency=currency, entries=tuple(entries))


def _settle(bank: Bank, due: datetime) -> list[dict[str, Any]]:
    """Book every transaction due at `due`: one camt.054 per (pacs.008, processor account)."""
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for tx in bank.store.due_settlements(ts(due)):
        groups[(tx["msg_id"], tx["processor_account"])].append(tx)
    emitted = []
    for (_, account), txs in groups.items():
        with bank.store.transaction():
            entries = []
            for tx in txs:
                return_due = None
                if tx["return_reason"]:
                    back = business_days_after(local_date(bank, due), bank.faults.return_after_business_days)
                    return_due = ts(max(booking_instant(bank, back), due))
                bank.store.mark_settled(tx["id"], due, local_date(bank, due).isoformat(), return_due)
                bank.store.add_balance(account, -tx["amount_minor"])
                if tx["creditor_account"]:
                    bank.store.add_balance(tx["creditor_account"], tx["amount_minor"])
                entries.append(_book(bank, tx, due, "DBIT", None))
            emitted.append(bank.emit(_notification(bank, account, txs[0]["currency"], entries, due), due)[0])
    return emitted


def _return(bank: Bank, due: datetime) -> list[dict[str, Any]]:
    """Send back every settled transaction whose return is due: a pacs.004 and a camt.054 CRDT."""
    emitted = []
    for tx in bank.store.due_returns(ts(due)):
        with bank.store.transaction():
            bank.store.mark_returned(tx["id"], due)
            bank.store.add_balance(tx["processor_account"], tx["amount_minor"])
            if tx["creditor_account"]:
                bank.store.add_balance(tx["creditor_account"], -tx["amount_minor"])
            entry = _book(bank, tx, due, "CRDT", tx["return_reason"])
            msg_id = bank.new_msg_id("RTR")
            ret = PaymentReturn(
                msg_id=msg_id, created_at=due, return_id=msg_id, orgnl_msg_id=tx["msg_id"],
                orgnl_end_to_end_id=tx["end_to_end_id"], orgnl_uetr=tx["uetr"],
                returned_minor=tx["amount_minor"], currency=tx["currency"],
                settlement_date=local_date(bank, due), reason=tx["return_reason"])
            emitted.append(bank.emit(ret, due)[0])
            note = _notification(bank, tx["processor_account"], tx["currency"], [entry], due)
            emitted.append(bank.emit(note, due)[0])
    return emitted
