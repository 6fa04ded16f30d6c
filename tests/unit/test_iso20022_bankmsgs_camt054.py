"""camt.054 notifications and the entries camt.053 shares: XSD-valid, round-trip, old versions."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement.domain.bank_messages import Entry, Notification
from settlement.iso20022 import xsd
from settlement.iso20022.camt054 import MESSAGE, parse_camt054, parse_camt054_all, render_camt054
from settlement.iso20022.errors import MessageBuildError, MessageRefusedError
from settlement.iso20022.xml import findall_local, parse_secure, text_local

UETRS = ("0f8fad5b-d9cb-469f-a165-70867728950e", "7c9e6679-7425-40de-944b-e07fc1f90ae7")
AT = datetime(2024, 5, 2, 18, 0, tzinfo=UTC)
DAY = date(2024, 5, 2)


def make_entry(**changes: object) -> Entry:
    entry = Entry(entry_ref="NTRY-1", acct_svcr_ref="BANKREF-1", amount_minor=150000, currency="EUR",
                  credit_debit="DBIT", booking_date=DAY, value_date=DAY, end_to_end_ids=("E1", "E2"),
                  uetrs=UETRS, msg_id="M-EUR-1")
    return entry.model_copy(update=changes)


def make_notification(*entries: Entry, account_id: str = "DE89370400440532013000") -> Notification:
    return Notification(msg_id="NTF-1", created_at=AT, notification_id="N-1", account_id=account_id,
                        account_currency="EUR", entries=entries or (make_entry(),))


ids = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-", min_size=1, max_size=35)
uetrs = st.uuids(version=4).map(str)


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    """Entries the renderer supports (a return_reason only on a return), any amount and exponent."""
    is_return = draw(st.booleans())
    return Entry(
        entry_ref=draw(st.none() | ids), acct_svcr_ref=draw(st.none() | ids),
        amount_minor=draw(st.integers(min_value=0, max_value=10**18 - 1)),
        currency=draw(st.sampled_from(["JPY", "EUR", "BHD"])),
        credit_debit=draw(st.sampled_from(["CRDT", "DBIT"])),
        status=draw(st.sampled_from(["BOOK", "PDNG", "INFO"])),
        booking_date=draw(st.dates(date(2000, 1, 1), date(2100, 1, 1))),
        value_date=draw(st.dates(date(2000, 1, 1), date(2100, 1, 1))),
        end_to_end_ids=tuple(draw(st.lists(ids, max_size=3))),
        uetrs=tuple(draw(st.lists(uetrs, max_size=3))),
        msg_id=draw(st.none() | ids),
        is_return=is_return,
        return_reason=draw(st.none() | st.sampled_from(["AC04", "MD07", "AM05", "BANKSPECIFIC"]))
        if is_return else None,
    )


def test_a_notification_renders_valid_and_reads_back_equal() -> None:
    notification = make_notification(make_entry(), make_entry(end_to_end_ids=(), uetrs=(), entry_ref=None))
    data = render_camt054(notification)
    xsd.validate(data, MESSAGE)
    root = parse_secure(data)
    first = findall_local(root, "BkToCstmrDbtCdtNtfctn/Ntfctn/Ntry")[0]
    assert text_local(first, "BkTxCd/Domn/Cd") == "PMNT"
    assert text_local(first, "BkTxCd/Domn/Fmly/Cd") == "ICDT"
    txs = findall_local(first, "NtryDtls/TxDtls")
    assert [text_local(tx, "Refs/EndToEndId") for tx in txs] == ["E1", "E2"]
    assert [text_local(tx, "Refs/UETR") for tx in txs] == list(UETRS)
    assert text_local(first, "NtryDtls/Btch/MsgId") is None
    second = findall_local(root, "BkToCstmrDbtCdtNtfctn/Ntfctn/Ntry")[1]
    assert text_local(second, "NtryDtls/Btch/MsgId") == "M-EUR-1"
    assert parse_camt054(data, validate_schema=True) == notification


def test_a_return_is_coded_rrtn_with_its_reason() -> None:
    entry = make_entry(credit_debit="CRDT", is_return=True, return_reason="AC04", end_to_end_ids=("E1",),
                       uetrs=())
    data = render_camt054(make_notification(entry))
    ntry = findall_local(parse_secure(data), "BkToCstmrDbtCdtNtfctn/Ntfctn/Ntry")[0]
    assert text_local(ntry, "BkTxCd/Domn/Fmly/Cd") == "ICDT"
    assert text_local(ntry, "BkTxCd/Domn/Fmly/SubFmlyCd") == "RRTN"
    assert text_local(ntry, "NtryDtls/TxDtls/RtrInf/Rsn/Cd") == "AC04"
    assert parse_camt054(data).entries == (entry,)


def test_a_received_credit_is_rcdt_and_an_other_account_is_othr() -> None:
    entry = make_entry(credit_debit="CRDT", end_to_end_ids=(), uetrs=(), msg_id=None)
    data = render_camt054(make_notification(entry, account_id="0012345-678"))
    root = parse_secure(data)
    assert text_local(root, "BkToCstmrDbtCdtNtfctn/Ntfctn/Acct/Id/Othr/Id") == "0012345-678"
    assert text_local(root, "BkToCstmrDbtCdtNtfctn/Ntfctn/Ntry/BkTxCd/Domn/Fmly/Cd") == "RCDT"
    assert b"NtryDtls" not in data
    assert parse_camt054(data) == make_notification(entry, account_id="0012345-678")


def test_a_return_reason_without_is_return_cannot_be_rendered() -> None:
    with pytest.raises(MessageBuildError):
        render_camt054(make_notification(make_entry(return_reason="AC04")))


def test_rendering_is_deterministic() -> None:
    assert render_camt054(make_notification()) == render_camt054(make_notification())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entries(), min_size=1, max_size=4))
def test_any_entries_round_trip(drawn: list[Entry]) -> None:
    notification = make_notification(*drawn)
    assert parse_camt054(render_camt054(notification)) == notification


def _as_v02(data: bytes, version: str) -> bytes:
    """V02-V06 style: Sts as a plain code, no UETR, and another namespace."""
    data = re.sub(rb"<Sts>\s*<Cd>(\w+)</Cd>\s*</Sts>", rb"<Sts>\1</Sts>", data)
    data = re.sub(rb"\s*<UETR>[^<]*</UETR>", b"", data)
    return data.replace(MESSAGE.encode(), version.encode(), 1)


@pytest.mark.parametrize("version", ["camt.054.001.02", "camt.054.001.04", "camt.054.001.06"])
def test_old_versions_with_a_plain_status_read_the_same(version: str) -> None:
    data = _as_v02(render_camt054(make_notification()), version)
    assert b"<Sts>BOOK</Sts>" in data
    assert parse_camt054(data) == make_notification(make_entry(uetrs=()))


@pytest.mark.parametrize("version", ["camt.054.001.07", "camt.054.001.09", "camt.054.001.10"])
def test_newer_versions_read_the_same(version: str) -> None:
    data = render_camt054(make_notification()).replace(MESSAGE.encode(), version.encode(), 1)
    assert parse_camt054(data) == make_notification()


def test_a_datetime_booking_and_a_missing_value_date_are_read() -> None:
    data = render_camt054(make_notification(make_entry(value_date=date(2024, 5, 3))))
    data = data.replace(b"<BookgDt>\n          <Dt>2024-05-02</Dt>",
                        b"<BookgDt>\n          <DtTm>2024-05-02T23:30:00+02:00</DtTm>")
    data = re.sub(rb"<ValDt>.*?</ValDt>", b"", data, flags=re.S)
    xsd.validate(data, MESSAGE)
    entry = parse_camt054(data).entries[0]
    assert (entry.booking_date, entry.value_date) == (DAY, DAY)


def test_several_notifications_are_all_read() -> None:
    data = render_camt054(make_notification())
    ntfctn = re.search(rb"<Ntfctn>.*</Ntfctn>", data, re.S)
    assert ntfctn is not None
    data = data.replace(ntfctn.group(0), ntfctn.group(0) + ntfctn.group(0).replace(b"N-1", b"N-2"))
    assert [n.notification_id for n in parse_camt054_all(data)] == ["N-1", "N-2"]


@pytest.mark.parametrize(("old", "new", "code"), [
    (b">1500.00<", b">1500.001<", "bad_amount"),
    (b">1500.00<", b">-1500.00<", "bad_amount"),
    (b' Ccy="EUR">1500.00<', b">1500.00<", "missing_element"),
    (b"<CdtDbtInd>DBIT</CdtDbtInd>", b"", "missing_element"),
    (b"<CdtDbtInd>DBIT</CdtDbtInd>", b"<CdtDbtInd>BOTH</CdtDbtInd>", "bad_value"),
    (b"<Cd>BOOK</Cd>", b"<Cd>FUTR</Cd>", "bad_value"),
    (b"<IBAN>DE89370400440532013000</IBAN>", b"", "missing_element"),
    (b"camt.054.001.08", b"camt.053.001.08", "wrong_message"),
])
def test_bad_notifications_are_refused_with_a_code(old: bytes, new: bytes, code: str) -> None:
    data = render_camt054(make_notification())
    assert old in data
    with pytest.raises(MessageRefusedError) as info:
        parse_camt054(data.replace(old, new, 1))
    assert info.value.code == code
