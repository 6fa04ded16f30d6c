"""One reconciliation run: gather a day's inputs, match them, write the report.

Inputs: the expected bookings of the day (Cassandra), and the day's camt.053 statements,
either those received through the gateway (Cassandra) or files given by the operator.
Every statement is parsed streaming with the hardened reader, and all of them before
anything is written: a refused input fails the run with nothing stored.
"""

from __future__ import annotations

import importlib.metadata
import io
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import structlog

from settlement.domain.errors import SettlementError
from settlement.domain.reconciliation import (
    BookedLine,
    ReconResult,
    RunRecord,
    StatementInfo,
    Tolerance,
    pack_lines,
)
from settlement.iso20022.camt053 import StatementHeader, iter_camt053
from settlement.iso20022.camt054 import parse_entry_line
from settlement.iso20022.errors import MessageRefusedError
from settlement.recon.engine import Reconciler
from settlement.recon.parse import PARALLEL_FROM_BYTES, ChildParser
from settlement.service.ports import ReconStore

log = structlog.get_logger(__name__)
CHUNK_LINES = 10_000
OTHER_DAYS_KEPT = 200_000  # entries of neighbouring days held for the timing pass
Progress = Callable[[int, int], None]  # (bytes read, bytes in all)


class ReconInputError(SettlementError):
    """A statement we refuse (malformed, truncated, DOCTYPE, wrong message, unreadable)."""


@dataclass(frozen=True)
class ReconRequest:
    day: date
    tolerance: Tolerance = field(default_factory=Tolerance)
    banks: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()
    dry_run: bool = False
    max_statement_bytes: int = 4 << 30


@dataclass
class RunOutcome:
    record: RunRecord
    result: ReconResult


def same_bic(a: str, b: str) -> bool:
    """BIC8 and BIC11 with branch XXX name the same bank."""
    return a[:8] == b[:8] and (a[8:] or "XXX") == (b[8:] or "XXX")


@dataclass
class _Source:
    """One statement document: a file, or a body stored by the inbound stage."""

    label: str
    size: int
    open: Callable[[], BinaryIO]
    bank: str | None = None  # known for stored statements
    path: Path | None = None  # a file: large ones are parsed by a second process


class _Counting:
    """A read()-only stream that reports progress in bytes."""

    def __init__(self, raw: BinaryIO, report: Callable[[int], None]) -> None:
        self._raw, self._report = raw, report

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        self._report(len(chunk))
        return chunk


@dataclass
class _Seen:
    info: StatementInfo
    booked_sum: int = 0  # every BOOK entry, signed (for the balance check)
    covers: bool = False  # the statement's period includes the run's day
    source: _Source | None = None


@dataclass
class _Matched:
    chunks: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)
    pending: dict[str, list[str]] = field(default_factory=dict)

    def add(self, bank: str, line: str) -> None:
        lines = self.pending.setdefault(bank, [])
        lines.append(line)
        if len(lines) >= CHUNK_LINES:
            self._flush(bank)

    def _flush(self, bank: str) -> None:
        lines = self.pending.pop(bank, [])
        if lines:
            self.chunks.setdefault(bank, []).append((len(lines), pack_lines(lines)))

    def close(self) -> dict[str, list[tuple[int, bytes]]]:
        for bank in list(self.pending):
            self._flush(bank)
        return self.chunks


