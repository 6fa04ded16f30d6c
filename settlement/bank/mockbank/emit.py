"""What the bank emits: domain models rendered (and XSD-validated) by settlement.iso20022.

The renderers are imported on first use, keeping import of the mock bank cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from settlement.domain.bank_messages import Notification, PaymentReturn, Statement, StatusReport

PACS002 = "pacs.002.001.10"
PACS004 = "pacs.004.001.10"
CAMT054 = "camt.054.001.08"
CAMT053 = "camt.053.001.08"


def _renderer(module: str, name: str) -> Callable[[Any], bytes]:
    fn: Callable[[Any], bytes] = getattr(importlib.import_module(f"settlement.iso20022.{module}"), name)
    return fn


def render(model: StatusReport | PaymentReturn | Notification | Statement) -> tuple[str, bytes]:
    """(message type, XSD-valid XML bytes) of one emitted model."""
    if isinstance(model, StatusReport):
        return PACS002, _renderer("pacs002", "render_pacs002")(model)
    if isinstance(model, PaymentReturn):
        return PACS004, _renderer("pacs004", "render_pacs004")(model)
    if isinstance(model, Notification):
        return CAMT054, _renderer("camt054", "render_camt054")(model)
    return CAMT053, _renderer("camt053", "render_camt053")(model)
