"""pacs.002 (FIToFIPaymentStatusReport): the bank's accept/reject answer to one pacs.008.

`render_pacs002` writes pacs.002.001.10 (the mock bank's side); `parse_pacs002` reads
pacs.002.001.08 to .12 by local names. Reason codes of 1..4 characters go to Rsn/Cd
(ExternalStatusReason1Code: AC01, AC04, AM04, FF01, ...), longer ones to Rsn/Prtry.
Reason text longer than 105 characters is split over several AddtlInf and joined back.
"""

from __future__ import annotations

from typing import get_args

from settlement.domain.bank_messages import StatusReport, TxStatus, TxStatusReport
from settlement.iso20022 import _common as c
from settlement.iso20022 import xsd
from settlement.iso20022.errors import MessageRefusedError
from settlement.iso20022.xml import Element, iso_namespace

MESSAGE = "pacs.002.001.10"
NS = iso_namespace(MESSAGE)
FAMILY = "pacs.002"
_STATUSES = frozenset(get_args(TxStatus))
# A partially accepted group says nothing the per-transaction statuses do not say better.
_GROUP_STATUSES_AS_NONE = frozenset({"PART"})


def _status_reason(parent: Element, code: str | None, text: str | None) -> None:
    if code is None and not text:
        return
    el = c.reason(parent, "StsRsnInf", code) if code is not None else c.sub(parent, "StsRsnInf")
    for chunk in c.free_text_chunks(text or ""):
        c.sub(el, "AddtlInf", chunk)


def _transaction(parent: Element, tx: TxStatusReport) -> None:
    el = c.sub(parent, "TxInfAndSts")
    if tx.orgnl_instr_id is not None:
        c.sub(el, "OrgnlInstrId", c.ident(tx.orgnl_instr_id, "OrgnlInstrId"))
    c.sub(el, "OrgnlEndToEndId", c.ident(tx.orgnl_end_to_end_id, "OrgnlEndToEndId"))
    if tx.orgnl_uetr is not None:
        c.sub(el, "OrgnlUETR", c.ident(tx.orgnl_uetr, "OrgnlUETR", 36))
    c.sub(el, "TxSts", tx.status)
    _status_reason(el, tx.reason, tx.reason_text)


def render_pacs002(report: StatusReport) -> bytes:
    """The report as a pacs.002.001.10 Document: UTF-8 bytes, deterministic, XSD-valid.

    Raises MessageBuildError for data that cannot be expressed (an over-long id, a naive
    datetime) and SchemaValidationError for data the XSD refuses (e.g. a malformed UETR).
    An empty reason_text is treated as absent.
    """
    root, msg = c.document(NS, "FIToFIPmtStsRpt")
    hdr = c.sub(msg, "GrpHdr")
    c.sub(hdr, "MsgId", c.ident(report.msg_id, "MsgId"))
    c.sub(hdr, "CreDtTm", c.iso_datetime(report.created_at, "created_at"))
    grp = c.sub(msg, "OrgnlGrpInfAndSts")
    c.sub(grp, "OrgnlMsgId", c.ident(report.orgnl_msg_id, "OrgnlMsgId"))
    c.sub(grp, "OrgnlMsgNmId", c.ident(report.orgnl_msg_type, "OrgnlMsgNmId"))
    if report.group_status is not None:
        c.sub(grp, "GrpSts", report.group_status)
    _status_reason(grp, report.group_reason, None)
    for tx in report.transactions:
        _transaction(msg, tx)
    data = c.serialize(root)
    xsd.validate(data, MESSAGE)
    return data


def _status(code: str | None, where: str) -> str | None:
    if code is None or code in _STATUSES:
        return code
    raise MessageRefusedError("unsupported_status", f"{where} {code!r} is not one we act on")


def _reason_text(el: Element | None) -> str | None:
    if el is None:
        return None
    parts = [part.text or "" for part in c.findall(el, "AddtlInf")]
    return "".join(parts) or None


def _tx(el: Element, group_status: str | None) -> TxStatusReport:
    status = _status(c.optional(el, "TxSts"), "TxSts") or group_status
    if status is None:
        raise MessageRefusedError("missing_element", "TxInfAndSts/TxSts is missing (and no GrpSts)")
    info = c.find(el, "StsRsnInf")
    return c.build(
        TxStatusReport, "TxInfAndSts",
        orgnl_end_to_end_id=c.required(el, "OrgnlEndToEndId"),
        orgnl_uetr=c.optional(el, "OrgnlUETR"),
        orgnl_instr_id=c.optional(el, "OrgnlInstrId"),
        status=status,
        reason=None if info is None else c.parse_reason(info),
        reason_text=_reason_text(info),
    )


def parse_pacs002(data: bytes, *, validate_schema: bool = False) -> StatusReport:
    """Read a pacs.002.001.08-.12 into a StatusReport (hardened parser, local names).

    The first OrgnlGrpInfAndSts gives the original message (else the first
    TxInfAndSts/OrgnlGrpInf). A group status PART becomes None (the transactions say
    which were rejected); a status outside TxStatus (e.g. RCVD) is refused with
    "unsupported_status"; a transaction without TxSts takes the group status.
    """
    msg, msg_id, created_at = c.open_message(data, FAMILY, "FIToFIPmtStsRpt",
                                             validate_schema=validate_schema)
    grp = c.find(msg, "OrgnlGrpInfAndSts")
    if grp is None:
        grp = c.find(msg, "TxInfAndSts/OrgnlGrpInf")
    if grp is None:
        raise MessageRefusedError("missing_element", "no OrgnlGrpInfAndSts nor TxInfAndSts/OrgnlGrpInf")
    raw_group = c.optional(grp, "GrpSts")
    group_status = None if raw_group in _GROUP_STATUSES_AS_NONE else _status(raw_group, "GrpSts")
    group_info = c.find(grp, "StsRsnInf")
    return c.build(
        StatusReport, FAMILY,
        msg_id=msg_id,
        created_at=created_at,
        orgnl_msg_id=c.required(grp, "OrgnlMsgId"),
        orgnl_msg_type=c.required(grp, "OrgnlMsgNmId"),
        group_status=group_status,
        group_reason=None if group_info is None else c.parse_reason(group_info),
        transactions=tuple(_tx(tx, group_status) for tx in c.findall(msg, "TxInfAndSts")),
    )
