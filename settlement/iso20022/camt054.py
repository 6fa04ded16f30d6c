"""camt.054 (BankToCustomerDebitCreditNotification) and the entry (Ntry) camt.053 shares.

An Entry renders as one Ntry (ReportEntry10):
- BkTxCd is mandatory and the model has none, so it is derived: Domn/Cd PMNT, Fmly/Cd
  ICDT for a debit (an issued credit transfer) or the return of one, RCDT otherwise,
  SubFmlyCd ESCT, or RRTN for a return. Parsing reads is_return back from RRTN or RtrInf.
- BookgDt and ValDt are written as Dt. Parsing also takes DtTm (its date), and uses one
  for the other when a bank sends only one (typical of PDNG entries).
- references: one NtryDtls/TxDtls per end_to_end_id (the i-th UETR in the same Refs;
  extra UETRs get a TxDtls of their own), each with Refs/MsgId when msg_id is set and
  RtrInf/Rsn when return_reason is set. With no ids, a msg_id is written as
  NtryDtls/Btch/MsgId (a batch booked as one entry), a return_reason as one TxDtls.
Sts is written as Sts/Cd (V07+); Sts as plain text (V02-V06) is read as well.
"""

from __future__ import annotations

from datetime import date, datetime

from settlement.domain.bank_messages import Entry, Notification
from settlement.domain.reconciliation import BookedLine
from settlement.iso20022 import _common as c
from settlement.iso20022 import xsd
from settlement.iso20022.errors import MessageBuildError, MessageRefusedError
from settlement.iso20022.xml import Element, iso_namespace, local_name

MESSAGE = "camt.054.001.08"
NS = iso_namespace(MESSAGE)
FAMILY = "camt.054"
RETURN_SUB_FAMILY = "RRTN"


def _bank_transaction_code(parent: Element, entry: Entry) -> None:
    issued = (entry.credit_debit == "DBIT") != entry.is_return
    domain = c.sub(c.sub(parent, "BkTxCd"), "Domn")
    c.sub(domain, "Cd", "PMNT")
    family = c.sub(domain, "Fmly")
    c.sub(family, "Cd", "ICDT" if issued else "RCDT")
    c.sub(family, "SubFmlyCd", RETURN_SUB_FAMILY if entry.is_return else "ESCT")


def _details(parent: Element, entry: Entry) -> None:
    e2e, uetrs = entry.end_to_end_ids, entry.uetrs
    count = max(len(e2e), len(uetrs), 1 if entry.return_reason is not None else 0)
    if count == 0 and entry.msg_id is None:
        return
    details = c.sub(parent, "NtryDtls")
    if count == 0:
        c.sub(c.sub(details, "Btch"), "MsgId", c.ident(str(entry.msg_id), "Btch/MsgId"))
        return
    for i in range(count):
        tx = c.sub(details, "TxDtls")
        refs = [("MsgId", entry.msg_id), ("EndToEndId", e2e[i] if i < len(e2e) else None),
                ("UETR", uetrs[i] if i < len(uetrs) else None)]
        if any(value is not None for _, value in refs):
            refs_el = c.sub(tx, "Refs")
            for name, value in refs:
                if value is not None:
                    c.sub(refs_el, name, c.ident(value, f"Refs/{name}", 36 if name == "UETR" else 35))
        if entry.return_reason is not None:
            c.reason(tx, "RtrInf", entry.return_reason)


def render_entry(parent: Element, entry: Entry) -> Element:
    """Append `entry` as a Ntry to `parent` (a camt.053 Stmt or camt.054 Ntfctn)."""
    if entry.return_reason is not None and not entry.is_return:
        raise MessageBuildError("an entry with a return_reason must have is_return set")
    el = c.sub(parent, "Ntry")
    if entry.entry_ref is not None:
        c.sub(el, "NtryRef", c.ident(entry.entry_ref, "NtryRef"))
    c.sub(el, "Amt", c.amount(entry.amount_minor, entry.currency, "Ntry/Amt"), Ccy=entry.currency)
    c.sub(el, "CdtDbtInd", entry.credit_debit)
    c.sub(c.sub(el, "Sts"), "Cd", entry.status)
    c.sub(c.sub(el, "BookgDt"), "Dt", entry.booking_date.isoformat())
    c.sub(c.sub(el, "ValDt"), "Dt", entry.value_date.isoformat())
    if entry.acct_svcr_ref is not None:
        c.sub(el, "AcctSvcrRef", c.ident(entry.acct_svcr_ref, "AcctSvcrRef"))
    _bank_transaction_code(el, entry)
    _details(el, entry)
    return el


