"""XSD validation against the official schemas shipped under schemas/iso20022/.

Each schema is compiled once, lazily, on first use. The directory is found by
walking up from this file to the repository's schemas/iso20022; an installed
package (no repository around it) calls `set_schema_dir` once at bootstrap.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from lxml import etree

from settlement.iso20022.errors import (
    MessageRefusedError,
    SchemaIssue,
    SchemaNotFoundError,
    SchemaValidationError,
)
from settlement.iso20022.xml import Element, iso_namespace, namespace, parse_secure

_SCHEMA_SUBDIR = Path("schemas") / "iso20022"

_lock = threading.Lock()
_schema_dir: Path | None = None
# message -> (compiled schema, lock): lxml keeps a validator's error log on the object,
# so one validation per schema at a time keeps errors from mixing between threads.
_compiled: dict[str, tuple[Any, threading.Lock]] = {}


def set_schema_dir(path: Path | str) -> None:
    """Use `path` (a directory of <message>.xsd files) from now on; drops compiled schemas."""
    global _schema_dir
    resolved = Path(path).resolve()
    if not resolved.is_dir():
        raise SchemaNotFoundError(f"schema directory does not exist: {resolved}")
    with _lock:
        _schema_dir = resolved
        _compiled.clear()


def schema_dir() -> Path:
    """The directory the schemas are read from (the override, else found from this file)."""
    global _schema_dir
    with _lock:
        if _schema_dir is None:
            _schema_dir = _discover()
        return _schema_dir


def _discover() -> Path:
    for parent in Path(__file__).resolve().parents:
        candidate = parent / _SCHEMA_SUBDIR
        if candidate.is_dir():
            return candidate
    raise SchemaNotFoundError(
        f"no {_SCHEMA_SUBDIR} above {Path(__file__).parent}; call set_schema_dir() at bootstrap")


def _schema(message: str) -> tuple[Any, threading.Lock]:
    iso_namespace(message)  # refuses anything that is not a message id, e.g. "../../etc/x"
    directory = schema_dir()
    with _lock:
        entry = _compiled.get(message)
        if entry is not None:
            return entry
        path = directory / f"{message}.xsd"
        if not path.is_file():
            raise SchemaNotFoundError(f"no schema for {message} in {directory}")
        # The XSDs are ours, but they go through the same locked-down parser settings.
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        try:
            compiled = etree.XMLSchema(etree.parse(str(path), parser))
        except (etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
            raise SchemaNotFoundError(f"cannot compile {path}: {exc}") from exc
        entry = (compiled, threading.Lock())
        _compiled[message] = entry
        return entry


def validate(document: bytes | Element, message: str) -> None:
    """Validate `document` (bytes or a parsed root) against <message>.xsd.

    Raises MessageRefusedError("wrong_namespace") when the root is not that
    message's Document, SchemaValidationError listing the first violations with
    line numbers otherwise, and SchemaNotFoundError for an unknown message.
    """
    root = parse_secure(bytes(document)) if isinstance(document, bytes | bytearray) else document
    expected = iso_namespace(message)
    actual = namespace(root)
    if actual != expected:
        raise MessageRefusedError("wrong_namespace", f"expected {expected}, got {actual}")
    schema, schema_lock = _schema(message)
    with schema_lock:
        if schema.validate(root):
            return
        issues = [SchemaIssue(line=e.line, message=e.message) for e in schema.error_log]
    raise SchemaValidationError(message, issues)
