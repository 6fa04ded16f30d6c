"""camt.053 statements: XSD-valid, signed balances, round-trip, old versions, streaming reads."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement.domain.bank_messages import Entry, Statement
from settlement.iso20022 import camt053, xsd
from settlement.iso20022.camt053 import (
    MESSAGE,
    StatementHeader,
    iter_camt053,
    iter_camt053_entries,
    parse_camt053,
    parse_camt053_all,
    render_camt053,
)
from settlement.iso20022.errors import MessageRefusedError
from settlement.iso20022.xml import parse_secure, text_local
from tests.unit.test_iso20022_bankmsgs_camt054 import entries, make_entry

AT = datetime(2024, 5, 2, 22, 0, tzinfo=UTC)


def make_statement(*drawn: Entry, **changes: object) -> Statement:
    statement = Statement(
        msg_id="STMT-MSG-1", created_at=AT, statement_id="STMT-2024-05-02", electronic_seq_nb=123,
        account_id="DE89370400440532013000", account_currency="EUR", servicer_bic="MOCKDEFFXXX",
        from_date=date(2024, 5, 2), to_date=date(2024, 5, 2), opening_minor=-2500, closing_minor=97500,
        entries=drawn,
    )
    return statement.model_copy(update=changes)


STATEMENT = make_statement(make_entry(), make_entry(credit_debit="CRDT", is_return=True, return_reason="AC04",
                                                    end_to_end_ids=("E1",), uetrs=(), entry_ref=None))


def test_a_statement_renders_valid_with_signed_balances() -> None:
    data = render_camt053(STATEMENT)
    xsd.validate(data, MESSAGE)
    root = parse_secure(data)
    opening, closing = root.find(".//{*}Bal"), root.findall(".//{*}Bal")[1]
    assert (text_local(opening, "Tp/CdOrPrtry/Cd"), text_local(opening, "Amt")) == ("OPBD", "25.00")
    assert text_local(opening, "CdtDbtInd") == "DBIT"
    assert (text_local(closing, "Tp/CdOrPrtry/Cd"), text_local(closing, "CdtDbtInd")) == ("CLBD", "CRDT")
    assert text_local(root, "BkToCstmrStmt/Stmt/FrToDt/ToDtTm") == "2024-05-02T23:59:59+00:00"
    assert text_local(root, "BkToCstmrStmt/Stmt/Acct/Svcr/FinInstnId/BICFI") == "MOCKDEFFXXX"
    assert parse_camt053(data, validate_schema=True) == STATEMENT


def test_rendering_is_deterministic() -> None:
    assert render_camt053(STATEMENT) == render_camt053(STATEMENT)


def test_an_empty_statement_round_trips_and_streams_its_header() -> None:
    empty = make_statement(electronic_seq_nb=None, servicer_bic=None, account_id="ACC-0001")
    data = render_camt053(empty)
    assert parse_camt053(data) == empty
    (header,) = list(iter_camt053(data, max_bytes=len(data)))
    assert isinstance(header, StatementHeader)
    assert header.statement(()) == empty


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=st.lists(entries(), max_size=4), currency=st.sampled_from(["JPY", "EUR", "BHD"]),
       opening=st.integers(-(10**17), 10**17), closing=st.integers(-(10**17), 10**17))
def test_any_statement_round_trips(drawn: list[Entry], currency: str, opening: int, closing: int) -> None:
    statement = make_statement(*drawn, account_currency=currency, opening_minor=opening,
                               closing_minor=closing)
    assert parse_camt053(render_camt053(statement)) == statement


def _as_v02(data: bytes) -> bytes:
    """camt.053.001.02 style: Sts as a plain code, BIC not BICFI, no UETR."""
    data = re.sub(rb"<Sts>\s*<Cd>(\w+)</Cd>\s*</Sts>", rb"<Sts>\1</Sts>", data)
    data = re.sub(rb"\s*<UETR>[^<]*</UETR>", b"", data).replace(b"BICFI>", b"BIC>")
    return data.replace(MESSAGE.encode(), b"camt.053.001.02", 1)


def test_version_02_reads_the_same() -> None:
    data = _as_v02(render_camt053(STATEMENT))
    assert b"<BIC>MOCKDEFFXXX</BIC>" in data
    expected = STATEMENT.model_copy(update={"entries": tuple(e.model_copy(update={"uetrs": ()})
                                                             for e in STATEMENT.entries)})
    assert parse_camt053(data) == expected


@pytest.mark.parametrize("version", ["camt.053.001.04", "camt.053.001.09", "camt.053.001.10"])
def test_neighbouring_versions_read_the_same(version: str) -> None:
    data = render_camt053(STATEMENT).replace(MESSAGE.encode(), version.encode(), 1)
    assert parse_camt053(data) == STATEMENT


def test_without_frtodt_the_period_comes_from_the_balance_dates() -> None:
    data = re.sub(rb"<FrToDt>.*?</FrToDt>", b"", render_camt053(make_statement(from_date=date(2024, 5, 1))),
                  flags=re.S)
    xsd.validate(data, MESSAGE)
    parsed = parse_camt053(data)
    assert (parsed.from_date, parsed.to_date) == (date(2024, 5, 1), date(2024, 5, 2))


def test_several_statements_each_get_their_own_entries() -> None:
    data = render_camt053(STATEMENT)
    stmt = re.search(rb"<Stmt>.*</Stmt>", data, re.S)
    assert stmt is not None
    data = data.replace(stmt.group(0), stmt.group(0) + re.sub(
        rb"<Ntry>.*</Ntry>", b"", stmt.group(0).replace(b"STMT-2024-05-02", b"STMT-B"), flags=re.S))
    first, second = parse_camt053_all(data)
    assert first == STATEMENT
    assert second == STATEMENT.model_copy(update={"statement_id": "STMT-B", "entries": ()})


def _big_statement(count: int) -> bytes:
    data = render_camt053(make_statement(make_entry()))
    ntry = re.search(rb"<Ntry>.*</Ntry>", data, re.S)
    assert ntry is not None
    many = b"".join(ntry.group(0).replace(b">NTRY-1<", b">N%d<" % i) for i in range(count))
    return data.replace(ntry.group(0), many)


def test_a_20000_entry_statement_streams_with_the_tree_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _big_statement(20_000)
    trees: list[Any] = []
    real_open = camt053._open_events

    def spying_open(stream: Any) -> Iterator[tuple[str, Any]]:
        for event in real_open(stream):
            if not trees:
                trees.append(event[1].getroottree())
            yield event

    monkeypatch.setattr(camt053, "_open_events", spying_open)
    sizes: list[int] = []
    refs: list[str | None] = []
    for header, entry in iter_camt053_entries(io.BytesIO(data), max_bytes=len(data)):
        assert header.statement_id == "STMT-2024-05-02"
        refs.append(entry.entry_ref)
        if len(refs) % 2000 == 0:
            sizes.append(sum(1 for _ in trees[0].getroot().iter()))
    assert refs == [f"N{i}" for i in range(20_000)]
    # only what libxml2 parsed ahead of the current entry (one read buffer) stays in the tree
    assert max(sizes) < 2_000, sizes
    assert sizes[-1] <= 2 * sizes[0] + 100, sizes


def test_a_truncated_stream_yields_provisional_entries_then_refuses() -> None:
    data = _big_statement(50)
    seen: list[Entry] = []
    with pytest.raises(MessageRefusedError) as info:
        for _, entry in iter_camt053_entries(data[: len(data) * 2 // 3], max_bytes=len(data)):
            seen.append(entry)
    assert info.value.code == "malformed"
    assert 0 < len(seen) < 50


class _Trickle(io.RawIOBase):
    """A stream that returns at most 3 bytes per read, so markers straddle chunks."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(3, size) if size > 0 else 3)


