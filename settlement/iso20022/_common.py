"""Shared pieces of the bank-message renderers and parsers (pacs.002/004, camt.053/054).

Rendering helpers derive the namespace from the parent element, so a block such as
an entry renders the same under any Document. Parsing helpers turn every problem
into a MessageRefusedError with a stable code: "missing_element", "bad_amount",
"bad_value", "wrong_message".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import cache
from typing import TypeVar

from lxml import etree
from pydantic import ValidationError

from settlement.domain.money import UnknownCurrencyError, exponent, format_minor, parse_decimal
from settlement.iso20022 import xsd
from settlement.iso20022.errors import MessageBuildError, MessageRefusedError
from settlement.iso20022.xml import Element, local_name, message_type, parse_secure

T = TypeVar("T")

MAX_TOTAL_DIGITS = 18  # totalDigits of the XSD amount types
# Longest text read from a bank message (ISO ids are Max35Text, the longest common text type
# Max2048Text): anything longer is refused, so every value read can key a Cassandra row.
MAX_TEXT = 2048
MAX_CODE = 4  # External...Code types are 1..4 characters; longer reasons go to Prtry
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_IBAN = re.compile(r"^[A-Z]{2}[0-9]{2}[a-zA-Z0-9]{1,30}$")


# --- rendering -------------------------------------------------------------------------------


def document(ns: str, body: str) -> tuple[Element, Element]:
    """A fresh Document root in `ns` with its message element `body`."""
    root = etree.Element(f"{{{ns}}}Document", nsmap={None: ns})
    return root, etree.SubElement(root, f"{{{ns}}}{body}")


def sub(parent: Element, name: str, text: str | None = None, **attrib: str) -> Element:
    """A child of `parent` in the parent's namespace."""
    el = etree.SubElement(parent, f"{{{etree.QName(parent).namespace}}}{name}", attrib)
    if text is not None:
        el.text = text
    return el


def serialize(root: Element) -> bytes:
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return data


def ident(value: str, what: str, limit: int = 35) -> str:
    """An identifier as it is, or MessageBuildError: ids are never cut or altered."""
    if not value or len(value) > limit or _NOT_XML_CHAR.search(value):
        raise MessageBuildError(f"{what} must be 1..{limit} XML characters, got {value!r}")
    return value


def free_text_chunks(value: str, limit: int = 105) -> list[str]:
    """Free text split into Max105Text pieces; characters XML cannot carry become spaces."""
    clean = _NOT_XML_CHAR.sub(" ", value)
    return [clean[i:i + limit] for i in range(0, len(clean), limit)]


def iso_datetime(value: datetime, what: str) -> str:
    """UTC with an explicit +00:00 offset; microseconds kept (when non-zero) so parsing round-trips."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise MessageBuildError(f"{what} must be timezone-aware")
    return value.astimezone(UTC).isoformat()


def amount(amount_minor: int, currency: str, what: str) -> str:
    try:
        exponent(currency)
    except UnknownCurrencyError as exc:
        raise MessageBuildError(f"{what}: {exc}") from exc
    if len(str(abs(amount_minor))) > MAX_TOTAL_DIGITS:
        raise MessageBuildError(f"{what}: {amount_minor} minor units exceed {MAX_TOTAL_DIGITS} digits")
    return format_minor(amount_minor, currency)


def reason(parent: Element, name: str, code: str) -> Element:
    """`name`/Rsn/Cd for an ISO code (1..4 characters), `name`/Rsn/Prtry for anything longer."""
    el = sub(parent, name)
    rsn = sub(el, "Rsn")
    if len(code) <= MAX_CODE:
        sub(rsn, "Cd", ident(code, f"{name} reason code", MAX_CODE))
    else:
        sub(rsn, "Prtry", ident(code, f"{name} proprietary reason"))
    return el


def account_id(parent: Element, value: str) -> None:
    """Acct/Id: IBAN when the id looks like one (2 letters, 2 digits, ...), else Othr/Id."""
    acct = sub(parent, "Id")
    if _IBAN.match(value):
        sub(acct, "IBAN", value)
    else:
        sub(sub(acct, "Othr"), "Id", ident(value, "account id", 34))


# --- parsing ---------------------------------------------------------------------------------


def check_family(root: Element, family: str) -> str:
    """The root's message type, refusing ("wrong_message") any other message than `family`."""
    msg_type = message_type(root)
    if not msg_type.startswith(family + "."):
        raise MessageRefusedError("wrong_message", f"expected a {family}, got {msg_type}")
    return msg_type


def body(root: Element, name: str) -> Element:
    el = find(root, name)
    if el is None:
        raise MessageRefusedError("missing_element", f"Document/{name} is missing")
    return el


@cache
def _wildcard(path: str) -> str:
    return "/".join("{*}" + step for step in path.split("/"))


