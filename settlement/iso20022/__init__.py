"""ISO 20022: build outbound messages, parse inbound ones (hardened lxml), validate against XSD.

Bytes in, domain out. Importing this package does no I/O; schemas compile on first use.
"""

from settlement.iso20022.errors import (
    MessageBuildError,
    MessageRefusedError,
    SchemaIssue,
    SchemaNotFoundError,
    SchemaValidationError,
)
from settlement.iso20022.pacs008 import (
    Pacs008Summary,
    Pacs008TxSummary,
    parse_pacs008_summary,
    render_pacs008,
)
from settlement.iso20022.xml import find_local, message_type, parse_secure, text_local
from settlement.iso20022.xsd import set_schema_dir, validate

__all__ = [
    "MessageBuildError",
    "MessageRefusedError",
    "Pacs008Summary",
    "Pacs008TxSummary",
    "SchemaIssue",
    "SchemaNotFoundError",
    "SchemaValidationError",
    "find_local",
    "message_type",
    "parse_pacs008_summary",
    "parse_secure",
    "render_pacs008",
    "set_schema_dir",
    "text_local",
    "validate",
]