XXE = b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'


@pytest.mark.parametrize(("mutate", "code"), [
    (lambda d: d.replace(b"?>", b"?>" + XXE, 1).replace(b">STMT-2024-05-02<", b">&x;<"), "dtd_forbidden"),
    (lambda d: d.replace(b"?>", b'?><!DOCTYPE Document SYSTEM "http://evil.example/x.dtd">', 1),
     "dtd_forbidden"),
    (lambda d: d.decode().replace("UTF-8", "UTF-16").replace("?>", "?>" + XXE.decode(), 1)
     .encode("utf-16"), "dtd_forbidden"),
    (lambda d: d[:-40], "malformed"),
    (lambda d: b"", "malformed"),
    (lambda d: b"<Document><Stmt/></Document>", "wrong_namespace"),
    (lambda d: d.replace(MESSAGE.encode(), b"camt.054.001.08", 1), "wrong_message"),
    (lambda d: d.replace(b">25.00<", b">25.005<", 1), "bad_amount"),
    (lambda d: d.replace(b">1500.00<", b">1500.0001<", 1), "bad_amount"),
    (lambda d: d.replace(b'Amt Ccy="EUR">25.00', b'Amt Ccy="USD">25.00', 1), "currency_mismatch"),
    (lambda d: d.replace(b"<Cd>CLBD</Cd>", b"<Cd>ITBD</Cd>", 1), "missing_element"),
    (lambda d: re.sub(rb"<GrpHdr>.*?</GrpHdr>", b"", d, flags=re.S), "missing_element"),
])
@pytest.mark.parametrize("reader", ["parse", "stream", "trickle"])
def test_hostile_or_broken_statements_are_refused(mutate: Any, code: str, reader: str) -> None:
    data = mutate(render_camt053(STATEMENT))
    with pytest.raises(MessageRefusedError) as info:
        if reader == "parse":
            parse_camt053(data)
        else:
            source = _Trickle(data) if reader == "trickle" else io.BytesIO(data)
            list(iter_camt053(source, max_bytes=10**6))  # type: ignore[arg-type]
    assert info.value.code == code


def test_an_oversized_stream_is_refused_before_it_is_read_whole() -> None:
    data = _big_statement(200)
    with pytest.raises(MessageRefusedError) as info:
        list(iter_camt053(io.BytesIO(data), max_bytes=len(data) // 2))
    assert info.value.code == "oversized"
    with pytest.raises(MessageRefusedError) as info:
        parse_camt053(data, max_bytes=len(data) - 1)
    assert info.value.code == "oversized"