def find(el: Element, path: str) -> Element | None:
    """Like xml.find_local (local names, any namespace), through lxml's compiled ElementPath."""
    return el.find(_wildcard(path))


def findall(el: Element, path: str) -> list[Element]:
    """Like xml.findall_local, through lxml's compiled ElementPath (the streaming hot path)."""
    return list(el.iterfind(_wildcard(path)))


def _text(el: Element, path: str) -> str | None:
    found = el.find(_wildcard(path))
    if found is None:
        return None
    text = found.text
    if text is None:
        return ""
    return checked_text(str(text), path)


def checked_text(text: str, where: str) -> str:
    """`text`, or "bad_value" when it is longer than any ISO 20022 text we read (MAX_TEXT)."""
    if len(text) > MAX_TEXT:
        raise MessageRefusedError("bad_value", f"{where} is {len(text)} characters; at most {MAX_TEXT}")
    return text


def required(el: Element, path: str) -> str:
    text = _text(el, path)
    if text is None or not text.strip():
        raise MessageRefusedError("missing_element", f"{local_name(el)}/{path} is missing or empty")
    return text


def optional(el: Element, path: str) -> str | None:
    text = _text(el, path)
    return text if text is not None and text.strip() else None


def parse_datetime(text: str, where: str) -> datetime:
    """An ISODateTime; one without an offset is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise MessageRefusedError("bad_value", f"{where} is not a date-time: {text!r}") from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_date(text: str, where: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError as exc:
        raise MessageRefusedError("bad_value", f"{where} is not a date: {text!r}") from exc


def date_choice(el: Element, path: str) -> date | None:
    """A DateAndDateTime2Choice: Dt, or the (sender's local) date of DtTm; None when absent."""
    dt = optional(el, f"{path}/Dt")
    if dt is not None:
        return parse_date(dt, f"{path}/Dt")
    dt_tm = optional(el, f"{path}/DtTm")
    if dt_tm is not None:
        return parse_datetime(dt_tm, f"{path}/DtTm").date()
    return None


def parse_amount(el: Element | None, where: str) -> tuple[int, str]:
    """An amount element with its Ccy as (exact minor units, currency); "bad_amount" if inexact."""
    if el is None or el.text is None or not el.text.strip():
        raise MessageRefusedError("missing_element", f"{where} is missing")
    currency = el.get("Ccy")
    if not currency:
        raise MessageRefusedError("missing_element", f"{where} has no Ccy")
    try:
        minor = parse_decimal(el.text, str(currency))
    except ValueError as exc:  # includes UnknownCurrencyError
        raise MessageRefusedError("bad_amount", f"{where}: {exc}") from exc
    if len(str(minor)) > MAX_TOTAL_DIGITS:  # the XSD's limit; also keeps it a Cassandra bigint
        raise MessageRefusedError("bad_amount", f"{where}: more than {MAX_TOTAL_DIGITS} digits")
    return minor, str(currency)


def parse_reason(el: Element) -> str | None:
    """Rsn/Cd or Rsn/Prtry of a reason block, or None."""
    return optional(el, "Rsn/Cd") or optional(el, "Rsn/Prtry")


def parse_int(text: str | None, where: str) -> int | None:
    if text is None:
        return None
    stripped = text.strip()
    if not stripped.isascii() or not stripped.isdigit():
        raise MessageRefusedError("bad_value", f"{where} is not a number: {text!r}")
    return int(stripped)


def build(factory: Callable[..., T], where: str, **fields: object) -> T:
    """`factory(**fields)`, with a pydantic refusal turned into "bad_value" (or "bad_amount")."""
    try:
        return factory(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        code = "bad_amount" if field.endswith("_minor") else "bad_value"
        raise MessageRefusedError(code, f"{where}: {field}: {first['msg']}") from exc


def parse_account_id(acct: Element) -> str:
    """Acct/Id/IBAN or Acct/Id/Othr/Id."""
    value = optional(acct, "Id/IBAN") or optional(acct, "Id/Othr/Id")
    if value is None:
        raise MessageRefusedError("missing_element", "Acct/Id/IBAN or Acct/Id/Othr/Id is missing")
    return value


def open_message(data: bytes, family: str, body_name: str, *,
                 validate_schema: bool) -> tuple[Element, str, datetime]:
    """The shared start of every parser: hardened parse, message family check, optional
    XSD validation, then (message body, GrpHdr/MsgId, GrpHdr/CreDtTm)."""
    root = parse_secure(data)
    msg_type = check_family(root, family)
    if validate_schema:
        xsd.validate(root, msg_type)
    msg = body(root, body_name)
    msg_id = required(msg, "GrpHdr/MsgId")
    return msg, msg_id, parse_datetime(required(msg, "GrpHdr/CreDtTm"), "GrpHdr/CreDtTm")
