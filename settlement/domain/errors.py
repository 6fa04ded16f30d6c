"""One error tree. Retry only `RetryableError`; everything else surfaces."""

from __future__ import annotations


class SettlementError(Exception):
    """Root of every error this package raises on purpose."""


class RetryableError(SettlementError):
    """A transient failure (timeout, node down): the same call may succeed later."""


class NotYetError(RetryableError):
    """What a record needs is not there yet but is on its way (a payout row, written just
    after its pacs.008 is published): asked again after the loop's backoff, like an
    outage, but nothing is down."""


class FatalError(SettlementError):
    """A failure no retry will fix (misconfiguration, fenced producer, bad schema)."""


class InvalidEventError(SettlementError):
    """An input record that can never be processed; it belongs on a dead-letter topic.

    `code` is a stable machine-readable reason (it goes into the DLQ headers);
    the message is the human-readable detail.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class InvalidTransitionError(SettlementError):
    """A payout status change the state machine does not allow."""


class ConfigError(FatalError):
    """Settings or an input file an operator gave are wrong."""