def parse_entry(el: Element) -> Entry:
    """One Ntry element (camt.053 or camt.054, V02-V10) as an Entry."""
    amount_minor, currency = c.parse_amount(c.find(el, "Amt"), "Ntry/Amt")
    booking = c.date_choice(el, "BookgDt")
    value = c.date_choice(el, "ValDt")
    if booking is None and value is None:
        raise MessageRefusedError("missing_element", "Ntry has neither BookgDt nor ValDt")
    txs = c.findall(el, "NtryDtls/TxDtls")
    refs = [r for r in (c.find(tx, "Refs") for tx in txs) if r is not None]
    reasons = [c.parse_reason(r) for tx in txs for r in c.findall(tx, "RtrInf")]
    msg_id = c.optional(el, "NtryDtls/Btch/MsgId") or next(
        filter(None, (c.optional(r, "MsgId") for r in refs)), None)
    return c.build(
        Entry, "Ntry",
        entry_ref=c.optional(el, "NtryRef"),
        acct_svcr_ref=c.optional(el, "AcctSvcrRef"),
        amount_minor=amount_minor,
        currency=currency,
        credit_debit=c.required(el, "CdtDbtInd"),
        status=c.optional(el, "Sts/Cd") or c.optional(el, "Sts/Prtry") or c.required(el, "Sts"),
        booking_date=booking or value,
        value_date=value or booking,
        end_to_end_ids=tuple(filter(None, (c.optional(r, "EndToEndId") for r in refs))),
        uetrs=tuple(filter(None, (c.optional(r, "UETR") for r in refs))),
        msg_id=msg_id,
        is_return=bool(reasons) or c.optional(el, "BkTxCd/Domn/Fmly/SubFmlyCd") == RETURN_SUB_FAMILY,
        return_reason=next(filter(None, reasons), None),
    )


def render_camt054(notification: Notification) -> bytes:
    """The notification as a camt.054.001.08 Document: UTF-8, deterministic, XSD-valid.

    Ntfctn/CreDtTm repeats GrpHdr/CreDtTm. Raises MessageBuildError (over-long id,
    unknown currency, naive datetime) and SchemaValidationError (e.g. a malformed IBAN).
    """
    root, msg = c.document(NS, "BkToCstmrDbtCdtNtfctn")
    hdr = c.sub(msg, "GrpHdr")
    c.sub(hdr, "MsgId", c.ident(notification.msg_id, "MsgId"))
    created = c.iso_datetime(notification.created_at, "created_at")
    c.sub(hdr, "CreDtTm", created)
    ntfctn = c.sub(msg, "Ntfctn")
    c.sub(ntfctn, "Id", c.ident(notification.notification_id, "Ntfctn/Id"))
    c.sub(ntfctn, "CreDtTm", created)
    acct = c.sub(ntfctn, "Acct")
    c.account_id(acct, notification.account_id)
    c.sub(acct, "Ccy", notification.account_currency)
    for entry in notification.entries:
        render_entry(ntfctn, entry)
    data = c.serialize(root)
    xsd.validate(data, MESSAGE)
    return data


def _notification(el: Element, msg_id: str, created_at: datetime) -> Notification:
    entries = tuple(parse_entry(ntry) for ntry in c.findall(el, "Ntry"))
    acct = c.find(el, "Acct")
    if acct is None:
        raise MessageRefusedError("missing_element", "Ntfctn/Acct is missing")
    currency = c.optional(acct, "Ccy") or (entries[0].currency if entries else None)
    if currency is None:
        raise MessageRefusedError("missing_element", "Ntfctn/Acct/Ccy is missing (and no entries)")
    return c.build(
        Notification, "Ntfctn",
        msg_id=msg_id, created_at=created_at, notification_id=c.required(el, "Id"),
        account_id=c.parse_account_id(acct), account_currency=currency, entries=entries,
    )


def parse_camt054_all(data: bytes, *, validate_schema: bool = False) -> list[Notification]:
    """Every Ntfctn of a camt.054.001.02-.10 as a Notification (created_at from GrpHdr).

    Acct/Ccy is optional in the XSD; without it the first entry's currency is used.
    """
    msg, msg_id, created_at = c.open_message(data, FAMILY, "BkToCstmrDbtCdtNtfctn",
                                             validate_schema=validate_schema)
    notifications = c.findall(msg, "Ntfctn")
    if not notifications:
        raise MessageRefusedError("missing_element", "BkToCstmrDbtCdtNtfctn/Ntfctn is missing")
    return [_notification(n, msg_id, created_at) for n in notifications]


def parse_camt054(data: bytes, *, validate_schema: bool = False) -> Notification:
    """The first Ntfctn of a camt.054 (see `parse_camt054_all`)."""
    return parse_camt054_all(data, validate_schema=validate_schema)[0]


_LOCAL: dict[object, str] = {}
_DAYS: dict[str, date] = {}


def _name(el: Element) -> str:
    """Local name, memoised per tag (a statement repeats two dozen tags a million times)."""
    tag = el.tag
    found = _LOCAL.get(tag)
    if found is None:
        found = local_name(el) or ""
        if len(_LOCAL) < 1024:
            _LOCAL[tag] = found
    return found


