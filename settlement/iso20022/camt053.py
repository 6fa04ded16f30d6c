"""camt.053 (BankToCustomerStatement): one account's end-of-day statement.

`render_camt053` writes camt.053.001.08: Stmt(Id, ElctrncSeqNb?, CreDtTm, FrToDt,
Acct(Id, Ccy, Svcr?), Bal OPBD dated from_date, Bal CLBD dated to_date, Ntry*). FrToDt is
from_date 00:00:00 to to_date 23:59:59, UTC. Balances carry their sign in CdtDbtInd.

Reading (V02-V10, local names) is streaming: `iter_camt053` walks the document with a
hardened lxml iterparse and clears every entry once read, so memory stays flat for a
million entries. It yields a StatementHeader per Stmt, then that statement's entries.
A truncated or malformed document raises only when the parser reaches the fault:
entries already yielded must be treated as provisional until the iterator ends.
`parse_camt053(_all)` collect the same stream into Statement models.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time
from typing import BinaryIO, TypeVar

from lxml import etree

from settlement.domain.bank_messages import Entry, Statement
from settlement.iso20022 import _common as c
from settlement.iso20022 import xsd
from settlement.iso20022.camt054 import parse_entry, render_entry
from settlement.iso20022.errors import MessageRefusedError
from settlement.iso20022.xml import (
    DEFAULT_MAX_BYTES,
    Element,
    iso_namespace,
    local_name,
    parse_secure,
)

E = TypeVar("E")
MESSAGE = "camt.053.001.08"
NS = iso_namespace(MESSAGE)
FAMILY = "camt.053"
_MARKERS = (b"<!DOCTYPE", b"<!ENTITY")
_OVERLAP = max(len(m) for m in _MARKERS) - 1


@dataclass(frozen=True)
class StatementHeader:
    """Everything of a Stmt but its entries (all of it precedes the first Ntry)."""

    msg_id: str
    created_at: datetime
    statement_id: str
    electronic_seq_nb: int | None
    account_id: str
    account_currency: str
    servicer_bic: str | None
    from_date: date
    to_date: date
    opening_minor: int
    closing_minor: int

    def statement(self, entries: tuple[Entry, ...]) -> Statement:
        return c.build(Statement, "Stmt", entries=entries, **asdict(self))


# --- rendering -------------------------------------------------------------------------------


def _balance(parent: Element, code: str, amount_minor: int, currency: str, day: date) -> None:
    bal = c.sub(parent, "Bal")
    c.sub(c.sub(c.sub(bal, "Tp"), "CdOrPrtry"), "Cd", code)
    c.sub(bal, "Amt", c.amount(abs(amount_minor), currency, f"Bal {code}"), Ccy=currency)
    c.sub(bal, "CdtDbtInd", "CRDT" if amount_minor >= 0 else "DBIT")
    c.sub(c.sub(bal, "Dt"), "Dt", day.isoformat())


def render_camt053(statement: Statement) -> bytes:
    """The statement as a camt.053.001.08 Document: UTF-8, deterministic, XSD-valid.

    Raises MessageBuildError (over-long id, unknown currency, naive datetime) and
    SchemaValidationError (data the XSD refuses, e.g. a malformed IBAN or BIC).
    """
    root, msg = c.document(NS, "BkToCstmrStmt")
    hdr = c.sub(msg, "GrpHdr")
    c.sub(hdr, "MsgId", c.ident(statement.msg_id, "MsgId"))
    created = c.iso_datetime(statement.created_at, "created_at")
    c.sub(hdr, "CreDtTm", created)
    stmt = c.sub(msg, "Stmt")
    c.sub(stmt, "Id", c.ident(statement.statement_id, "Stmt/Id"))
    if statement.electronic_seq_nb is not None:
        c.sub(stmt, "ElctrncSeqNb", str(statement.electronic_seq_nb))
    c.sub(stmt, "CreDtTm", created)
    period = c.sub(stmt, "FrToDt")
    c.sub(period, "FrDtTm", datetime.combine(statement.from_date, time(0, 0, 0), UTC).isoformat())
    c.sub(period, "ToDtTm", datetime.combine(statement.to_date, time(23, 59, 59), UTC).isoformat())
    acct = c.sub(stmt, "Acct")
    c.account_id(acct, statement.account_id)
    currency = c.ident(statement.account_currency, "Acct/Ccy", 3)
    c.sub(acct, "Ccy", currency)
    if statement.servicer_bic is not None:
        c.sub(c.sub(c.sub(acct, "Svcr"), "FinInstnId"), "BICFI", c.ident(statement.servicer_bic, "BICFI"))
    _balance(stmt, "OPBD", statement.opening_minor, currency, statement.from_date)
    _balance(stmt, "CLBD", statement.closing_minor, currency, statement.to_date)
    for entry in statement.entries:
        render_entry(stmt, entry)
    data = c.serialize(root)
    xsd.validate(data, MESSAGE)
    return data


# --- reading ---------------------------------------------------------------------------------


def _balances(stmt: Element, currency: str | None) -> dict[str, tuple[int, str, date | None]]:
    found: dict[str, tuple[int, str, date | None]] = {}
    for bal in c.findall(stmt, "Bal"):
        code = c.optional(bal, "Tp/CdOrPrtry/Cd") or c.optional(bal, "Tp/CdOrPrtry/Prtry")
        if code is None or code in found:
            continue
        amount_minor, ccy = c.parse_amount(c.find(bal, "Amt"), f"Bal {code}/Amt")
        if currency is not None and ccy != currency:
            raise MessageRefusedError("currency_mismatch", f"Bal {code} is in {ccy}, account in {currency}")
        sign = {"CRDT": 1, "DBIT": -1}.get(c.required(bal, "CdtDbtInd"))
        if sign is None:
            raise MessageRefusedError("bad_value", f"Bal {code}/CdtDbtInd is not CRDT or DBIT")
        found[code] = (sign * amount_minor, ccy, c.date_choice(bal, "Dt"))
    return found


def _period_end(stmt: Element, path: str, balance: tuple[int, str, date | None]) -> date:
    text = c.optional(stmt, path)
    day = c.parse_datetime(text, path).date() if text is not None else balance[2]
    if day is None:
        raise MessageRefusedError("missing_element", f"Stmt/{path} (or the balance date) is missing")
    return day


def _header(stmt: Element, group: tuple[str, datetime] | None) -> StatementHeader:
    if group is None:
        raise MessageRefusedError("missing_element", "BkToCstmrStmt/GrpHdr must precede Stmt")
    acct = c.find(stmt, "Acct")
    if acct is None:
        raise MessageRefusedError("missing_element", "Stmt/Acct is missing")
    balances = _balances(stmt, c.optional(acct, "Ccy"))
    opening = balances.get("OPBD") or balances.get("PRCD")
    closing = balances.get("CLBD")
    if opening is None or closing is None:
        raise MessageRefusedError("missing_element", "Stmt/Bal OPBD (or PRCD) and CLBD are required")
    fin = "Svcr/FinInstnId"
    return StatementHeader(
        msg_id=group[0], created_at=group[1],
        statement_id=c.required(stmt, "Id"),
        electronic_seq_nb=c.parse_int(c.optional(stmt, "ElctrncSeqNb"), "ElctrncSeqNb"),
        account_id=c.parse_account_id(acct),
        account_currency=opening[1],
        servicer_bic=c.optional(acct, f"{fin}/BICFI") or c.optional(acct, f"{fin}/BIC"),
        from_date=_period_end(stmt, "FrToDt/FrDtTm", opening),
        to_date=_period_end(stmt, "FrToDt/ToDtTm", closing),
        opening_minor=opening[0], closing_minor=closing[0],
    )


class _GuardedStream:
    """A read()-only view of `raw` that refuses oversized input and any DOCTYPE/ENTITY."""

    def __init__(self, raw: BinaryIO, max_bytes: int) -> None:
        self._raw, self._max, self._seen, self._tail = raw, max_bytes, 0, b""

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        self._seen += len(chunk)
        if self._seen > self._max:
            raise MessageRefusedError("oversized", f"more than the limit of {self._max} bytes")
        window = self._tail + chunk
        if any(marker in window for marker in _MARKERS):
            raise MessageRefusedError("dtd_forbidden", "documents with a DOCTYPE are not accepted")
        self._tail = window[-_OVERLAP:]
        return bytes(chunk)


def _open_events(stream: _GuardedStream) -> Iterator[tuple[str, Element]]:
    """The iterparse events of the elements the reader needs (a seam for tests)."""
    context: Iterator[tuple[str, Element]] = etree.iterparse(
        stream, events=("start", "end"), tag=("{*}Document", "{*}GrpHdr", "{*}Stmt", "{*}Ntry"),
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
        huge_tree=False, remove_comments=True, remove_pis=True, recover=False)
    return context


def _events(stream: _GuardedStream) -> Iterator[tuple[str, Element]]:
    """The events, after the root passed `_check_root`; parser errors become "malformed"."""
    context = _open_events(stream)
    checked = False
    while True:
        try:
            event = next(context)
        except StopIteration:
            if not checked:  # no element the filter lets through: judge the root lxml kept
                root = getattr(context, "root", None)
                if root is None:
                    raise MessageRefusedError("malformed", "no root element") from None
                _check_root(root)
            return
        except etree.XMLSyntaxError as exc:
            raise MessageRefusedError("malformed", str(exc).splitlines()[0][:300]) from exc
        if not checked:  # before anything is read: a DOCTYPE or another message is refused
            _check_root(event[1].getroottree().getroot())
            checked = True
        yield event


def _drop_read(el: Element) -> None:
    """Free `el` and everything before it under its parent (already read)."""
    el.clear()
    parent = el.getparent()
    while el.getprevious() is not None:
        del parent[0]


def _check_root(root: Element) -> None:
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise MessageRefusedError("dtd_forbidden", "documents with a DOCTYPE are not accepted")
    c.check_family(root, FAMILY)


def iter_camt053(
    source: BinaryIO | bytes, *, max_bytes: int, entry: Callable[[Element], E] = parse_entry,  # type: ignore[assignment]
) -> Iterator[StatementHeader | E]:
    """Stream a camt.053.001.02-.10: per Stmt, its StatementHeader, then its entries, each
    read by `entry` (default `parse_entry` -> Entry; `parse_entry_line` -> BookedLine).

    Refuses ("oversized", "dtd_forbidden", "malformed", "wrong_message", "missing_element",
    "bad_amount", ...) as the parser gets there; see the module docstring.
    """
    raw = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    group: tuple[str, datetime] | None = None
    header_sent = False
    for event, el in _events(_GuardedStream(raw, max_bytes)):
        name, parent = local_name(el), el.getparent()
        if event == "start":
            if name == "Ntry" and not header_sent and parent is not None and local_name(parent) == "Stmt":
                yield _header(parent, group)
                header_sent = True
        elif name == "GrpHdr" and parent is not None and local_name(parent) == "BkToCstmrStmt":
            at = c.required(el, "CreDtTm")
            group = (c.required(el, "MsgId"), c.parse_datetime(at, "GrpHdr/CreDtTm"))
        elif name == "Ntry" and parent is not None and local_name(parent) == "Stmt":
            read = entry(el)
            _drop_read(el)
            yield read
        elif name == "Stmt":
            if not header_sent:
                yield _header(el, group)
            header_sent = False
            _drop_read(el)


def iter_camt053_entries(
    source: BinaryIO | bytes, *, max_bytes: int,
) -> Iterator[tuple[StatementHeader, Entry]]:
    """Each entry of a streamed camt.053 with its statement's header (see `iter_camt053`)."""
    header: StatementHeader | None = None
    for item in iter_camt053(source, max_bytes=max_bytes):
        if isinstance(item, StatementHeader):
            header = item
        elif header is not None:
            yield header, item


