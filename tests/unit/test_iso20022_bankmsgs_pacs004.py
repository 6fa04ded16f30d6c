"""pacs.004 payment returns: XSD-valid, exact amounts, round-trip, several TxInf, old versions."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement.domain.bank_messages import PaymentReturn
from settlement.domain.money import exponent
from settlement.iso20022 import xsd
from settlement.iso20022.errors import MessageBuildError, MessageRefusedError
from settlement.iso20022.pacs004 import MESSAGE, parse_pacs004, parse_pacs004_all, render_pacs004
from settlement.iso20022.xml import parse_secure, text_local

UETR = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
AT = datetime(2024, 5, 3, 9, 30, tzinfo=UTC)


def make_return(**changes: object) -> PaymentReturn:
    ret = PaymentReturn(
        msg_id="RTR-1", created_at=AT, return_id="RT-1", orgnl_msg_id="M-EUR-1",
        orgnl_end_to_end_id="E1", orgnl_uetr=UETR, returned_minor=12345, currency="EUR",
        settlement_date=date(2024, 5, 3), reason="AC04",
    )
    return ret.model_copy(update=changes)


def test_a_return_renders_valid_with_the_mandatory_group_fields() -> None:
    data = render_pacs004(make_return())
    xsd.validate(data, MESSAGE)
    root = parse_secure(data)
    assert text_local(root, "PmtRtr/GrpHdr/NbOfTxs") == "1"
    assert text_local(root, "PmtRtr/GrpHdr/SttlmInf/SttlmMtd") == "CLRG"
    assert text_local(root, "PmtRtr/TxInf/OrgnlGrpInf/OrgnlMsgNmId") == "pacs.008.001.08"
    assert text_local(root, "PmtRtr/TxInf/RtrdIntrBkSttlmAmt") == "123.45"
    assert parse_pacs004(data, validate_schema=True) == make_return()


def test_without_an_original_message_id_there_is_no_orgnlgrpinf() -> None:
    ret = make_return(orgnl_msg_id=None, orgnl_uetr=None)
    data = render_pacs004(ret)
    assert b"OrgnlGrpInf" not in data
    assert parse_pacs004(data) == ret


def test_rendering_is_deterministic() -> None:
    assert render_pacs004(make_return()) == render_pacs004(make_return())


def test_an_unknown_currency_cannot_be_rendered() -> None:
    with pytest.raises(MessageBuildError):
        render_pacs004(make_return(currency="XAU"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(currency=st.sampled_from(["JPY", "EUR", "USD", "BHD", "KWD"]),
       amount=st.integers(min_value=1, max_value=10**18 - 1))
def test_any_amount_round_trips_exactly_with_the_currency_decimals(currency: str, amount: int) -> None:
    data = render_pacs004(make_return(currency=currency, returned_minor=amount))
    text = text_local(parse_secure(data), "PmtRtr/TxInf/RtrdIntrBkSttlmAmt")
    assert text is not None
    assert (len(text.split(".")[1]) if "." in text else 0) == exponent(currency)
    assert parse_pacs004(data) == make_return(currency=currency, returned_minor=amount)


@pytest.mark.parametrize("version", ["pacs.004.001.09", "pacs.004.001.11"])
def test_neighbouring_versions_read_the_same(version: str) -> None:
    data = render_pacs004(make_return()).replace(MESSAGE.encode(), version.encode(), 1)
    assert parse_pacs004(data) == make_return()


def test_several_txinf_read_as_several_returns_with_group_level_fallbacks() -> None:
    data = render_pacs004(make_return(orgnl_msg_id=None))
    tx = re.search(rb"<TxInf>.*</TxInf>", data, re.S)
    assert tx is not None
    second = tx.group(0).replace(b"RT-1", b"RT-2").replace(b"<IntrBkSttlmDt>2024-05-03</IntrBkSttlmDt>", b"")
    data = data.replace(tx.group(0), tx.group(0) + second)
    data = data.replace(b"</GrpHdr>", b"</GrpHdr><OrgnlGrpInf><OrgnlMsgId>M-9</OrgnlMsgId>"
                        b"<OrgnlMsgNmId>pacs.008.001.08</OrgnlMsgNmId></OrgnlGrpInf>", 1)
    data = data.replace(b"<NbOfTxs>1</NbOfTxs>", b"<NbOfTxs>2</NbOfTxs><IntrBkSttlmDt>2024-05-04"
                        b"</IntrBkSttlmDt>")
    xsd.validate(data, MESSAGE)
    first, other = parse_pacs004_all(data)
    assert first == make_return(orgnl_msg_id="M-9")
    assert other == make_return(orgnl_msg_id="M-9", return_id="RT-2", settlement_date=date(2024, 5, 4))


@pytest.mark.parametrize(("old", "new", "code"), [
    (b">123.45<", b">123.455<", "bad_amount"),
    (b">123.45<", b">0.00<", "bad_amount"),
    (b">123.45<", b">1e3<", "bad_amount"),
    (b"<Cd>AC04</Cd>", b"", "missing_element"),
    (b"<RtrId>RT-1</RtrId>", b"", "missing_element"),
    (b"<IntrBkSttlmDt>2024-05-03</IntrBkSttlmDt>", b"", "missing_element"),
    (b"pacs.004.001.10", b"pacs.002.001.10", "wrong_message"),
])
def test_bad_returns_are_refused_with_a_code(old: bytes, new: bytes, code: str) -> None:
    data = render_pacs004(make_return())
    assert old in data
    with pytest.raises(MessageRefusedError) as info:
        parse_pacs004(data.replace(old, new, 1))
    assert info.value.code == code


def test_a_return_without_txinf_is_refused() -> None:
    data = re.sub(rb"<TxInf>.*</TxInf>", b"", render_pacs004(make_return()), flags=re.S)
    with pytest.raises(MessageRefusedError) as info:
        parse_pacs004_all(data)
    assert info.value.code == "missing_element"
