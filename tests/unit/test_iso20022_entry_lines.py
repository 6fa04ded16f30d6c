"""The fast entry reader reconciliation streams with (`parse_entry_line`) reads every entry
exactly as the full reader (`parse_entry`) does: drawn entries, old versions, DtTm dates."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement.domain.bank_messages import Entry
from settlement.domain.reconciliation import BookedLine
from settlement.iso20022.camt053 import iter_camt053, render_camt053
from settlement.iso20022.camt054 import parse_entry_line
from settlement.iso20022.errors import MessageRefusedError
from tests.unit.test_iso20022_bankmsgs_camt053 import STATEMENT, _as_v02, make_statement
from tests.unit.test_iso20022_bankmsgs_camt054 import entries


def _slim(e: Entry) -> BookedLine:
    return BookedLine(e.acct_svcr_ref, e.amount_minor, e.currency, e.credit_debit, e.status,
                      e.booking_date, e.value_date, e.end_to_end_ids, e.uetrs, e.msg_id, e.is_return)


def _both(data: bytes) -> tuple[list[object], list[object]]:
    full = [x for x in iter_camt053(data, max_bytes=1 << 24) if isinstance(x, Entry)]
    fast = [x for x in iter_camt053(data, max_bytes=1 << 24, entry=parse_entry_line)
            if isinstance(x, BookedLine)]
    return [_slim(e) for e in full], fast


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=st.lists(entries(), min_size=1, max_size=5))
def test_any_entry_reads_the_same_both_ways(drawn: list[Entry]) -> None:
    full, fast = _both(render_camt053(make_statement(*drawn)))
    assert fast == full == [_slim(e) for e in drawn]


def test_version_02_and_date_times_read_the_same_both_ways() -> None:
    data = _as_v02(render_camt053(STATEMENT))
    data = re.sub(rb"<ValDt>\s*<Dt>([0-9-]+)</Dt>", rb"<ValDt><DtTm>\1T10:00:00+02:00</DtTm>", data)
    full, fast = _both(data)
    assert fast == full and len(fast) == 2


@pytest.mark.parametrize(("old", "new", "code"), [
    (b"<CdtDbtInd>DBIT</CdtDbtInd>", b"<CdtDbtInd>DEBIT</CdtDbtInd>", "bad_value"),
    (b"<Cd>BOOK</Cd>", b"<Cd>DONE</Cd>", "bad_value"),
    (b'Ccy="EUR">', b'Ccy="EUR">0.001', "bad_amount"),
    (b'Ccy="EUR">1500.00', b'Ccy="EUR">12345678901234567.00', "bad_amount"),  # 19 digits
    (b"<EndToEndId>E1<", b"<EndToEndId>" + b"E" * 3000 + b"<", "bad_value"),
    (b"<AcctSvcrRef>BANKREF-1<", b"<AcctSvcrRef>" + b"R" * 3000 + b"<", "bad_value"),
])
def test_broken_entries_are_refused_both_ways(old: bytes, new: bytes, code: str) -> None:
    data = render_camt053(STATEMENT).replace(old, new, 1)
    assert data != render_camt053(STATEMENT)
    for reader in ({}, {"entry": parse_entry_line}):
        with pytest.raises(MessageRefusedError) as info:
            list(iter_camt053(data, max_bytes=1 << 24, **reader))  # type: ignore[arg-type]
        assert info.value.code == code
