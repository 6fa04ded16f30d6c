"""Matching: one day's expected bookings against the bank's statement entries. Pure.

Expected bookings of the run's day (payouts as DBITs, returns as CRDTs) sit in a columnar
table (a million fit in ~200 MB); entries stream through `entry()` one by one. Each entry
is tied to expected bookings by reference, in this order:

- its EndToEndIds (one: one-to-one; several, from TxDtls: one entry for many bookings),
- else its UETRs (mapped to our EndToEndIds),
- else its MsgId (a batch booked as one entry: every payout of that pacs.008).

Several entries for one booking are a split (many-to-one) when their amounts add up, and
a duplicate when one of them already matched. Amounts compare exactly, within
`Tolerance.amount_minor`; a booking on another day is `value_date_mismatch` beyond
`Tolerance.value_date_days`. Entries of neighbouring days' statements, and bookings we
expected on neighbouring days, only explain what is left unmatched on the run's day
(`explain_entry`, `explain_expected`), within `Tolerance.window_days`.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from settlement.domain.batch import deterministic_uetr, payout_of_end_to_end_id
from settlement.domain.reconciliation import (
    BookedLine,
    Break,
    BreakType,
    CurrencyTotals,
    ExpectedBooking,
    ExpectedChunk,
    ExpectedKind,
    MerchantDay,
    ReconResult,
    StatementInfo,
    Tolerance,
)

_PAYOUT, _RETURN = 0, 1
MatchSink = Callable[[str, str], None]  # (bank, "kind|e2e|acct_svcr_ref|amount|ccy")


class _Interned:
    """Small repeated values (banks, currencies, dates, MsgIds, merchants) as int codes."""

    def __init__(self) -> None:
        self.values: list[object] = []
        self.codes: dict[object, int] = {}

    def code(self, value: object) -> int:
        found = self.codes.get(value)
        if found is None:
            found = self.codes[value] = len(self.values)
            self.values.append(value)
        return found


@dataclass
class _Table:
    """Expected bookings of one kind, column by column."""

    index: dict[str, int] = field(default_factory=dict)  # EndToEndId -> row
    e2e: list[str] = field(default_factory=list)
    amount: array[int] = field(default_factory=lambda: array("q"))
    bank: array[int] = field(default_factory=lambda: array("i"))
    currency: array[int] = field(default_factory=lambda: array("i"))
    day: array[int] = field(default_factory=lambda: array("i"))
    msg: array[int] = field(default_factory=lambda: array("i"))
    merchant: array[int] = field(default_factory=lambda: array("i"))
    hits: array[int] = field(default_factory=lambda: array("i"))  # entries tied to the row
    booked: array[int] = field(default_factory=lambda: array("q"))  # their amounts, summed
    refs: dict[int, str] = field(default_factory=dict)  # return ids

    def __len__(self) -> int:
        return len(self.e2e)


@dataclass
class _Odd:
    """Entries tied to one expected row that did not match it cleanly on their own."""

    lines: list[tuple[StatementInfo, BookedLine]] = field(default_factory=list)


class Reconciler:
    """Feed: `expect()` every booking of the day, then `entry()` every statement entry of
    the day, then `explain_*` the neighbours, then `finish()`."""

    def __init__(self, day: date, tolerance: Tolerance, on_match: MatchSink | None = None) -> None:
        self.day = day
        self.tol = tolerance
        self._on_match = on_match
        self._digest = hashlib.sha256()
        self._v = _Interned()
        self._t = (_Table(), _Table())
        self._odd: dict[tuple[int, int], _Odd] = {}
        self._by_uetr: dict[str, str] | None = None
        self._by_msg: dict[int, list[int]] | None = None
        self._unmatched: list[tuple[StatementInfo, BookedLine, str]] = []  # (.., why)
        self._breaks: list[Break] = []
        self._late: dict[tuple[int, int], tuple[StatementInfo, BookedLine]] = {}
        self._merch: dict[tuple[int, int, int], list[int]] = {}  # payouts, gross, fees
        self.result = ReconResult()

    # -- expected side -----------------------------------------------------------------

    def expect(self, b: ExpectedBooking) -> None:
        self.expect_chunk(ExpectedChunk(b.kind, b.bank_bic, b.settlement_date, b.currency,
                                        b.msg_id, b.ref, [[b.end_to_end_id, b.amount_minor,
                                                           b.merchant_id, b.gross_minor,
                                                           b.fee_minor]]))

    def _gross_fee(self, bank: int, merchant: int, currency: int, gross: int, fee: int) -> None:
        """Payouts, gross and fees per merchant line, summed as bookings are loaded."""
        key = (bank, merchant, currency)
        found = self._merch.get(key)
        if found is None:
            self._merch[key] = [1, gross, fee]
        else:
            found[0] += 1
            found[1] += gross
            found[2] += fee

    def expect_chunk(self, chunk: ExpectedChunk) -> None:
        """`expect` for a stored chunk of bookings (the fast path: shared fields coded once)."""
        t = self._t[_RETURN if chunk.kind is ExpectedKind.RETURN else _PAYOUT]
        code = self._v.code
        bank, ccy, day, msg = (code(chunk.bank_bic), code(chunk.currency),
                               code(chunk.settlement_date), code(chunk.msg_id))
        index, e2es, amounts = t.index, t.e2e, t.amount
        total = 0
        for e2e, amount, merchant, gross, fee in chunk.items:
            if not isinstance(e2e, str) or type(amount) is not int or type(gross) is not int \
                    or type(fee) is not int:
                raise ValueError(f"malformed expected booking {e2e!r} in {chunk.msg_id}")
            if e2e in index:
                raise ValueError(f"expected {chunk.kind.value} {e2e} twice")
            row = len(e2es)
            index[e2e] = row
            e2es.append(e2e)
            amounts.append(amount)
            t.bank.append(bank)
            t.currency.append(ccy)
            t.day.append(day)
            t.msg.append(msg)
            merchant_code = code(merchant)
            t.merchant.append(merchant_code)
            if chunk.kind is ExpectedKind.PAYOUT:
                self._gross_fee(bank, merchant_code, ccy, gross, fee)
            t.hits.append(0)
            t.booked.append(0)
            if chunk.ref:
                t.refs[row] = chunk.ref
            total += amount
        totals = self._totals(chunk.bank_bic, chunk.currency)
        totals.expected_count += len(chunk.items)
        totals.expected_minor += total

    def _totals(self, bank: str, currency: str) -> CurrencyTotals:
        key = (bank, currency)
        found = self.result.totals.get(key)
        if found is None:
            found = self.result.totals[key] = CurrencyTotals()
        return found

    # -- bank side ---------------------------------------------------------------------

    def entry(self, info: StatementInfo, line: BookedLine) -> None:
        """One entry of a statement of the run's day."""
        self.result.entries += 1
        if line.status != "BOOK":
            return  # pending / information only: not money yet, not in the balances
        totals = self._totals(info.bank_bic, line.currency)
        totals.booked_count += 1
        totals.booked_minor += line.signed_minor
        kind = _RETURN if (line.is_return or line.credit_debit == "CRDT") else _PAYOUT
        if len(line.end_to_end_ids) == 1:  # the common case, inlined: one reference, exact
            t = self._t[kind]
            row = t.index.get(line.end_to_end_ids[0])
            codes = self._v.codes
            if (row is not None and t.hits[row] == 0
                    and codes.get(line.currency) == t.currency[row]
                    and abs(line.amount_minor - t.amount[row]) <= self.tol.amount_minor
                    and (codes.get(line.value_date) == t.day[row]
                         or self._days_off(t.day[row], line.value_date) <= self.tol.value_date_days)):
                t.hits[row] = 1
                t.booked[row] = line.amount_minor
                self._matched(kind, row, line)
                return
        rows = self._resolve(kind, line)
        if not rows:
            self._unmatched.append((info, line, "no reference of ours" if not (
                line.end_to_end_ids or line.uetrs or line.msg_id) else "unknown reference"))
        elif len(rows) == 1:
            self._tie_one(kind, rows[0], info, line)
        else:
            self._tie_group(kind, rows, info, line)

    def _resolve(self, kind: int, line: BookedLine) -> list[int]:
        t = self._t[kind]
        refs = list(line.end_to_end_ids)
        if not refs and line.uetrs:
            by_uetr = self._uetr_index()
            refs = [by_uetr[u] for u in line.uetrs if u in by_uetr]
        if refs:
            rows = [t.index[r] for r in refs if r in t.index]
            return rows if len(rows) == len(refs) else []
        if line.msg_id is not None and kind == _PAYOUT:
            return list(self._msg_index().get(self._v.code(line.msg_id), []))
        return []

    def _uetr_index(self) -> dict[str, str]:
        """UETR -> EndToEndId for our payouts (derived: both come from the payout id)."""
        if self._by_uetr is None:
            self._by_uetr = {}
            for e2e in self._t[_PAYOUT].e2e:
                parsed = payout_of_end_to_end_id(e2e)
                if parsed is not None:
                    self._by_uetr[deterministic_uetr(parsed[0], str(parsed[1]))] = e2e
        return self._by_uetr

    def _msg_index(self) -> dict[int, list[int]]:
        if self._by_msg is None:
            self._by_msg = defaultdict(list)
            for row, msg in enumerate(self._t[_PAYOUT].msg):
                self._by_msg[msg].append(row)
        return self._by_msg

    def _clean(self, kind: int, row: int, info: StatementInfo, line: BookedLine) -> bool:
        t = self._t[kind]
        return (self._v.values[t.currency[row]] == line.currency
                and abs(line.amount_minor - t.amount[row]) <= self.tol.amount_minor
                and self._days_off(t.day[row], line.value_date) <= self.tol.value_date_days)

    def _date(self, day_code: int) -> date:
        day = self._v.values[day_code]
        assert isinstance(day, date)
        return day

    def _days_off(self, day_code: int, booked: date) -> int:
        return abs((booked - self._date(day_code)).days)

    def _tie_one(self, kind: int, row: int, info: StatementInfo, line: BookedLine) -> None:
        t = self._t[kind]
        first = t.hits[row] == 0
        t.hits[row] += 1
        t.booked[row] += line.amount_minor
        if first and self._clean(kind, row, info, line):
            self._matched(kind, row, line)
            return
        self._odd.setdefault((kind, row), _Odd()).lines.append((info, line))

    def _tie_group(self, kind: int, rows: list[int], info: StatementInfo, line: BookedLine) -> None:
        t = self._t[kind]
        taken = any(t.hits[r] for r in rows)
        expected = sum(t.amount[r] for r in rows)
        currencies = {self._v.values[t.currency[r]] for r in rows}
        for r in rows:
            t.hits[r] += 1
        e2e = ",".join(sorted(t.e2e[r] for r in rows))
        if taken:
            self._break(BreakType.DUPLICATE_AT_BANK, info, line, end_to_end_id=e2e,
                        expected=expected, detail=f"{len(rows)} bookings already matched")
        elif currencies != {line.currency}:
            self._break(BreakType.CURRENCY_MISMATCH, info, line, end_to_end_id=e2e,
                        expected=expected, detail=f"expected {'/'.join(sorted(map(str, currencies)))}")
        elif abs(line.amount_minor - expected) > self.tol.amount_minor:
            self._break(BreakType.AMOUNT_MISMATCH, info, line, end_to_end_id=e2e,
                        expected=expected, detail=f"one entry for {len(rows)} bookings")
        else:
            for r in rows:
                t.booked[r] = t.amount[r]
                self._matched(kind, r, line)
            late = [r for r in rows if self._days_off(t.day[r], line.value_date)
                    > self.tol.value_date_days]
            if late:
                self._break(BreakType.VALUE_DATE_MISMATCH, info, line, end_to_end_id=e2e,
                            expected=expected, expected_date=self._v.values[t.day[late[0]]],
                            detail=f"one entry for {len(rows)} bookings")

    def _matched(self, kind: int, row: int, line: BookedLine) -> None:
        t = self._t[kind]
        self.result.matched += 1
        currency = str(self._v.values[t.currency[row]])
        totals = self._totals(str(self._v.values[t.bank[row]]), currency)
        totals.matched_count += 1
        totals.matched_minor += t.amount[row]
        text = (f"{'return' if kind == _RETURN else 'payout'}|{t.e2e[row]}|"
                f"{line.acct_svcr_ref or ''}|{line.amount_minor}|{line.currency}")
        self._digest.update(f"{text}\n".encode())
        if self._on_match is not None:
            self._on_match(str(self._v.values[t.bank[row]]), text)

    def _break(self, type_: BreakType, info: StatementInfo | None, line: BookedLine | None, *,
               bank: str = "", currency: str = "", end_to_end_id: str = "", msg_id: str = "",
               expected: int | None = None, expected_date: object = None,
               detail: str = "") -> None:
        self._breaks.append(Break(
            type=type_, bank_bic=info.bank_bic if info else bank,
            currency=line.currency if line else currency,
            account_id=info.account_id if info else "",
            end_to_end_id=end_to_end_id or (",".join(line.end_to_end_ids) if line else ""),
            acct_svcr_ref=(line.acct_svcr_ref or "") if line else "",
            msg_id=msg_id or ((line.msg_id or "") if line else ""),
            statement_id=info.statement_id if info else "",
            expected_minor=expected, booked_minor=line.amount_minor if line else None,
            expected_date=expected_date if isinstance(expected_date, date) else None,
            booked_date=line.value_date if line else None, detail=detail))

    # -- statements --------------------------------------------------------------------

    def statement(self, info: StatementInfo, booked_sum: int, previous: StatementInfo | None) -> None:
        """A statement of the run's day, once all its entries went through `entry()`:
        `booked_sum` is the signed sum of its BOOK entries; `previous` is the account's
        statement before it (None when there is none to compare with)."""
        self.result.statements.append(info)
        if info.opening_minor + booked_sum != info.closing_minor:
            self._breaks.append(Break(
                type=BreakType.BALANCE_MISMATCH, bank_bic=info.bank_bic, currency=info.currency,
                account_id=info.account_id, statement_id=info.statement_id, msg_id=info.msg_id,
                expected_minor=info.closing_minor, booked_minor=info.opening_minor + booked_sum,
                booked_date=info.to_date,
                detail="opening + entries != closing"))
        if previous is None:
            return
        missing_seq = (info.electronic_seq_nb is not None and previous.electronic_seq_nb is not None
                       and info.electronic_seq_nb != previous.electronic_seq_nb + 1)
        missing_days = (info.from_date - previous.to_date).days > 1
        if missing_seq or missing_days:
            what = []
            if missing_seq:
                assert info.electronic_seq_nb is not None and previous.electronic_seq_nb is not None
                what.append(f"sequence {previous.electronic_seq_nb} -> {info.electronic_seq_nb}")
            if missing_days:
                what.append(f"days {previous.to_date} -> {info.from_date}")
            self._breaks.append(Break(
                type=BreakType.STATEMENT_GAP, bank_bic=info.bank_bic, currency=info.currency,
                account_id=info.account_id, statement_id=info.statement_id, msg_id=info.msg_id,
                expected_date=previous.to_date, booked_date=info.from_date,
                detail="missing " + ", ".join(what)))
        elif previous.closing_minor != info.opening_minor:
            self._breaks.append(Break(
                type=BreakType.BALANCE_MISMATCH, bank_bic=info.bank_bic, currency=info.currency,
                account_id=info.account_id, statement_id=info.statement_id, msg_id=info.msg_id,
                expected_minor=previous.closing_minor, booked_minor=info.opening_minor,
                booked_date=info.from_date, detail="opening != previous statement's closing"))

    def missing_statement(self, bank_bic: str, currency: str, detail: str) -> None:
        self._breaks.append(Break(type=BreakType.STATEMENT_GAP, bank_bic=bank_bic,
                                  currency=currency, expected_date=self.day, detail=detail))

    # -- neighbours --------------------------------------------------------------------

    def wanted_references(self) -> tuple[set[str], set[str]]:
        """(EndToEndIds of our unmatched bookings, references of unmatched entries)."""
        ours = {t.e2e[r] for t in self._t for r in range(len(t)) if t.hits[r] == 0}
        theirs = {ref for _, line, _ in self._unmatched for ref in (*line.end_to_end_ids, *line.uetrs)}
        return ours, theirs

    def explain_entry(self, info: StatementInfo, line: BookedLine) -> None:
        """An entry of a neighbouring day's statement: does it book one of ours, late/early?"""
        if line.status != "BOOK" or len(line.end_to_end_ids) != 1:
            return
        kind = _RETURN if (line.is_return or line.credit_debit == "CRDT") else _PAYOUT
        t = self._t[kind]
        row = t.index.get(line.end_to_end_ids[0])
        if row is None or t.hits[row]:
            return
        if self._days_off(t.day[row], line.value_date) <= self.tol.window_days:
            t.hits[row] += 1
            t.booked[row] += line.amount_minor
            self._late[(kind, row)] = (info, line)

    def explain_expected(self, b: ExpectedBooking) -> None:
        """A booking we expected on a neighbouring day: is it an unmatched entry of today's?"""
        for i, (info, line, _) in enumerate(self._unmatched):
            if b.end_to_end_id in line.end_to_end_ids and len(line.end_to_end_ids) == 1 and (
                    abs((line.value_date - b.settlement_date).days) <= self.tol.window_days):
                del self._unmatched[i]
                self._break(BreakType.VALUE_DATE_MISMATCH, info, line,
                            expected=b.amount_minor, expected_date=b.settlement_date,
                            detail=f"booked for a {b.kind.value} expected on {b.settlement_date}")
                return

    # -- the end -----------------------------------------------------------------------

    def finish(self, statuses: Callable[[list[str]], Mapping[str, str]]) -> ReconResult:
        """Turn what is left into breaks. `statuses` gives the payout status of EndToEndIds
        (asked only for unmatched payouts: a rejected one is not expected to be booked)."""
        self._finish_odd()
        self._finish_unbooked(statuses)
        for info, line, why in self._unmatched:
            if line.is_return or line.credit_debit == "CRDT":
                self._break(BreakType.RETURN_UNEXPECTED if line.is_return else
                            BreakType.UNEXPECTED_AT_BANK, info, line, detail=why)
            else:
                self._break(BreakType.UNEXPECTED_AT_BANK, info, line, detail=why)
        self._merchant_report()
        self.result.breaks = sorted(self._breaks, key=Break.sort_key)
        for b in self.result.breaks:
            self._digest.update(repr((b.sort_key(), b.expected_minor, b.booked_minor,
                                      b.expected_date, b.booked_date)).encode())
        return self.result

    @property
    def digest(self) -> str:
        return self._digest.hexdigest()

    def _finish_odd(self) -> None:
        for (kind, row), odd in sorted(self._odd.items()):
            t = self._t[kind]
            expected = t.amount[row]
            currency = str(self._v.values[t.currency[row]])
            lines = odd.lines
            info0, line0 = lines[0]
            clean_before = t.hits[row] > len(lines)  # one entry already matched it cleanly
            same = [ln for _, ln in lines if ln.amount_minor == expected]
            if clean_before or (len(lines) > 1 and len(same) >= 1 and len(same) == len(lines)):
                extra = lines if clean_before else lines[1:]
                if not clean_before:
                    self._matched(kind, row, line0)
                for info, line in extra:
                    self._break(BreakType.DUPLICATE_AT_BANK, info, line, end_to_end_id=t.e2e[row],
                                expected=expected, expected_date=self._v.values[t.day[row]],
                                detail="booked more than once")
                continue
            total = sum(ln.amount_minor for _, ln in lines)
            if any(ln.currency != currency for _, ln in lines):
                self._break(BreakType.CURRENCY_MISMATCH, info0, line0, end_to_end_id=t.e2e[row],
                            expected=expected, detail=f"expected {currency}")
            elif abs(total - expected) > self.tol.amount_minor:
                self._break(BreakType.AMOUNT_MISMATCH, info0, line0, end_to_end_id=t.e2e[row],
                            expected=expected, expected_date=self._v.values[t.day[row]],
                            detail=(f"{len(lines)} entries sum to {total}" if len(lines) > 1
                                    else ""))
            else:  # one entry on another day, or a split booking (many-to-one) adding up
                self._matched(kind, row, line0)
                late = [ln for _, ln in lines if self._days_off(t.day[row], ln.value_date)
                        > self.tol.value_date_days]
                if late:
                    self._break(BreakType.VALUE_DATE_MISMATCH, info0, late[0],
                                end_to_end_id=t.e2e[row], expected=expected,
                                expected_date=self._v.values[t.day[row]])

    def _finish_unbooked(self, statuses: Callable[[list[str]], Mapping[str, str]]) -> None:
        t = self._t[_PAYOUT]
        unbooked = [r for r in range(len(t)) if t.hits[r] == 0]
        status = statuses([t.e2e[r] for r in unbooked]) if unbooked else {}
        for kind, rows in ((_PAYOUT, unbooked),
                           (_RETURN, [r for r in range(len(self._t[_RETURN]))
                                      if self._t[_RETURN].hits[r] == 0])):
            tk = self._t[kind]
            for r in rows:
                if kind == _PAYOUT and status.get(tk.e2e[r]) == "rejected":
                    self._rejected(r)
                    continue
                self._breaks.append(Break(
                    type=BreakType.MISSING_AT_BANK if kind == _PAYOUT else BreakType.RETURN_UNBOOKED,
                    bank_bic=str(self._v.values[tk.bank[r]]),
                    currency=str(self._v.values[tk.currency[r]]), end_to_end_id=tk.e2e[r],
                    msg_id=str(self._v.values[tk.msg[r]]), expected_minor=tk.amount[r],
                    expected_date=self._date(tk.day[r]),
                    detail=(f"return {tk.refs.get(r, '')}" if kind == _RETURN else "")))
        for (kind, row), (info, line) in sorted(self._late.items()):
            tk = self._t[kind]
            self._break(BreakType.VALUE_DATE_MISMATCH, info, line, end_to_end_id=tk.e2e[row],
                        expected=tk.amount[row], expected_date=self._v.values[tk.day[row]],
                        detail=f"booked in statement {info.statement_id} of {info.to_date}")

    def _rejected(self, row: int) -> None:
        t = self._t[_PAYOUT]
        totals = self._totals(str(self._v.values[t.bank[row]]), str(self._v.values[t.currency[row]]))
        totals.expected_count -= 1  # the bank refused it: not expected on the statement
        totals.expected_minor -= t.amount[row]
        t.hits[row] = -1  # rejected: not paid

    def _merchant_report(self) -> None:
        merchants = self.result.merchants
        v = self._v.values

        def line(bank: int, merchant: int, currency: int) -> MerchantDay:
            key = (str(v[bank]), str(v[merchant]), str(v[currency]))
            found = merchants.get(key)
            if found is None:
                found = merchants[key] = MerchantDay()
            return found

        for (bank, merchant, currency), (payouts, gross, fee) in self._merch.items():
            m = line(bank, merchant, currency)
            m.payouts, m.gross_minor, m.fees_minor = payouts, gross, fee
        for kind, t in enumerate(self._t):
            for r in range(len(t)):
                if kind == _RETURN:
                    line(t.bank[r], t.merchant[r], t.currency[r]).returned_minor += t.amount[r]
                elif t.hits[r] > 0:
                    line(t.bank[r], t.merchant[r], t.currency[r]).net_paid_minor += min(
                        t.booked[r], t.amount[r])


def reconcile_all(day: date, tolerance: Tolerance, expected: Iterable[ExpectedBooking],
                  statements: Iterable[tuple[StatementInfo, list[BookedLine], StatementInfo | None]],
                  statuses: Mapping[str, str] | None = None) -> tuple[ReconResult, str]:
    """Everything in memory at once: for tests and small days."""
    rec = Reconciler(day, tolerance)
    for b in expected:
        rec.expect(b)
    for info, lines, previous in statements:
        for line in lines:
            rec.entry(info, line)
        rec.statement(info, sum(ln.signed_minor for ln in lines if ln.status == "BOOK"), previous)
    known = statuses or {}
    result = rec.finish(lambda e2es: {e: known[e] for e in e2es if e in known})
    return result, rec.digest
