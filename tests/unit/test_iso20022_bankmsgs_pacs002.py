"""pacs.002 status reports: XSD-valid, deterministic, round-trip, neighbouring versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement.domain.bank_messages import StatusReport, TxStatus, TxStatusReport
from settlement.iso20022 import xsd
from settlement.iso20022.errors import MessageBuildError, MessageRefusedError
from settlement.iso20022.pacs002 import MESSAGE, parse_pacs002, render_pacs002
from settlement.iso20022.xml import parse_secure, text_local

UETR = "0f8fad5b-d9cb-469f-a165-70867728950e"
AT = datetime(2024, 5, 1, 10, 0, 2, 123456, tzinfo=UTC)
STATUSES: list[TxStatus] = ["ACSP", "ACCP", "ACSC", "ACTC", "ACWC", "PDNG", "RJCT"]


def make_report(**changes: object) -> StatusReport:
    report = StatusReport(
        msg_id="STS-1", created_at=AT, orgnl_msg_id="M-EUR-1",
        transactions=(
            TxStatusReport(orgnl_end_to_end_id="E1", orgnl_uetr=UETR, orgnl_instr_id="I1", status="ACSC"),
            TxStatusReport(orgnl_end_to_end_id="E2", status="RJCT", reason="AC04",
                           reason_text="Account closed"),
        ),
    )
    return report.model_copy(update=changes)


def test_a_report_renders_valid_and_reads_back_equal() -> None:
    report = make_report(group_status="RJCT", group_reason="FF01")
    data = render_pacs002(report)
    xsd.validate(data, MESSAGE)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = parse_secure(data)
    assert text_local(root, "FIToFIPmtStsRpt/OrgnlGrpInfAndSts/StsRsnInf/Rsn/Cd") == "FF01"
    assert text_local(root, "FIToFIPmtStsRpt/TxInfAndSts/OrgnlUETR") == UETR
    assert parse_pacs002(data, validate_schema=True) == report


def test_rendering_is_deterministic() -> None:
    assert render_pacs002(make_report()) == render_pacs002(make_report())


def test_a_long_reason_text_is_split_over_addtlinf_and_joined_back() -> None:
    text = "insufficient funds " * 20
    tx = TxStatusReport(orgnl_end_to_end_id="E1", status="RJCT", reason="AM04", reason_text=text)
    report = make_report(transactions=(tx,))
    data = render_pacs002(report)
    assert data.count(b"<AddtlInf>") == 4
    assert parse_pacs002(data).transactions[0].reason_text == text


def test_a_reason_longer_than_a_code_goes_to_prtry() -> None:
    tx = TxStatusReport(orgnl_end_to_end_id="E1", status="RJCT", reason="BANK-SPECIFIC-9")
    data = render_pacs002(make_report(transactions=(tx,)))
    assert b"<Prtry>BANK-SPECIFIC-9</Prtry>" in data
    assert parse_pacs002(data).transactions[0].reason == "BANK-SPECIFIC-9"


def test_an_offset_creation_time_is_written_in_utc_and_reads_back_as_the_same_instant() -> None:
    local = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    data = render_pacs002(make_report(created_at=local))
    assert b"<CreDtTm>2024-05-01T10:00:00+00:00</CreDtTm>" in data
    assert parse_pacs002(data).created_at == local


def test_a_naive_creation_time_cannot_be_rendered() -> None:
    with pytest.raises(MessageBuildError):
        render_pacs002(make_report(created_at=datetime(2024, 5, 1)))  # noqa: DTZ001


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    statuses=st.lists(st.sampled_from(STATUSES), min_size=0, max_size=5),
    reason=st.none() | st.sampled_from(["AC01", "AC04", "AC06", "AM04", "BE04", "RC01", "FF01", "DU01"]),
    text=st.none() | st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N", "Zs"]),
                             min_size=1, max_size=250),
    group=st.none() | st.sampled_from(STATUSES),
)
def test_any_report_round_trips(statuses: list[TxStatus], reason: str | None, text: str | None,
                                group: TxStatus | None) -> None:
    txs = tuple(
        TxStatusReport(orgnl_end_to_end_id=f"E{i}", orgnl_uetr=UETR if i % 2 else None, status=status,
                       reason=reason, reason_text=text)
        for i, status in enumerate(statuses)
    )
    report = make_report(transactions=txs, group_status=group, group_reason=reason)
    assert parse_pacs002(render_pacs002(report)) == report


@pytest.mark.parametrize("version", ["pacs.002.001.08", "pacs.002.001.09", "pacs.002.001.11",
                                     "pacs.002.001.12"])
def test_neighbouring_versions_read_the_same(version: str) -> None:
    report = make_report(group_status="ACSC")
    data = render_pacs002(report).replace(MESSAGE.encode(), version.encode(), 1)
    assert parse_pacs002(data) == report


def test_a_group_status_part_leaves_the_transactions_to_speak() -> None:
    data = render_pacs002(make_report(group_status="ACSC")).replace(b">ACSC</GrpSts>", b">PART</GrpSts>")
    parsed = parse_pacs002(data)
    assert parsed.group_status is None
    assert [tx.status for tx in parsed.transactions] == ["ACSC", "RJCT"]


def test_a_transaction_without_txsts_takes_the_group_status() -> None:
    tx = TxStatusReport(orgnl_end_to_end_id="E1", status="RJCT")
    data = render_pacs002(make_report(group_status="RJCT", transactions=(tx,)))
    data = data.replace(b"<TxSts>RJCT</TxSts>", b"")
    assert parse_pacs002(data).transactions[0].status == "RJCT"


@pytest.mark.parametrize(("old", "new", "code"), [
    (b"<TxSts>ACSC</TxSts>", b"<TxSts>RCVD</TxSts>", "unsupported_status"),
    (b"<OrgnlEndToEndId>E1</OrgnlEndToEndId>", b"", "missing_element"),
    (b"<MsgId>STS-1</MsgId>", b"", "missing_element"),
    (b"2024-05-01T10:00:02.123456+00:00", b"yesterday", "bad_value"),
    (b"pacs.002.001.10", b"pacs.004.001.10", "wrong_message"),
])
def test_bad_reports_are_refused_with_a_code(old: bytes, new: bytes, code: str) -> None:
    data = render_pacs002(make_report())
    assert old in data
    with pytest.raises(MessageRefusedError) as info:
        parse_pacs002(data.replace(old, new, 1))
    assert info.value.code == code
