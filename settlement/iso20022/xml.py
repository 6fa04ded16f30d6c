"""A hardened lxml parser and namespace-agnostic readers for ISO 20022 documents.

Inbound XML is hostile until proven otherwise: no DTD of any kind is accepted
(this closes XXE, entity expansion bombs and external DTD fetches at once), the
size is capped before libxml2 sees a byte, and nothing is ever loaded from the
network or the file system. Readers key on local element names so neighbouring
message versions (another namespace) read the same way.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from settlement.iso20022.errors import MessageRefusedError

# lxml ships no type information here; elements are typed as Any on purpose.
Element = Any

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
ISO_NS_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"
_MESSAGE_TYPE = re.compile(r"^[a-z]{4}\.[0-9]{3}\.[0-9]{3}\.[0-9]{2}$")
# Cheap first line of defence; the post-parse docinfo check also catches UTF-16/32 inputs.
_DOCTYPE_MARKERS = (b"<!DOCTYPE", b"<!ENTITY")


def _parser() -> Any:
    # A fresh parser per call: lxml parsers must not be shared between threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        recover=False,
    )


def parse_secure(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Element:
    """Parse `data` into its root element, or raise MessageRefusedError.

    Codes: "oversized" (more than `max_bytes`), "dtd_forbidden" (any DOCTYPE or
    entity declaration), "malformed" (not well-formed XML, bad encoding, empty).
    """
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"parse_secure takes bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise MessageRefusedError("oversized", f"{len(data)} bytes exceeds the limit of {max_bytes}")
    if any(marker in data for marker in _DOCTYPE_MARKERS):
        raise MessageRefusedError("dtd_forbidden", "documents with a DOCTYPE are not accepted")
    try:
        root = etree.fromstring(bytes(data), _parser())
    except etree.XMLSyntaxError as exc:
        raise MessageRefusedError("malformed", _first_line(str(exc))) from exc
    except (ValueError, etree.ParserError) as exc:
        raise MessageRefusedError("malformed", _first_line(str(exc)) or type(exc).__name__) from exc
    if root is None:
        raise MessageRefusedError("malformed", "no root element")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise MessageRefusedError("dtd_forbidden", "documents with a DOCTYPE are not accepted")
    if next(root.iter(etree.Entity), None) is not None:
        raise MessageRefusedError("dtd_forbidden", "entity references are not accepted")
    return root


def _first_line(text: str) -> str:
    return text.splitlines()[0][:300] if text else ""


def local_name(el: Element) -> str | None:
    """The element's name without namespace; None for comments and processing instructions."""
    tag = el.tag
    if not isinstance(tag, str):
        return None
    return tag.rsplit("}", 1)[-1]


def namespace(el: Element) -> str | None:
    tag = el.tag
    if not isinstance(tag, str) or not tag.startswith("{"):
        return None
    return tag[1:].split("}", 1)[0]


def children_local(el: Element, name: str) -> list[Element]:
    """Direct children of `el` whose local name is `name`, in document order."""
    return [child for child in el if local_name(child) == name]


def findall_local(el: Element, path: str) -> list[Element]:
    """All elements reached by a '/'-separated path of local names ("CdtTrfTxInf/PmtId")."""
    nodes = [el]
    for step in path.split("/"):
        nodes = [child for node in nodes for child in children_local(node, step)]
        if not nodes:
            break
    return nodes


def find_local(el: Element, path: str) -> Element | None:
    """The first element reached by `path` (local names), or None."""
    found = findall_local(el, path)
    return found[0] if found else None


def text_local(el: Element, path: str) -> str | None:
    """Text of the first element at `path`, or None if absent. Not stripped: xs:string keeps spaces."""
    found = find_local(el, path)
    if found is None:
        return None
    text = found.text
    return "" if text is None else str(text)


def require_text_local(el: Element, path: str) -> str:
    """Like text_local, but a missing or empty element is refused ("missing_element")."""
    text = text_local(el, path)
    if not text:
        raise MessageRefusedError("missing_element", f"{local_name(el)}/{path} is missing or empty")
    return text


def message_type(root: Element) -> str:
    """The message identifier of a Document root, e.g. "pacs.002.001.10", from its namespace."""
    ns = namespace(root)
    if local_name(root) != "Document" or ns is None or not ns.startswith(ISO_NS_PREFIX):
        raise MessageRefusedError(
            "wrong_namespace", f"root is not an ISO 20022 Document: {root.tag!r}")
    msg = ns[len(ISO_NS_PREFIX):]
    if not _MESSAGE_TYPE.match(msg):
        raise MessageRefusedError("wrong_namespace", f"not an ISO 20022 message namespace: {ns}")
    return msg


def iso_namespace(message: str) -> str:
    """The XML namespace of `message` ("pacs.008.001.08" -> "urn:iso:...:pacs.008.001.08")."""
    if not _MESSAGE_TYPE.match(message):
        raise ValueError(f"not an ISO 20022 message identifier: {message!r}")
    return ISO_NS_PREFIX + message
