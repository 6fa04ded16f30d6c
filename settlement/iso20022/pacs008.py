"""pacs.008.001.08 (FIToFICustomerCreditTransfer): render a sealed batch, read one back.

Rendering is a pure function of the batch and the debtor: no clock, no random,
transactions in the batch's order, so a re-send is byte-identical and the bank
can refuse it as a duplicate. The output is validated against the official XSD
before it is returned.

Text rules (the XSD's Max35Text/Max140Text/Max34Text): identifiers (MsgId,
InstrId, EndToEndId, account ids) are never altered; one that does not fit is a
MessageBuildError. Free text (names, remittance) has characters XML cannot carry
replaced by a space and is cut to 140 characters; the models already cap both at
140, so the cut only applies to objects built without validation.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from lxml import etree

from settlement.domain.batch import Party, PayoutTx, SealedBatch
from settlement.domain.money import UnknownCurrencyError, exponent, format_minor, parse_decimal
from settlement.iso20022 import xsd
from settlement.iso20022.errors import MessageBuildError, MessageRefusedError
from settlement.iso20022.xml import (
    Element,
    find_local,
    findall_local,
    iso_namespace,
    message_type,
    parse_secure,
    require_text_local,
    text_local,
)

MESSAGE = "pacs.008.001.08"
NS = iso_namespace(MESSAGE)
CHARGE_BEARERS = frozenset({"DEBT", "CRED", "SHAR", "SLEV"})
SETTLEMENT_METHODS = frozenset({"INDA", "INGA", "COVE", "CLRG"})
MAX_TOTAL_DIGITS = 18  # totalDigits of DecimalNumber and ActiveCurrencyAndAmount
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def _sub(parent: Element, name: str, text: str | None = None, **attrib: str) -> Element:
    el = etree.SubElement(parent, _q(name), attrib)
    if text is not None:
        el.text = text
    return el


def _ident(value: str, what: str, limit: int = 35) -> str:
    if not value or len(value) > limit or _NOT_XML_CHAR.search(value):
        raise MessageBuildError(f"{what} must be 1..{limit} XML characters, got {value!r}")
    return value


def _free_text(value: str, limit: int = 140) -> str:
    return _NOT_XML_CHAR.sub(" ", value)[:limit]


def _iso_datetime(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise MessageBuildError("batch.created_at must be timezone-aware")
    # UTC with an explicit +00:00 offset: CBPR+ requires an offset, and 'Z' is not one.
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


def _amount(amount_minor: int, currency: str) -> str:
    if len(str(amount_minor)) > MAX_TOTAL_DIGITS:
        raise MessageBuildError(f"{amount_minor} minor units exceed {MAX_TOTAL_DIGITS} digits")
    return format_minor(amount_minor, currency)


def _party(parent: Element, name: str, party: Party) -> None:
    _sub(_sub(parent, name), "Nm", _free_text(party.name))


def _account(parent: Element, name: str, party: Party) -> None:
    acct_id = _sub(_sub(parent, name), "Id")
    account = _ident(party.account_id, f"{name} id", limit=34)
    if party.account_scheme == "IBAN":
        _sub(acct_id, "IBAN", account)
    else:
        _sub(_sub(acct_id, "Othr"), "Id", account)


def _agent(parent: Element, name: str, bic: str) -> None:
    _sub(_sub(_sub(parent, name), "FinInstnId"), "BICFI", bic)


def _transaction(parent: Element, tx: PayoutTx, debtor: Party, charge_bearer: str) -> None:
    el = _sub(parent, "CdtTrfTxInf")
    pmt_id = _sub(el, "PmtId")
    _sub(pmt_id, "InstrId", _ident(tx.instr_id, "InstrId"))
    _sub(pmt_id, "EndToEndId", _ident(tx.end_to_end_id, "EndToEndId"))
    _sub(pmt_id, "UETR", tx.uetr)
    _sub(el, "IntrBkSttlmAmt", _amount(tx.amount_minor, tx.currency), Ccy=tx.currency)
    _sub(el, "ChrgBr", charge_bearer)
    _party(el, "Dbtr", debtor)
    _account(el, "DbtrAcct", debtor)
    _agent(el, "DbtrAgt", debtor.bic)
    _agent(el, "CdtrAgt", tx.creditor.bic)
    _party(el, "Cdtr", tx.creditor)
    _account(el, "CdtrAcct", tx.creditor)
    remittance = _free_text(tx.remittance)
    if remittance:  # Ustrd is Max140Text (min length 1): no RmtInf rather than an empty one
        _sub(_sub(el, "RmtInf"), "Ustrd", remittance)


class _TxStamp:
    """One CdtTrfTxInf built by `_transaction`, copied (in C) per transaction of the batch.

    Only the per-transaction texts are set on each copy, by child index; the debtor,
    the charge bearer and the element structure come with the copy. Building 10,000
    transactions takes about half the time (with validation, 614 -> 406 ms), and the
    bytes are the same (a property test compares with the element-by-element build).
    There is one stamp per shape: creditor IBAN or other id, with or without remittance.
    """

    def __init__(self, debtor: Party, charge_bearer: str, first: PayoutTx, remittance: bool) -> None:
        holder = etree.Element(_q("Holder"), nsmap={None: NS})
        _transaction(holder, first, debtor, charge_bearer)  # the first of its shape; texts are replaced
        self._el = holder[0]
        self._iban = first.creditor.account_scheme == "IBAN"
        self._remittance = remittance

    def stamp(self, parent: Element, tx: PayoutTx, remittance: str) -> None:
        el = copy.deepcopy(self._el)
        pmt_id = el[0]
        pmt_id[0].text = _ident(tx.instr_id, "InstrId")
        pmt_id[1].text = _ident(tx.end_to_end_id, "EndToEndId")
        pmt_id[2].text = tx.uetr
        el[1].text = _amount(tx.amount_minor, tx.currency)
        el[1].set("Ccy", tx.currency)
        el[6][0][0].text = tx.creditor.bic  # CdtrAgt/FinInstnId/BICFI
        el[7][0].text = _free_text(tx.creditor.name)  # Cdtr/Nm
        account = _ident(tx.creditor.account_id, "CdtrAcct id", limit=34)
        if self._iban:
            el[8][0][0].text = account  # CdtrAcct/Id/IBAN
        else:
            el[8][0][0][0].text = account  # CdtrAcct/Id/Othr/Id
        if self._remittance:
            el[9][0].text = remittance  # RmtInf/Ustrd
        parent.append(el)


def _check(batch: SealedBatch, charge_bearer: str, settlement_method: str) -> None:
    if charge_bearer not in CHARGE_BEARERS:
        raise MessageBuildError(f"unknown charge bearer {charge_bearer!r}")
    if settlement_method not in SETTLEMENT_METHODS:
        raise MessageBuildError(f"unknown settlement method {settlement_method!r}")
    if not batch.transactions:
        raise MessageBuildError(f"batch {batch.batch_id} has no transactions")
    try:
        exponent(batch.currency)
    except UnknownCurrencyError as exc:
        raise MessageBuildError(str(exc)) from exc
    for tx in batch.transactions:
        if tx.currency != batch.currency:
            raise MessageBuildError(
                f"payout {tx.payout_id} is in {tx.currency}, batch {batch.batch_id} in {batch.currency}")


def render_pacs008(
    batch: SealedBatch,
    debtor: Party,
    *,
    charge_bearer: str = "SLEV",
    settlement_method: str = "CLRG",
) -> bytes:
    """The batch as a pacs.008.001.08 Document: UTF-8 bytes, deterministic, XSD-valid.

    Raises MessageBuildError for a batch that cannot be expressed (mixed
    currencies, an over-long id, more than 18 digits) and SchemaValidationError
    if the output does not validate (a bug, or data the XSD refuses such as a
    malformed IBAN/BIC/UETR).
    """
    _check(batch, charge_bearer, settlement_method)
    total = _amount(batch.ctrl_sum_minor, batch.currency)
    root = etree.Element(_q("Document"), nsmap={None: NS})
    msg = _sub(root, "FIToFICstmrCdtTrf")
    hdr = _sub(msg, "GrpHdr")
    _sub(hdr, "MsgId", _ident(batch.msg_id, "MsgId"))
    _sub(hdr, "CreDtTm", _iso_datetime(batch.created_at))
    _sub(hdr, "NbOfTxs", str(batch.nb_of_txs))
    _sub(hdr, "CtrlSum", total)
    _sub(hdr, "TtlIntrBkSttlmAmt", total, Ccy=batch.currency)
    _sub(hdr, "IntrBkSttlmDt", batch.settlement_date.isoformat())
    _sub(_sub(hdr, "SttlmInf"), "SttlmMtd", settlement_method)
    stamps: dict[tuple[bool, bool], _TxStamp] = {}
    for tx in batch.transactions:
        remittance = _free_text(tx.remittance)
        shape = (tx.creditor.account_scheme == "IBAN", bool(remittance))
        if shape not in stamps:
            stamps[shape] = _TxStamp(debtor, charge_bearer, tx, bool(remittance))
        stamps[shape].stamp(msg, tx, remittance)
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    xsd.validate(data, MESSAGE)
    return data


@dataclass(frozen=True)
class Pacs008TxSummary:
    end_to_end_id: str
    uetr: str | None
    instr_id: str | None
    amount_minor: int
    creditor_bic: str | None
    creditor_account: str | None


@dataclass(frozen=True)
class Pacs008Summary:
    """What checkers and the mock bank need from a pacs.008, amounts as exact minor units."""

    msg_id: str
    nb_of_txs: int
    ctrl_sum_minor: int
    total_minor: int
    currency: str
    settlement_date: date
    transactions: list[Pacs008TxSummary]


def _minor(el: Element | None, where: str, currency: str) -> int:
    if el is None or not el.text:
        raise MessageRefusedError("missing_element", f"{where} is missing")
    ccy = el.get("Ccy")
    if not ccy:
        raise MessageRefusedError("missing_element", f"{where} has no Ccy")
    if ccy != currency:
        raise MessageRefusedError("currency_mismatch", f"{where} is in {ccy}, message in {currency}")
    return _decimal(el.text, where, currency)


def _decimal(text: str, where: str, currency: str) -> int:
    try:
        return parse_decimal(text, currency)
    except ValueError as exc:  # includes UnknownCurrencyError
        raise MessageRefusedError("bad_amount", f"{where}: {exc}") from exc


def _tx_summary(el: Element, currency: str) -> Pacs008TxSummary:
    account = text_local(el, "CdtrAcct/Id/IBAN")
    if account is None:
        account = text_local(el, "CdtrAcct/Id/Othr/Id")
    return Pacs008TxSummary(
        end_to_end_id=require_text_local(el, "PmtId/EndToEndId"),
        uetr=text_local(el, "PmtId/UETR"),
        instr_id=text_local(el, "PmtId/InstrId"),
        amount_minor=_minor(find_local(el, "IntrBkSttlmAmt"), "IntrBkSttlmAmt", currency),
        creditor_bic=text_local(el, "CdtrAgt/FinInstnId/BICFI"),
        creditor_account=account,
    )


def parse_pacs008_summary(data: bytes, *, validate_schema: bool = False) -> Pacs008Summary:
    """Read the header and per-transaction facts of a pacs.008 (any 001.xx version).

    Uses the hardened parser and local names only. Group-level CtrlSum,
    TtlIntrBkSttlmAmt and IntrBkSttlmDt are required (we always send them).
    Amounts with more decimals than the currency allows are refused ("bad_amount").
    With `validate_schema`, the document is first validated against its version's XSD.
    """
    root = parse_secure(data)
    msg_type = message_type(root)
    if not msg_type.startswith("pacs.008.001."):
        raise MessageRefusedError("wrong_message", f"expected a pacs.008, got {msg_type}")
    if validate_schema:
        xsd.validate(root, msg_type)
    body = find_local(root, "FIToFICstmrCdtTrf")
    if body is None:
        raise MessageRefusedError("missing_element", "Document/FIToFICstmrCdtTrf is missing")
    total_el = find_local(body, "GrpHdr/TtlIntrBkSttlmAmt")
    if total_el is None or not total_el.get("Ccy"):
        raise MessageRefusedError("missing_element", "GrpHdr/TtlIntrBkSttlmAmt with Ccy is missing")
    currency = str(total_el.get("Ccy"))
    nb_text = require_text_local(body, "GrpHdr/NbOfTxs")
    date_text = require_text_local(body, "GrpHdr/IntrBkSttlmDt")
    if not nb_text.isascii() or not nb_text.isdigit():
        raise MessageRefusedError("bad_value", f"NbOfTxs is not a number: {nb_text!r}")
    try:
        settlement_date = date.fromisoformat(date_text)
    except ValueError as exc:
        raise MessageRefusedError("bad_value", f"IntrBkSttlmDt is not a date: {date_text!r}") from exc
    return Pacs008Summary(
        msg_id=require_text_local(body, "GrpHdr/MsgId"),
        nb_of_txs=int(nb_text),
        ctrl_sum_minor=_decimal(require_text_local(body, "GrpHdr/CtrlSum"), "CtrlSum", currency),
        total_minor=_minor(total_el, "TtlIntrBkSttlmAmt", currency),
        currency=currency,
        settlement_date=settlement_date,
        transactions=[_tx_summary(tx, currency) for tx in findall_local(body, "CdtTrfTxInf")],
    )
