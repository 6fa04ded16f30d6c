"""Every bank-message parser refuses hostile and foreign input with the same codes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from settlement.iso20022 import render_pacs008
from settlement.iso20022.camt053 import parse_camt053, render_camt053
from settlement.iso20022.camt054 import parse_camt054, render_camt054
from settlement.iso20022.errors import MessageRefusedError
from settlement.iso20022.pacs002 import parse_pacs002, render_pacs002
from settlement.iso20022.pacs004 import parse_pacs004, render_pacs004
from tests.unit.test_iso20022_bankmsgs_camt053 import STATEMENT
from tests.unit.test_iso20022_bankmsgs_camt054 import make_notification
from tests.unit.test_iso20022_bankmsgs_pacs002 import make_report
from tests.unit.test_iso20022_bankmsgs_pacs004 import make_return
from tests.unit.test_iso20022_pacs008 import DEBTOR, make_batch

Parser = Callable[[bytes], object]
SAMPLES: dict[str, tuple[Parser, bytes]] = {
    "pacs.002": (parse_pacs002, render_pacs002(make_report())),
    "pacs.004": (parse_pacs004, render_pacs004(make_return())),
    "camt.054": (parse_camt054, render_camt054(make_notification())),
    "camt.053": (parse_camt053, render_camt053(STATEMENT)),
}
FAMILIES = sorted(SAMPLES)
XXE = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
BOMB = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;">]>')


def _refused(parser: Parser, data: bytes) -> str:
    with pytest.raises(MessageRefusedError) as info:
        parser(data)
    return info.value.code


@pytest.mark.parametrize("family", FAMILIES)
def test_an_external_entity_is_refused(family: str) -> None:
    parser, data = SAMPLES[family]
    hostile = XXE + data.split(b"?>", 1)[1].replace(b">E1<", b">&x;<", 1)
    assert _refused(parser, hostile) == "dtd_forbidden"


@pytest.mark.parametrize("family", FAMILIES)
def test_an_entity_expansion_bomb_is_refused(family: str) -> None:
    parser, data = SAMPLES[family]
    assert _refused(parser, BOMB + data.split(b"?>", 1)[1].replace(b">E1<", b">&c;<", 1)) == "dtd_forbidden"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cut", [0.1, 0.5, 0.95])
def test_a_truncated_document_is_refused(family: str, cut: float) -> None:
    parser, data = SAMPLES[family]
    assert _refused(parser, data[: int(len(data) * cut)]) == "malformed"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("other", FAMILIES)
def test_another_message_is_refused_as_the_wrong_message(family: str, other: str) -> None:
    if family == other:
        return
    parser, _ = SAMPLES[family]
    assert _refused(parser, SAMPLES[other][1]) == "wrong_message"


@pytest.mark.parametrize("family", FAMILIES)
def test_a_pacs008_is_the_wrong_message(family: str) -> None:
    assert _refused(SAMPLES[family][0], render_pacs008(make_batch([100]), DEBTOR)) == "wrong_message"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("data", [b"<Document><x/></Document>", b"<foo/>", b"<a xmlns='urn:x'><Stmt/></a>"])
def test_a_non_iso_document_is_refused(family: str, data: bytes) -> None:
    assert _refused(SAMPLES[family][0], data) == "wrong_namespace"


@pytest.mark.parametrize("family", FAMILIES)
def test_an_id_longer_than_any_iso_text_is_refused(family: str) -> None:
    # 70,000 characters: past Cassandra's 64 KiB key limit, where a MsgId would be stored
    parser, data = SAMPLES[family]
    head, tail = data.split(b"<MsgId>", 1)
    hostile = head + b"<MsgId>" + b"M" * 70_000 + tail[tail.index(b"</MsgId>"):]
    assert _refused(parser, hostile) == "bad_value"


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "pacs.002"])  # pacs.002 has none
def test_an_amount_of_more_than_18_digits_is_refused(family: str) -> None:
    # the XSD's totalDigits; a bigger one would not fit the bigint columns it is stored in
    parser, data = SAMPLES[family]
    head, tail = data.split(b'Ccy="EUR">', 1)
    hostile = head + b'Ccy="EUR">' + b"9" * 40 + tail[tail.index(b"<"):]
    assert _refused(parser, hostile) == "bad_amount"
