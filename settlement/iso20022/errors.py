"""Errors of the ISO 20022 layer: messages we refuse to read and messages we cannot build."""

from __future__ import annotations

from dataclasses import dataclass

from settlement.domain.errors import FatalError, SettlementError


class MessageRefusedError(SettlementError):
    """An inbound (or self-checked) document we refuse to process.

    `code` is stable and machine-readable ("oversized", "malformed", "dtd_forbidden",
    "wrong_namespace", "schema_invalid", ...); `detail` is for humans and never
    contains resolved entity content.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class SchemaIssue:
    """One XSD violation as libxml2 reported it."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class SchemaValidationError(MessageRefusedError):
    """A document that does not validate against its message's XSD."""

    MAX_LISTED = 5

    def __init__(self, message_type: str, issues: list[SchemaIssue]) -> None:
        shown = "; ".join(str(i) for i in issues[: self.MAX_LISTED])
        more = len(issues) - self.MAX_LISTED
        suffix = f" (+{more} more)" if more > 0 else ""
        super().__init__("schema_invalid", f"{message_type}: {shown}{suffix}")
        self.message_type = message_type
        self.issues = issues


class SchemaNotFoundError(FatalError):
    """No XSD for the requested message: a deployment or programming error, not bad input."""


class MessageBuildError(FatalError):
    """A batch that cannot be rendered as a valid message (no retry will fix it)."""
