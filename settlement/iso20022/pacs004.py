"""pacs.004 (PaymentReturn): money of a settled transaction sent back by the bank.

`render_pacs004` writes one PaymentReturn as a pacs.004.001.10 with one TxInf (the
mock bank's side). The XSD needs GrpHdr/NbOfTxs and GrpHdr/SttlmInf/SttlmMtd: we
write 1 and CLRG. TxInf/OrgnlGrpInf needs OrgnlMsgNmId, which the model does not
carry: it is written as `orgnl_msg_type` (default pacs.008.001.08, what we send).

`parse_pacs004_all` reads every TxInf of a pacs.004.001.09 to .11 (local names);
`parse_pacs004` returns the first.
"""

from __future__ import annotations

from datetime import datetime

from settlement.domain.bank_messages import PaymentReturn
from settlement.iso20022 import _common as c
from settlement.iso20022 import xsd
from settlement.iso20022.errors import MessageBuildError, MessageRefusedError
from settlement.iso20022.xml import Element, iso_namespace

MESSAGE = "pacs.004.001.10"
NS = iso_namespace(MESSAGE)
FAMILY = "pacs.004"
SETTLEMENT_METHOD = "CLRG"
ORIGINAL_MESSAGE = "pacs.008.001.08"


def render_pacs004(ret: PaymentReturn, *, orgnl_msg_type: str = ORIGINAL_MESSAGE) -> bytes:
    """The return as a pacs.004.001.10 Document with one TxInf: deterministic and XSD-valid.

    Raises MessageBuildError (over-long id, unknown currency, naive datetime, more than
    18 digits) and SchemaValidationError for data the XSD refuses (e.g. a malformed UETR).
    """
    if ret.returned_minor <= 0:  # the model says so; objects built without validation may not
        raise MessageBuildError(f"return {ret.return_id} has a non-positive amount")
    root, msg = c.document(NS, "PmtRtr")
    hdr = c.sub(msg, "GrpHdr")
    c.sub(hdr, "MsgId", c.ident(ret.msg_id, "MsgId"))
    c.sub(hdr, "CreDtTm", c.iso_datetime(ret.created_at, "created_at"))
    c.sub(hdr, "NbOfTxs", "1")
    c.sub(c.sub(hdr, "SttlmInf"), "SttlmMtd", SETTLEMENT_METHOD)
    tx = c.sub(msg, "TxInf")
    c.sub(tx, "RtrId", c.ident(ret.return_id, "RtrId"))
    if ret.orgnl_msg_id is not None:
        grp = c.sub(tx, "OrgnlGrpInf")
        c.sub(grp, "OrgnlMsgId", c.ident(ret.orgnl_msg_id, "OrgnlMsgId"))
        c.sub(grp, "OrgnlMsgNmId", c.ident(orgnl_msg_type, "OrgnlMsgNmId"))
    c.sub(tx, "OrgnlEndToEndId", c.ident(ret.orgnl_end_to_end_id, "OrgnlEndToEndId"))
    if ret.orgnl_uetr is not None:
        c.sub(tx, "OrgnlUETR", c.ident(ret.orgnl_uetr, "OrgnlUETR", 36))
    c.sub(tx, "RtrdIntrBkSttlmAmt", c.amount(ret.returned_minor, ret.currency, "RtrdIntrBkSttlmAmt"),
          Ccy=ret.currency)
    c.sub(tx, "IntrBkSttlmDt", ret.settlement_date.isoformat())
    c.reason(tx, "RtrRsnInf", ret.reason)
    data = c.serialize(root)
    xsd.validate(data, MESSAGE)
    return data


def _tx(el: Element, msg: Element, msg_id: str, created_at: datetime) -> PaymentReturn:
    amount_minor, currency = c.parse_amount(c.find(el, "RtrdIntrBkSttlmAmt"), "RtrdIntrBkSttlmAmt")
    if amount_minor == 0:
        raise MessageRefusedError("bad_amount", "RtrdIntrBkSttlmAmt is zero")
    settled = c.optional(el, "IntrBkSttlmDt") or c.optional(msg, "GrpHdr/IntrBkSttlmDt")
    if settled is None:
        raise MessageRefusedError("missing_element", "TxInf/IntrBkSttlmDt (or GrpHdr's) is missing")
    reason = next(filter(None, (c.parse_reason(r) for r in c.findall(el, "RtrRsnInf"))), None)
    if reason is None:
        raise MessageRefusedError("missing_element", "TxInf/RtrRsnInf/Rsn is missing")
    return c.build(
        PaymentReturn, "TxInf",
        msg_id=msg_id,
        created_at=created_at,
        return_id=c.required(el, "RtrId"),
        orgnl_msg_id=c.optional(el, "OrgnlGrpInf/OrgnlMsgId") or c.optional(msg, "OrgnlGrpInf/OrgnlMsgId"),
        orgnl_end_to_end_id=c.required(el, "OrgnlEndToEndId"),
        orgnl_uetr=c.optional(el, "OrgnlUETR"),
        returned_minor=amount_minor,
        currency=currency,
        settlement_date=c.parse_date(settled, "IntrBkSttlmDt"),
        reason=reason,
    )


def parse_pacs004_all(data: bytes, *, validate_schema: bool = False) -> list[PaymentReturn]:
    """Every TxInf of a pacs.004.001.09-.11 as a PaymentReturn, in document order.

    Falls back to the group-level OrgnlGrpInf/OrgnlMsgId and GrpHdr/IntrBkSttlmDt when a
    TxInf has none. A document without TxInf is refused ("missing_element"), as is a
    zero or sub-minor amount ("bad_amount").
    """
    msg, msg_id, created_at = c.open_message(data, FAMILY, "PmtRtr", validate_schema=validate_schema)
    txs = c.findall(msg, "TxInf")
    if not txs:
        raise MessageRefusedError("missing_element", "PmtRtr/TxInf is missing")
    return [_tx(tx, msg, msg_id, created_at) for tx in txs]


def parse_pacs004(data: bytes, *, validate_schema: bool = False) -> PaymentReturn:
    """The first TxInf of a pacs.004 (see `parse_pacs004_all`)."""
    return parse_pacs004_all(data, validate_schema=validate_schema)[0]
