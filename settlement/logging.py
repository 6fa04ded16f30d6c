"""structlog setup: readable console on a terminal, JSON lines in production.

Every event is a dotted name plus fields; account numbers and secrets are
masked by a processor so no call site can forget.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_IBAN = re.compile(r"\b([A-Z]{2}\d{2})([A-Z0-9]{7,26})([A-Z0-9]{4})\b")
_SENSITIVE_KEYS = {"password", "token", "secret", "sasl_password", "authorization"}
_ACCOUNT_KEYS = {"account_id", "iban", "account", "creditor_account"}


def _mask_value(value: str) -> str:
    if len(value) <= 6:
        return "*" * len(value)
    return f"{value[:2]}{'*' * (len(value) - 6)}{value[-4:]}"


def mask_sensitive(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask secrets and account numbers, by key and by IBAN shape in any string."""
    for key, value in list(event.items()):
        lk = key.lower()
        if lk in _SENSITIVE_KEYS:
            event[key] = "***"
        elif lk in _ACCOUNT_KEYS and isinstance(value, str):
            event[key] = _mask_value(value)
        elif isinstance(value, str) and _IBAN.search(value):
            event[key] = _IBAN.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), value)
    return event


def configure(fmt: str = "auto", level: str = "info") -> None:
    """Idempotent; call once per process, at the CLI edge or in a worker after fork."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_sensitive,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _forward_stdlib(logging.getLevelNamesMapping()[level.upper()])


class _ToStructlog(logging.Handler):
    """Library loggers (cassandra-driver, httpx, ...) into the same structured stream."""

    # Cassandra 5 warns on every prepare after `USE <keyspace>` (the session's keyspace):
    # our statements name no other keyspace, so it says nothing an operator can act on.
    _NOISE = ("`USE <keyspace>` with prepared statements",)

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(n in record.getMessage() for n in self._NOISE)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            extra = {}
            if record.exc_info and record.exc_info[1] is not None:
                extra["error"] = repr(record.exc_info[1])[:500]
            structlog.get_logger(record.name).log(
                record.levelno, record.getMessage(), logger=record.name, **extra)
        except Exception:  # a log line must never break the caller
            self.handleError(record)


def _forward_stdlib(level: int) -> None:
    root = logging.getLogger()
    if not any(isinstance(h, _ToStructlog) for h in root.handlers):
        root.addHandler(_ToStructlog())
    # warnings and worse from libraries (the driver's reconnection attempts, say), not
    # their info chatter, whatever our own level
    root.setLevel(max(level, logging.WARNING))