def parse_camt053_all(
    data: bytes, *, validate_schema: bool = False, max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[Statement]:
    """Every Stmt of a camt.053.001.02-.10 as a Statement (created_at from GrpHdr).

    Stmt/FrToDt, when absent, is taken from the OPBD (or PRCD) and CLBD balance dates;
    the account currency is the opening balance's.
    """
    if validate_schema:
        root = parse_secure(data, max_bytes=max_bytes)
        xsd.validate(root, c.check_family(root, FAMILY))
    statements: list[Statement] = []
    header: StatementHeader | None = None
    entries: list[Entry] = []
    for item in iter_camt053(data, max_bytes=max_bytes):
        if isinstance(item, StatementHeader):
            if header is not None:
                statements.append(header.statement(tuple(entries)))
            header, entries = item, []
        else:
            entries.append(item)
    if header is None:
        raise MessageRefusedError("missing_element", "BkToCstmrStmt/Stmt is missing")
    statements.append(header.statement(tuple(entries)))
    return statements


def parse_camt053(
    data: bytes, *, validate_schema: bool = False, max_bytes: int = DEFAULT_MAX_BYTES,
) -> Statement:
    """The first Stmt of a camt.053 (see `parse_camt053_all`)."""
    return parse_camt053_all(data, validate_schema=validate_schema, max_bytes=max_bytes)[0]