class Reconciliation:
    def __init__(self, store: ReconStore, request: ReconRequest,
                 progress: Progress | None = None) -> None:
        self._store, self._req = store, request
        self._progress = progress
        self._matched = _Matched()
        self._rec = Reconciler(request.day, request.tolerance, self._matched.add)
        self._read = 0
        self._total = 0
        self.parser_rss_kb: list[int] = []  # peak RSS of the parser processes, if any
        self._prestarted: dict[str, ChildParser] = {}
        # entries of the read statements booked on other days: they may be ours, late
        self._others: list[tuple[StatementInfo, BookedLine]] | None = []

    # -- inputs ------------------------------------------------------------------------

    def _sources(self, days: list[date]) -> list[_Source]:
        if self._req.files:
            out = []
            for path in self._req.files:
                try:
                    size = path.stat().st_size
                except OSError as exc:
                    raise ReconInputError(f"{path}: cannot read: {exc.strerror}") from exc
                out.append(_Source(str(path), size, lambda p=path: p.open("rb"), path=path))  # type: ignore[misc]
            return out
        sources = []
        for day in days:
            for bank, account, statement_id in self._store.statements_of(day):
                if not self._in_scope(bank, account):
                    continue
                body = self._store.statement_body(bank, account, day, statement_id)
                sources.append(_Source(f"{bank}/{account}/{statement_id}", len(body),
                                       _opener(body), bank))
        return sources

    def _in_scope(self, bank: str | None, account: str | None) -> bool:
        if bank is not None and self._req.banks and not any(same_bic(bank, b) for b in self._req.banks):
            return False
        return not (account is not None and self._req.accounts and account not in self._req.accounts)

    def _stream(self, source: _Source, *, parallel: bool = True,
                ) -> Generator[StatementHeader | BookedLine, None, None]:
        def advance(n: int) -> None:
            self._read += n
            if self._progress is not None:
                self._progress(self._read, self._total)

        seen = [0]

        def advance_to(done: int) -> None:
            advance(done - seen[0])
            seen[0] = done

        try:
            if parallel and source.path is not None and source.size >= PARALLEL_FROM_BYTES:
                parser = (self._prestarted.pop(source.label, None)
                          or ChildParser(source.path, self._req.max_statement_bytes))
                yield from parser.items(advance_to, self.parser_rss_kb)
                return
            with source.open() as raw:
                yield from iter_camt053(_Counting(raw, advance), max_bytes=self._req.max_statement_bytes,  # type: ignore[arg-type]
                                        entry=parse_entry_line)
        except MessageRefusedError as exc:
            raise ReconInputError(f"{source.label}: refused ({exc.code}): {exc.detail}") from exc
        except OSError as exc:
            raise ReconInputError(f"{source.label}: cannot read: {exc}") from exc

    def _heads(self, sources: list[_Source]) -> list[StatementInfo]:
        """The first statement header of each source (read, then the stream is dropped)."""
        heads = []
        for source in sources:
            first = self._first_header(source)
            if first is None:  # else it would count as a day without bookings,
                raise ReconInputError(  # and a run on it could come out clean
                    f"{source.label}: refused (missing_element): BkToCstmrStmt/Stmt is missing")
            heads.append(first)
        self._read = 0
        return heads

    def _first_header(self, source: _Source) -> StatementInfo | None:
        """The source's first statement header, read in-process; the rest is not parsed."""
        stream = self._stream(source, parallel=False)
        try:
            first = next(stream, None)
        finally:
            stream.close()
        return self._info(first, source) if isinstance(first, StatementHeader) else None

    def _info(self, h: StatementHeader, source: _Source) -> StatementInfo:
        bank = source.bank or h.servicer_bic
        if bank is None:
            if len(self._req.banks) != 1:
                raise ReconInputError(f"{source.label}: statement {h.statement_id} names no "
                                      "servicing bank (Acct/Svcr); pass --bank")
            bank = self._req.banks[0]
        return StatementInfo(bank, h.account_id, h.account_currency, h.statement_id, h.msg_id,
                             h.electronic_seq_nb, h.from_date, h.to_date, h.opening_minor,
                             h.closing_minor, source.label)

    # -- the run -----------------------------------------------------------------------

    def run(self) -> RunOutcome:
        try:
            return self._run()
        finally:
            for parser in self._prestarted.values():
                parser.close()

    def _run(self) -> RunOutcome:
        req, rec = self._req, self._rec
        started = datetime.now(UTC)
        window = [req.day + timedelta(days=n) for n in range(-req.tolerance.window_days,
                                                             req.tolerance.window_days + 1)]
        # every statement that may cover the day or book a neighbour's payouts (a weekend's
        # bookings come in Monday's statement)
        sources = self._sources(window if not req.files else [])
        heads = self._heads(sources)
        banks = set(req.banks) or ({h.bank_bic for h in heads} if req.files
                                   else set(self._store.banks(req.day)))
        # the first big file starts parsing in a second process while we read what we expect
        big = [s for s in sources if s.path is not None and s.size >= PARALLEL_FROM_BYTES]
        if big:
            self._prestarted[big[0].label] = ChildParser(big[0].path, req.max_statement_bytes)  # type: ignore[arg-type]
        # --account: only the currencies those accounts are statements of
        currencies = ({(h.bank_bic[:8], h.currency) for h in heads if h.account_id in req.accounts}
                      if req.accounts else None)
        # 1. what we expect on the day
        expected = 0
        for bank in sorted(banks):
            for chunk in self._store.expected(bank, req.day):
                if currencies is None or (bank[:8], chunk.currency) in currencies:
                    rec.expect_chunk(chunk)
                    expected += len(chunk.items)
        log.info("recon.expected_loaded", day=req.day.isoformat(), banks=sorted(banks),
                 bookings=expected)
        # 2. the entries booked on the day, one by one; each statement ending on the day is
        #    checked (balances, sequence) once
        self._total = sum(s.size for s in sources)
        seen = self._pass(sources, primary=True)
        banks |= {s.info.bank_bic for s in seen.values() if s.covers}
        for s in sorted(seen.values(), key=lambda s: (s.info.bank_bic, s.info.account_id,
                                                      s.info.to_date, s.info.statement_id)):
            if s.info.to_date == req.day:
                rec.statement(s.info, s.booked_sum, self._previous(s.info, seen))
        self._missing_statements(seen)
        # 3. what is still unexplained may be a booking on another day (timing)
        ours, theirs = rec.wanted_references()
        if ours and self._others is not None:
            for info, line in self._others:
                rec.explain_entry(info, line)
        elif ours:
            self._total += sum(s.size for s in sources)
            self._pass(sources, primary=False)
        self._others = None
        if theirs:
            for day in window:
                if day == req.day:
                    continue
                for bank in sorted(banks):
                    for chunk in self._store.expected(bank, day):
                        for booking in chunk.bookings():
                            if booking.end_to_end_id in theirs:
                                rec.explain_expected(booking)
        # 4. what is left are breaks
        result = rec.finish(self._store.payout_statuses)
        finished = datetime.now(UTC)
        record = RunRecord(
            run_id=f"{req.day:%Y%m%d}-{started:%H%M%S}-{uuid.uuid4().hex[:6]}",
            run_date=req.day, banks=sorted(banks), accounts=list(req.accounts),
            inputs=[f"{s.info.source}#{s.info.statement_id}" for s in seen.values() if s.covers]
            + [str(p) for p in req.files],
            tolerance=(f"amount={req.tolerance.amount_minor} "
                       f"value_date_days={req.tolerance.value_date_days} "
                       f"window_days={req.tolerance.window_days}"),
            status="breaks" if result.breaks else "clean", expected_count=expected,
            entries_count=result.entries, matched_count=result.matched,
            break_counts=result.break_counts(),
            totals={f"{bank}/{ccy}": vars(t) for (bank, ccy), t in sorted(result.totals.items())},
            digest=rec.digest, started_at=started, finished_at=finished,
            code_version=_version())
        record.breaks = result.breaks
        if not req.dry_run:
            self._store.save_run(record, result, self._matched.close())
        log.info("recon.finished", run_id=record.run_id, day=req.day.isoformat(),
                 status=record.status, matched=record.matched_count, breaks=record.breaks_count,
                 duration_ms=record.duration_ms, dry_run=req.dry_run)
        return RunOutcome(record, result)

    def _pass(self, sources: list[_Source], *, primary: bool) -> dict[tuple[str, str, str], _Seen]:
        """Stream `sources`: entries booked on the day feed `entry` (primary pass), the
        others `explain_entry` (the second pass, only when something is unexplained)."""
        seen: dict[tuple[str, str, str], _Seen] = {}
        day = self._req.day
        for source in sources:
            current: _Seen | None = None
            for item in self._stream(source):
                if isinstance(item, StatementHeader):
                    info = self._info(item, source)
                    key = (info.bank_bic, info.account_id, info.statement_id)
                    if key in seen or not self._in_scope(info.bank_bic, info.account_id):
                        if key in seen and primary:
                            log.warning("recon.duplicate_statement", statement_id=info.statement_id,
                                        source=source.label)
                        current = None
                        continue
                    current = seen[key] = _Seen(info, covers=info.from_date <= day <= info.to_date,
                                                source=source)
                elif current is None:
                    continue
                elif primary:
                    if item.booking_date == day:
                        self._rec.entry(current.info, item)
                    elif self._others is not None and item.status == "BOOK":
                        self._others.append((current.info, item))  # for the timing pass
                        if len(self._others) > OTHER_DAYS_KEPT:
                            self._others = None  # too many: that pass re-reads the files
                    if item.status == "BOOK":
                        current.booked_sum += item.signed_minor
                elif item.booking_date != day:
                    self._rec.explain_entry(current.info, item)
        return seen

    def _previous(self, info: StatementInfo, seen: dict[tuple[str, str, str], _Seen]) -> StatementInfo | None:
        """The account's statement before `info`: from the inputs, else from Cassandra."""
        before = [s.info for s in seen.values()
                  if same_bic(s.info.bank_bic, info.bank_bic) and s.info.account_id == info.account_id
                  and s.info.to_date < info.from_date]
        if before:
            return max(before, key=lambda i: (i.to_date, i.electronic_seq_nb or 0))
        body = self._store.previous_statement(info.bank_bic, info.account_id, info.from_date)
        if body is None:
            return None
        return self._first_header(_Source("cassandra (previous statement)", len(body),
                                          _opener(body), info.bank_bic))

    def _missing_statements(self, seen: dict[tuple[str, str, str], _Seen]) -> None:
        """A bank and currency we expected bookings from, with no statement for the day."""
        if self._req.accounts:
            return
        stated = {(s.info.bank_bic[:8], s.info.currency) for s in seen.values() if s.covers}
        for (bank, ccy), totals in sorted(self._rec.result.totals.items()):
            if totals.expected_count and (bank[:8], ccy) not in stated:
                self._rec.missing_statement(bank, ccy, f"no {ccy} statement from {bank} "
                                                       f"for {self._req.day}")


def _opener(body: bytes) -> Callable[[], BinaryIO]:
    return lambda: io.BytesIO(body)


def _version() -> str:
    try:
        return importlib.metadata.version("settlement")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"