def _day(el: Element, where: str) -> date | None:
    """A DateAndDateTime2Choice (Dt, or DtTm's date); dates repeat a lot, so memoised."""
    for sub in el:
        name = _LOCAL.get(sub.tag) or _name(sub)
        if name != "Dt" and name != "DtTm":
            continue
        text = (sub.text or "").strip()
        if not text:
            continue
        found = _DAYS.get(text)
        if found is None:
            found = (c.parse_datetime(text, f"{where}/DtTm").date() if "T" in text
                     else c.parse_date(text, f"{where}/Dt"))
            if len(_DAYS) < 4096:
                _DAYS[text] = found
        return found
    return None


def _code(el: Element, first: str, second: str) -> str | None:
    """Stripped text of child `first`, else of child `second`, else None."""
    other = None
    for sub in el:
        name = _LOCAL.get(sub.tag) or _name(sub)
        if name in (first, second):
            text = (sub.text or "").strip()
            if text:
                if name == first:
                    return text
                other = other or text
    return other


def _is_return_code(bk_tx_cd: Element) -> bool:
    for domain in bk_tx_cd:
        if (_LOCAL.get(domain.tag) or _name(domain)) == "Domn":
            for family in domain:
                if (_LOCAL.get(family.tag) or _name(family)) == "Fmly":
                    return _code(family, "SubFmlyCd", "SubFmlyCd") == RETURN_SUB_FAMILY
    return False


def _read_details(el: Element, e2e: list[str], uetrs: list[str]) -> tuple[str | None, str | None, bool]:
    """NtryDtls: (Btch/MsgId, the first Refs/MsgId, a RtrInf with a reason seen)."""
    names = _LOCAL
    batch_msg = refs_msg = None
    is_return = False
    for part in el:
        part_name = names.get(part.tag) or _name(part)
        if part_name == "Btch" and batch_msg is None:
            batch_msg = _code(part, "MsgId", "MsgId")
            if batch_msg is not None:
                c.checked_text(batch_msg, "Btch/MsgId")
        elif part_name == "TxDtls":
            for item in part:
                item_name = names.get(item.tag) or _name(item)
                if item_name == "Refs":
                    for r in item:
                        ref_name = names.get(r.tag) or _name(r)
                        if ref_name == "EndToEndId" or ref_name == "UETR" or ref_name == "MsgId":
                            text = c.checked_text((r.text or "").strip(), f"Refs/{ref_name}")
                            if not text:
                                continue
                            if ref_name == "EndToEndId":
                                e2e.append(text)
                            elif ref_name == "UETR":
                                uetrs.append(text)
                            elif refs_msg is None:
                                refs_msg = text
                elif item_name == "RtrInf" and c.parse_reason(item) is not None:
                    is_return = True
    return batch_msg, refs_msg, is_return


def parse_entry_line(el: Element) -> BookedLine:
    """One Ntry as a slim BookedLine: what `parse_entry` reads, ~5x faster (one walk).

    Same version tolerance and refusals as `parse_entry` (a property test holds them equal),
    for reconciliation's million-entry statements.
    """
    names = _LOCAL
    amount: tuple[int, str] | None = None
    cdt_dbt = status = acct_ref = batch_msg = refs_msg = None
    booking = value = None
    e2e: list[str] = []
    uetrs: list[str] = []
    is_return = False
    for child in el:
        name = names.get(child.tag) or _name(child)
        if name == "Amt":
            amount = c.parse_amount(child, "Ntry/Amt")
        elif name == "CdtDbtInd":
            cdt_dbt = (child.text or "").strip()
        elif name == "Sts":
            status = _code(child, "Cd", "Prtry") or (child.text or "").strip() or None
        elif name == "BookgDt":
            booking = _day(child, "BookgDt")
        elif name == "ValDt":
            value = _day(child, "ValDt")
        elif name == "AcctSvcrRef":
            acct_ref = c.checked_text((child.text or "").strip(), "AcctSvcrRef") or None
        elif name == "BkTxCd":
            is_return = is_return or _is_return_code(child)
        elif name == "NtryDtls":
            batch_msg, refs_msg, returned = _read_details(child, e2e, uetrs)
            is_return = is_return or returned
    if amount is None:
        raise MessageRefusedError("missing_element", "Ntry/Amt is missing")
    if cdt_dbt not in ("CRDT", "DBIT"):
        raise MessageRefusedError("bad_value", f"Ntry/CdtDbtInd is not CRDT or DBIT: {cdt_dbt!r}")
    if status not in ("BOOK", "PDNG", "INFO"):
        raise MessageRefusedError("bad_value", f"Ntry/Sts is not BOOK, PDNG or INFO: {status!r}")
    booked = booking if booking is not None else value
    valued = value if value is not None else booking
    if booked is None or valued is None:
        raise MessageRefusedError("missing_element", "Ntry has neither BookgDt nor ValDt")
    return BookedLine(acct_ref, amount[0], amount[1], cdt_dbt, status, booked, valued,
                      tuple(e2e), tuple(uetrs), batch_msg or refs_msg, is_return)
