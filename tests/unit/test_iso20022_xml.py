"""The hardened parser refuses hostile input without resolving anything; readers use local names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import etree  # type: ignore[import-untyped]  # lxml-stubs is not installed

from settlement.iso20022 import xml
from settlement.iso20022.errors import MessageRefusedError
from settlement.iso20022.xml import (
    find_local,
    findall_local,
    message_type,
    parse_secure,
    require_text_local,
    text_local,
)

SECRET = "S3CRET-MARKER-7f1c"


class _RecordingResolver(etree.Resolver):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:
        self.calls.append(system_url)
        return self.resolve_string(SECRET, context)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> _RecordingResolver:
    """Every parser parse_secure builds reports to this resolver if libxml2 ever tries to load."""
    recorder = _RecordingResolver()
    original = xml._parser

    def recording_parser() -> Any:
        parser = original()
        parser.resolvers.add(recorder)
        return parser

    monkeypatch.setattr(xml, "_parser", recording_parser)
    return recorder


def _hostile(secret_file: Path) -> dict[str, str]:
    return {
        "xxe_file": f'<!DOCTYPE d [<!ENTITY x SYSTEM "file://{secret_file}">]><d>&x;</d>',
        "xxe_passwd": '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>',
        "billion_laughs": (
            '<!DOCTYPE d [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY e "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
            "<d>&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;</d>"
        ),
        "external_dtd": '<!DOCTYPE d SYSTEM "http://127.0.0.1:9/evil.dtd"><d/>',
        "external_dtd_public": '<!DOCTYPE d PUBLIC "-//X//Y" "http://127.0.0.1:9/evil.dtd"><d/>',
        "parameter_entity": (
            f'<!DOCTYPE d [<!ENTITY % p SYSTEM "file://{secret_file}"> %p;]><d>&x;</d>'
        ),
        "parameter_entity_remote": '<!DOCTYPE d [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]><d/>',
        "harmless_doctype": "<!DOCTYPE d><d/>",
    }


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
@pytest.mark.parametrize(
    "case", ["xxe_file", "xxe_passwd", "billion_laughs", "external_dtd", "external_dtd_public",
             "parameter_entity", "parameter_entity_remote", "harmless_doctype"])
def test_any_dtd_is_refused_and_nothing_is_resolved(
    case: str, encoding: str, secret_file: Path, resolver: _RecordingResolver,
) -> None:
    # utf-16 hides the DOCTYPE from the byte pre-scan, so it exercises the post-parse check.
    text = f'<?xml version="1.0" encoding="{encoding.upper()}"?>' + _hostile(secret_file)[case]
    with pytest.raises(MessageRefusedError) as info:
        parse_secure(text.encode(encoding))
    assert info.value.code == "dtd_forbidden"
    assert resolver.calls == []
    assert SECRET not in str(info.value)
    assert "root:" not in str(info.value)


def test_an_undeclared_entity_is_malformed_not_resolved(resolver: _RecordingResolver) -> None:
    with pytest.raises(MessageRefusedError) as info:
        parse_secure(b"<d>&x;</d>")
    assert info.value.code == "malformed"
    assert resolver.calls == []


@pytest.mark.parametrize("data", [
    b'<?xml version="1.0"?><Document><GrpHdr><MsgId>1</MsgId>',
    b"<a><b></a>",
    b"",
    b"   ",
    b"\xff\xfe\x00\x01garbage\x80\x81",
    b'<?xml version="1.0" encoding="UTF-8"?><a>\xe9\xff</a>',
    b"not xml at all",
    b"<a>x</a><b/>",
])
def test_truncated_or_garbage_input_is_malformed(data: bytes) -> None:
    with pytest.raises(MessageRefusedError) as info:
        parse_secure(data)
    assert info.value.code == "malformed"


def test_oversized_input_is_refused_before_parsing() -> None:
    # Not even well-formed: the size check must win, proving libxml2 never saw it.
    with pytest.raises(MessageRefusedError) as info:
        parse_secure(b"<" * 1025, max_bytes=1024)
    assert info.value.code == "oversized"
    assert parse_secure(b"<a/>" + b" " * 1020, max_bytes=1024).tag == "a"


def test_the_default_limit_is_ten_mebibytes() -> None:
    with pytest.raises(MessageRefusedError) as info:
        parse_secure(b"<a>" + b"x" * (10 * 1024 * 1024) + b"</a>")
    assert info.value.code == "oversized"


def test_str_input_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        parse_secure("<a/>")  # type: ignore[arg-type]


DOC = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.002.001.12">
  <FIToFIPmtStsRpt>
    <GrpHdr><MsgId> M 1 </MsgId><Empty/></GrpHdr>
    <TxInfAndSts><OrgnlEndToEndId>E1</OrgnlEndToEndId></TxInfAndSts>
    <TxInfAndSts><OrgnlEndToEndId>E2</OrgnlEndToEndId></TxInfAndSts>
  </FIToFIPmtStsRpt>
</Document>"""


def test_readers_use_local_names_whatever_the_namespace_version() -> None:
    root = parse_secure(DOC)
    assert message_type(root) == "pacs.002.001.12"
    body = find_local(root, "FIToFIPmtStsRpt")
    assert body is not None
    assert text_local(body, "GrpHdr/MsgId") == " M 1 "
    assert text_local(body, "GrpHdr/Empty") == ""
    assert text_local(body, "GrpHdr/Absent") is None
    assert [e.text for e in findall_local(body, "TxInfAndSts/OrgnlEndToEndId")] == ["E1", "E2"]
    assert find_local(root, "Nope/GrpHdr") is None
    with pytest.raises(MessageRefusedError) as info:
        require_text_local(body, "GrpHdr/Empty")
    assert info.value.code == "missing_element"


@pytest.mark.parametrize("data", [
    b"<Document/>",
    b'<Document xmlns="urn:example:other"/>',
    b'<AppHdr xmlns="urn:iso:std:iso:20022:tech:xsd:head.001.001.02"/>',
    b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:../../x"/>',
])
def test_message_type_refuses_what_is_not_an_iso_document(data: bytes) -> None:
    with pytest.raises(MessageRefusedError) as info:
        message_type(parse_secure(data))
    assert info.value.code == "wrong_namespace"
