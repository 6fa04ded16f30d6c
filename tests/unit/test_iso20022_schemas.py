"""The shipped XSDs are the official files, and the validator finds and caches them."""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from settlement.iso20022 import xsd
from settlement.iso20022.errors import MessageRefusedError, SchemaNotFoundError, SchemaValidationError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "schemas" / "iso20022"
OFFICIAL = REPO.parent / "shared" / "iso20022"
MESSAGES = [
    "camt.029.001.10", "camt.053.001.08", "camt.054.001.08", "camt.056.001.09",
    "pacs.002.001.10", "pacs.004.001.10", "pacs.008.001.08",
]
PACS002 = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.002.001.10">\n'
    b"  <FIToFIPmtStsRpt>\n"
    b"    <GrpHdr><MsgId>STS1</MsgId><CreDtTm>2024-05-01T10:00:00+00:00</CreDtTm></GrpHdr>\n"
    b"  </FIToFIPmtStsRpt>\n"
    b"</Document>\n"
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def restore_schema_dir() -> Iterator[None]:
    original = xsd.schema_dir()
    yield
    xsd.set_schema_dir(original)


@pytest.mark.skipif(not OFFICIAL.is_dir(), reason="no ../shared/iso20022 next to the repository")
@pytest.mark.parametrize("name", [*(f"{m}.xsd" for m in MESSAGES), "README.md"])
def test_shipped_schema_files_are_byte_identical_to_the_official_ones(name: str) -> None:
    assert _sha256(SHIPPED / name) == _sha256(OFFICIAL / name)


def test_every_message_schema_is_shipped_and_compiles() -> None:
    assert sorted(p.stem for p in SHIPPED.glob("*.xsd")) == MESSAGES
    for message in MESSAGES:
        compiled, _ = xsd._schema(message)
        assert compiled is xsd._schema(message)[0]  # compiled once, then cached


def test_the_schema_dir_is_found_by_walking_up_from_the_package() -> None:
    assert xsd.schema_dir() == SHIPPED.resolve()


def test_a_valid_document_passes_validation() -> None:
    xsd.validate(PACS002, "pacs.002.001.10")


def test_an_invalid_document_is_refused_with_line_numbers() -> None:
    bad = PACS002.replace(b"<MsgId>STS1</MsgId>", b"<MsgId>" + b"X" * 36 + b"</MsgId>")
    with pytest.raises(SchemaValidationError) as info:
        xsd.validate(bad, "pacs.002.001.10")
    assert info.value.code == "schema_invalid"
    assert info.value.issues[0].line == 4
    assert "line 4" in info.value.detail


def test_a_document_of_another_message_is_refused_as_wrong_namespace() -> None:
    with pytest.raises(MessageRefusedError) as info:
        xsd.validate(PACS002, "pacs.008.001.08")
    assert info.value.code == "wrong_namespace"
    assert not isinstance(info.value, SchemaValidationError)


def test_a_non_iso_root_is_refused_as_wrong_namespace() -> None:
    with pytest.raises(MessageRefusedError) as info:
        xsd.validate(b"<Document><x/></Document>", "pacs.002.001.10")
    assert info.value.code == "wrong_namespace"


def test_an_unknown_message_has_no_schema() -> None:
    doc = PACS002.replace(b"pacs.002.001.10", b"pacs.002.001.99")
    with pytest.raises(SchemaNotFoundError):
        xsd.validate(doc, "pacs.002.001.99")


@pytest.mark.parametrize("message", ["../../etc/passwd", "pacs.002", "PACS.002.001.10", ""])
def test_a_message_name_that_is_not_an_iso_identifier_is_rejected(message: str) -> None:
    with pytest.raises(ValueError, match="not an ISO 20022 message identifier"):
        xsd.validate(PACS002, message)


@pytest.mark.usefixtures("restore_schema_dir")
def test_set_schema_dir_overrides_discovery(tmp_path: Path) -> None:
    shutil.copy(SHIPPED / "pacs.002.001.10.xsd", tmp_path)
    xsd.set_schema_dir(tmp_path)
    assert xsd.schema_dir() == tmp_path.resolve()
    xsd.validate(PACS002, "pacs.002.001.10")
    with pytest.raises(SchemaNotFoundError):
        xsd._schema("pacs.008.001.08")


@pytest.mark.usefixtures("restore_schema_dir")
def test_set_schema_dir_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(SchemaNotFoundError):
        xsd.set_schema_dir(tmp_path / "absent")


def test_concurrent_validations_do_not_mix_their_errors() -> None:
    bad = PACS002.replace(b"2024-05-01T10:00:00+00:00", b"yesterday")
    outcomes: list[tuple[bool, bool]] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        doc = bad if i % 2 else PACS002
        for _ in range(20):
            try:
                xsd.validate(doc, "pacs.002.001.10")
                refused = False
            except SchemaValidationError as exc:
                refused = all("CreDtTm" in issue.message for issue in exc.issues)
                assert refused
            with lock:
                outcomes.append((bool(i % 2), refused))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 160
    assert all(is_bad == refused for is_bad, refused in outcomes)
