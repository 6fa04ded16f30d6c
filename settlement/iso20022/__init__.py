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

# Bank messages (inbound statuses, returns, notifications, statements; rendered by the mock bank).
from settlement.iso20022.camt053 import (
    StatementHeader,
    iter_camt053,
    iter_camt053_entries,
    parse_camt053,
    parse_camt053_all,
    render_camt053,
)
from settlement.iso20022.camt054 import (
    parse_camt054,
    parse_camt054_all,
    render_camt054,
)
from settlement.iso20022.pacs002 import parse_pacs002, render_pacs002
from settlement.iso20022.pacs004 import (
    parse_pacs004,
    parse_pacs004_all,
    render_pacs004,
)

__all__ += [
    "StatementHeader",
    "iter_camt053",
    "iter_camt053_entries",
    "parse_camt053",
    "parse_camt053_all",
    "parse_camt054",
    "parse_camt054_all",
    "parse_pacs002",
    "parse_pacs004",
    "parse_pacs004_all",
    "render_camt053",
    "render_camt054",
    "render_pacs002",
    "render_pacs004",
]
