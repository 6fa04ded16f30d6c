"""Cassandra side of reconciliation: statements and statuses in, report tables out.

A run is written breaks and matched chunks first, the day's summaries next, and its
`recon_runs` row (with `recon_runs_by_day`) last: a run without that row never finished
and is not listed. Older runs stay; the summaries of a bank and day are replaced by the
newest run's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

import orjson
from cassandra import ConsistencyLevel
from cassandra.cluster import Session

from settlement.domain.batch import payout_of_end_to_end_id
from settlement.domain.reconciliation import (
    Break,
    BreakType,
    ExpectedChunk,
    ReconResult,
    RunRecord,
    unpack_lines,
)
from settlement.store.expected import CassandraExpectedStore
from settlement.store.session import execute, execute_all


class CassandraReconStore:
    def __init__(self, session: Session, concurrency: int = 64) -> None:
        self._s = session
        self._concurrency = concurrency
        self._expected = CassandraExpectedStore(session, concurrency)
        p = session.prepare
        self._stmt_days = p("SELECT bank_bic, account_id, statement_id FROM statements_by_day "
                            "WHERE to_date = ?")
        self._stmt_body = p("SELECT body FROM bank_statements WHERE bank_bic = ? AND account_id = ? "
                            "AND to_date = ? AND statement_id = ?")
        self._stmt_prev = p("SELECT to_date, statement_id, body FROM bank_statements "
                            "WHERE bank_bic = ? AND account_id = ? AND to_date < ? "
                            "ORDER BY to_date DESC LIMIT 1")
        self._status = p("SELECT status, attempt FROM payouts WHERE payout_id = ?")
        self._status.consistency_level = ConsistencyLevel.SERIAL  # moved by LWT
        self._break = p(
            "INSERT INTO recon_breaks (run_date, bank_bic, run_id, seq, type, currency, account_id, "
            "end_to_end_id, acct_svcr_ref, msg_id, statement_id, expected_minor, booked_minor, "
            "expected_date, booked_date, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._matched = p("INSERT INTO recon_matched (run_date, bank_bic, run_id, chunk, lines, body) "
                          "VALUES (?, ?, ?, ?, ?, ?)")
        self._summary_clear = p("DELETE FROM recon_daily_summary WHERE run_date = ? AND bank_bic = ?")
        self._summary = p(
            "INSERT INTO recon_daily_summary (run_date, bank_bic, currency, run_id, expected_count, "
            "expected_minor, booked_count, booked_minor, matched_count, matched_minor, breaks) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._merchant_clear = p("DELETE FROM merchant_settlement_report WHERE run_date = ? "
                                 "AND bank_bic = ?")
        self._merchant = p(
            "INSERT INTO merchant_settlement_report (run_date, bank_bic, merchant_id, currency, "
            "run_id, payouts, gross_minor, fees_minor, net_paid_minor, returned_minor) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._run = p(
            "INSERT INTO recon_runs (run_id, run_date, banks, accounts, inputs, tolerance, status, "
            "expected_count, entries_count, matched_count, breaks_count, break_counts, totals, "
            "digest, started_at, finished_at, duration_ms, code_version, supersedes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._run_day = p("INSERT INTO recon_runs_by_day (run_date, started_at, run_id, scope, "
                          "status, breaks) VALUES (?, ?, ?, ?, ?, ?)")
        self._runs_of_day = p("SELECT run_id, started_at, scope, status, breaks "
                              "FROM recon_runs_by_day WHERE run_date = ?")
        self._run_get = p("SELECT * FROM recon_runs WHERE run_id = ?")
        self._breaks_get = p("SELECT * FROM recon_breaks WHERE run_date = ? AND bank_bic = ? "
                             "AND run_id = ?")
        self._matched_get = p("SELECT body FROM recon_matched WHERE run_date = ? AND bank_bic = ? "
                              "AND run_id = ?")
        self._summary_get = p("SELECT * FROM recon_daily_summary WHERE run_date = ?")
        self._merchants_get = p("SELECT * FROM merchant_settlement_report WHERE run_date = ? "
                                "AND bank_bic = ?")

    # -- inputs ------------------------------------------------------------------------

    def banks(self, day: date) -> list[str]:
        return self._expected.banks(day)

    def expected(self, bank: str, day: date) -> Iterator[ExpectedChunk]:
        return self._expected.day(bank, day)

    def statements_of(self, day: date) -> list[tuple[str, str, str]]:
        """(bank, account, statement_id) of the statements received for `day`."""
        rows = execute(self._s, self._stmt_days, (day,), "list statements of day")
        return sorted((r.bank_bic, r.account_id, r.statement_id) for r in rows)

    def statement_body(self, bank: str, account: str, day: date, statement_id: str) -> bytes:
        row = execute(self._s, self._stmt_body, (bank, account, day, statement_id),
                      "read statement").one()
        if row is None:
            raise LookupError(f"statement {statement_id} of {bank} {account} {day} is gone")
        return bytes(row.body)

    def previous_statement(self, bank: str, account: str, before: date) -> bytes | None:
        row = execute(self._s, self._stmt_prev, (bank, account, before),
                      "read previous statement").one()
        return None if row is None else bytes(row.body)

    def payout_statuses(self, end_to_end_ids: Sequence[str]) -> dict[str, str]:
        """Current payout status of our EndToEndIds (attempt-aware: an old attempt's is 'retried')."""
        wanted: list[tuple[str, str, int]] = []
        for e2e in end_to_end_ids:
            parsed = payout_of_end_to_end_id(e2e)
            if parsed is not None:
                wanted.append((e2e, *parsed))
        rows = execute_all(self._s, self._status, [(p,) for _, p, _ in wanted],
                           "read payout statuses", self._concurrency)
        found: dict[str, str] = {}
        for (e2e, _, attempt), result in zip(wanted, rows, strict=True):
            row = result.one()
            if row is None or not row.status:
                continue
            # only a rejected attempt is retried, so a newer attempt means this one was rejected
            found[e2e] = "rejected" if (row.attempt or 1) > attempt else str(row.status)
        return found

    # -- the report --------------------------------------------------------------------

    def save_run(self, run: RunRecord, result: ReconResult,
                 matched: dict[str, list[tuple[int, bytes]]]) -> None:
        d, rid = run.run_date, run.run_id
        breaks = [(d, b.bank_bic, rid, i, b.type.value, b.currency, b.account_id, b.end_to_end_id,
                   b.acct_svcr_ref, b.msg_id, b.statement_id, b.expected_minor, b.booked_minor,
                   b.expected_date, b.booked_date, b.detail[:2000])
                  for i, b in enumerate(result.breaks)]
        execute_all(self._s, self._break, breaks, "save breaks", self._concurrency)
        chunks = [(d, bank, rid, n, count, body) for bank, parts in matched.items()
                  for n, (count, body) in enumerate(parts)]
        execute_all(self._s, self._matched, chunks, "save matched items", 8)
        for bank in run.banks:
            execute(self._s, self._summary_clear, (d, bank), "replace daily summary")
            execute(self._s, self._merchant_clear, (d, bank), "replace merchant report")
        summary = []
        for (bank, ccy), t in sorted(result.totals.items()):
            count = sum(1 for b in result.breaks if b.bank_bic == bank and b.currency == ccy)
            summary.append((d, bank, ccy, rid, t.expected_count, t.expected_minor, t.booked_count,
                            t.booked_minor, t.matched_count, t.matched_minor, count))
        execute_all(self._s, self._summary, summary, "save daily summary")
        merchants = [(d, bank, merchant, ccy, rid, m.payouts, m.gross_minor, m.fees_minor,
                      m.net_paid_minor, m.returned_minor)
                     for (bank, merchant, ccy), m in sorted(result.merchants.items())]
        execute_all(self._s, self._merchant, merchants, "save merchant report", self._concurrency)
        execute(self._s, self._run, (
            rid, d, run.banks, run.accounts, run.inputs, run.tolerance, run.status,
            run.expected_count, run.entries_count, run.matched_count, run.breaks_count,
            run.break_counts, orjson.dumps(run.totals).decode(), run.digest, run.started_at,
            run.finished_at, run.duration_ms, run.code_version, run.supersedes), "save run")
        execute(self._s, self._run_day, (d, run.started_at, rid, ",".join(run.banks), run.status,
                                         run.breaks_count), "index run")

    # -- reading reports ---------------------------------------------------------------

    def runs_of(self, day: date) -> list[dict[str, Any]]:
        """Finished runs of `day`, newest first."""
        rows = execute(self._s, self._runs_of_day, (day,), "list runs")
        return [r._asdict() for r in rows]

    def run(self, run_id: str) -> RunRecord | None:
        row = execute(self._s, self._run_get, (run_id,), "read run").one()
        if row is None:
            return None
        record = RunRecord(
            run_id=row.run_id, run_date=row.run_date.date(), banks=list(row.banks or []),
            accounts=list(row.accounts or []), inputs=list(row.inputs or []),
            tolerance=row.tolerance or "", status=row.status, expected_count=row.expected_count,
            entries_count=row.entries_count, matched_count=row.matched_count,
            break_counts=dict(row.break_counts or {}), totals=orjson.loads(row.totals or "{}"),
            digest=row.digest, started_at=row.started_at, finished_at=row.finished_at,
            code_version=row.code_version or "", supersedes=row.supersedes or "")
        record.breaks = list(self._breaks(record))
        return record

    def _breaks(self, run: RunRecord) -> Iterator[Break]:
        for bank in run.banks:
            for r in execute(self._s, self._breaks_get, (run.run_date, bank, run.run_id),
                             "read breaks"):
                yield Break(
                    type=BreakType(r.type), bank_bic=r.bank_bic, currency=r.currency or "",
                    account_id=r.account_id or "", end_to_end_id=r.end_to_end_id or "",
                    acct_svcr_ref=r.acct_svcr_ref or "", msg_id=r.msg_id or "",
                    statement_id=r.statement_id or "", expected_minor=r.expected_minor,
                    booked_minor=r.booked_minor,
                    expected_date=r.expected_date.date() if r.expected_date else None,
                    booked_date=r.booked_date.date() if r.booked_date else None,
                    detail=r.detail or "")

    def matched_lines(self, run: RunRecord) -> Iterator[str]:
        for bank in run.banks:
            for r in execute(self._s, self._matched_get, (run.run_date, bank, run.run_id),
                             "read matched items"):
                yield from unpack_lines(bytes(r.body))

    def daily_summary(self, day: date) -> list[dict[str, Any]]:
        return [r._asdict() for r in execute(self._s, self._summary_get, (day,), "read summary")]

    def merchant_report(self, day: date, banks: Sequence[str]) -> list[dict[str, Any]]:
        return [r._asdict() for bank in banks
                for r in execute(self._s, self._merchants_get, (day, bank), "read merchant report")]
