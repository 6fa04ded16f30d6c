"""Bank: one simulated bank's behaviour, independent of HTTP (unit-testable as is).

It takes a pacs.008, answers a pacs.002 and records everything in its BankStore; the
clock-driven part (settlement, returns, statements) lives in booking.py and statements.py.
One re-entrant lock serialises all of a bank's work: the mock favours obvious over fast.
"""

from __future__ import annotations

import json
import random
import threading
from datetime import datetime, timedelta
from typing import Any, cast

import structlog

from settlement.bank.mockbank import booking, emit
from settlement.bank.mockbank.clock import Clock
from settlement.bank.mockbank.config import BankConfig, FaultProfile
from settlement.bank.mockbank.decisions import Decision, TxInput, decide_batch
from settlement.bank.mockbank.store import BankStore, Row, ts
from settlement.domain.bank_messages import (
    Notification,
    PaymentReturn,
    Statement,
    StatusReport,
    TxStatus,
    TxStatusReport,
)
from settlement.iso20022 import xsd
from settlement.iso20022.errors import MessageRefusedError
from settlement.iso20022.pacs008 import MESSAGE as PACS008
from settlement.iso20022.pacs008 import Pacs008Summary, parse_pacs008_summary
from settlement.iso20022.xml import Element, findall_local, parse_secure, text_local

log = structlog.get_logger(__name__)
Emitted = dict[str, Any]  # {"cursor", "type", "msg_id"}
STATEMENT_FAULTS = frozenset({"missing_entry", "altered_amount", "duplicated_entry", "unexpected_entry",
                              "next_day_booking", "skip_statement"})


class BankError(ValueError):
    """A bad admin request (unknown account, unknown fault); the HTTP layer answers 400."""


class Bank:
    def __init__(self, config: BankConfig, store: BankStore, clock: Clock) -> None:
        self.config, self.store, self.clock = config, store, clock
        self.lock = threading.RLock()
        with store.transaction():
            for p in config.processor_accounts:
                store.ensure_account(p.id, "processor", p.currency, p.balance_minor)
                if store.statement_state(p.id) is None:
                    store.save_statement_state(p.id, 0, p.balance_minor, "")
            for a in config.accounts:
                store.ensure_account(a.id, "merchant", a.currency, a.balance_minor, a.closed, a.blocked)
            if store.meta("eod_done") is None:
                today = clock.now().astimezone(config.zone).date()
                store.set_meta("eod_done", (today - timedelta(days=1)).isoformat())
        saved = store.meta("faults")
        self._faults = FaultProfile.model_validate_json(saved) if saved else config.faults
        self._transport_rng = random.Random(f"transport:{self._faults.seed}")

    @property
    def bic(self) -> str:
        return self.config.bic

    # --- faults --------------------------------------------------------------------------

    @property
    def faults(self) -> FaultProfile:
        return self._faults

    def update_faults(self, patch: dict[str, Any]) -> FaultProfile:
        """Partial update of the fault profile; persisted, so it survives a restart."""
        with self.lock:
            self._faults = FaultProfile.model_validate({**self._faults.model_dump(), **patch})
            self.store.set_meta("faults", self._faults.model_dump_json())
            return self._faults

    def transport_draw(self) -> tuple[float, str]:
        """(latency seconds, "ok" | "5xx" | "timeout" | "drop") for one pacs.008 request."""
        f = self._faults
        with self.lock:
            latency = self._transport_rng.uniform(*f.latency_ms) / 1000
            roll = self._transport_rng.random()
        for action, rate in (("5xx", f.error_5xx_rate), ("timeout", f.timeout_rate), ("drop", f.drop_rate)):
            if roll < rate:
                return latency, action
            roll -= rate
        return latency, "ok"

    # --- emitting ------------------------------------------------------------------------

    def new_msg_id(self, kind: str) -> str:
        return f"{kind}{self.bic[:8]}{self.store.next_seq('msg'):012d}"

    def emit(self, model: StatusReport | PaymentReturn | Notification | Statement,
             at: datetime) -> tuple[Emitted, bytes]:
        """Render (XSD-validated) and append to the outbox: (what was emitted, the XML)."""
        msg_type, xml = emit.render(model)
        cursor = self.store.append_outbox(msg_type, model.msg_id, xml, at)
        return {"bic": self.bic, "cursor": cursor, "type": msg_type, "msg_id": model.msg_id}, xml

    def outbox(self, after: int, limit: int) -> tuple[list[Row], int]:
        self.process_due(self.clock.now())
        rows = self.store.outbox(after, limit)
        return rows, (rows[-1]["cursor"] if rows else after)

    def process_due(self, until: datetime) -> list[Emitted]:
        with self.lock:
            return booking.process_due(self, until)

    # --- intake --------------------------------------------------------------------------

    def receive_pacs008(self, body: bytes) -> bytes:
        """The pacs.002 answer to one pacs.008 (always a pacs.002, never an exception for bad input)."""
        with self.lock:
            now = self.clock.now()
            booking.process_due(self, now)
            root: Element | None = None
            try:
                root = parse_secure(body)
                xsd.validate(root, PACS008)
                summary = parse_pacs008_summary(body)
            except MessageRefusedError as exc:
                orgnl = text_local(root, "FIToFICstmrCdtTrf/GrpHdr/MsgId") if root is not None else None
                return self._group_reject(orgnl or "UNKNOWN", "FF01", now, exc.detail)
            group_error = _group_check(summary)
            if group_error is not None:
                return self._group_reject(summary.msg_id, group_error, now, None)
            known = self.store.message(summary.msg_id)
            if known is not None:
                self.store.count_resend(summary.msg_id)
                if self._faults.duplicate_msgid == "repeat":
                    return bytes(known["answer"])
                return self._group_reject(summary.msg_id, "DU01", now, "duplicate MsgId")
            answer = self._accept(summary, _debtor_account(root), now)
            booking.process_due(self, now)
            return answer

    def _group_reject(self, orgnl_msg_id: str, reason: str, now: datetime, text: str | None) -> bytes:
        report = StatusReport(msg_id=self.new_msg_id("STS"), created_at=now, orgnl_msg_id=orgnl_msg_id[:35],
                              group_status="RJCT", group_reason=reason)
        log.info("mockbank.group_rejected", bic=self.bic, orgnl_msg_id=orgnl_msg_id, reason=reason,
                 detail=text)
        return self.emit(report, now)[1]

    def _processor_account(self, debtor_account: str | None, currency: str) -> str | None:
        ids = {p.id: p.currency for p in self.config.processor_accounts}
        if debtor_account in ids and ids[debtor_account] == currency:
            return debtor_account
        return next((i for i, c in ids.items() if c == currency), None)

    def _accept(self, summary: Pacs008Summary, debtor_account: str | None, now: datetime) -> bytes:
        processor = self._processor_account(debtor_account, summary.currency)
        available = None
        if processor is not None:
            row = self.store.account(processor)
            available = int(row["balance_minor"] if row else 0) - self.store.reserved(processor)
        txs = [TxInput(t.end_to_end_id, t.amount_minor, t.creditor_bic, t.creditor_account)
               for t in summary.transactions]
        decisions = decide_batch(
            txs, bank_bic=self.bic, msg_id=summary.msg_id, currency=summary.currency, faults=self._faults,
            lookup=self.store.account, accept_unknown=self.config.accept_unknown_accounts,
            already_accepted=self.store.is_accepted, available_minor=available)
        due = max(booking.booking_instant(self, summary.settlement_date), now)
        with self.store.transaction():
            for i, (tx, d) in enumerate(zip(summary.transactions, decisions, strict=True)):
                if d.opens_account and tx.creditor_account:
                    self.store.ensure_account(tx.creditor_account, "merchant", summary.currency, 0)
                self.store.add_transaction({
                    "msg_id": summary.msg_id, "tx_index": i, "end_to_end_id": tx.end_to_end_id,
                    "instr_id": tx.instr_id, "uetr": tx.uetr, "amount_minor": tx.amount_minor,
                    "currency": summary.currency, "creditor_account": tx.creditor_account,
                    "creditor_bic": tx.creditor_bic, "processor_account": processor,
                    "settlement_date": summary.settlement_date.isoformat(), "decision": d.status,
                    "reason": d.reason, "return_reason": d.return_reason,
                    "settle_due_at": ts(due) if d.status == "ACSP" else None})
            report = StatusReport(
                msg_id=self.new_msg_id("STS"), created_at=now, orgnl_msg_id=summary.msg_id,
                group_status=cast(TxStatus | None, _group_status(decisions)),
                transactions=tuple(
                    TxStatusReport(orgnl_end_to_end_id=t.end_to_end_id, orgnl_uetr=t.uetr,
                                   orgnl_instr_id=t.instr_id, status=cast(TxStatus, d.status),
                                   reason=d.reason)
                    for t, d in zip(summary.transactions, decisions, strict=True)))
            _, xml = emit.render(report)
            self.store.append_outbox(emit.PACS002, report.msg_id, xml, now)
            self.store.add_message(summary.msg_id, now, xml, len(decisions))
        return xml

    # --- admin ---------------------------------------------------------------------------

    def add_statement_fault(self, account: str, fault: str, params: dict[str, Any]) -> int:
        if fault not in STATEMENT_FAULTS:
            raise BankError(f"unknown statement fault {fault!r}; one of {sorted(STATEMENT_FAULTS)}")
        if account not in {p.id for p in self.config.processor_accounts}:
            raise BankError("statements are produced for processor accounts only")
        return self.store.add_fault(account, fault, json.dumps(params, sort_keys=True))

    def transactions(self) -> list[Row]:
        return [{k: r[k] for k in ("msg_id", "end_to_end_id", "uetr", "amount_minor", "currency",
                                   "creditor_account", "decision", "reason", "settled_at",
                                   "credited_count")} | {"returned": r["returned_at"] is not None,
                                                         "return_due_at": r["return_due_at"]}
                for r in self.store.transactions()]

    def accounts(self) -> list[Row]:
        return [{k: r[k] for k in ("id", "kind", "currency", "balance_minor")}
                | {"closed": bool(r["closed"]), "blocked": bool(r["blocked"])} for r in self.store.accounts()]


def _debtor_account(root: Element) -> str | None:
    for tx in findall_local(root, "FIToFICstmrCdtTrf/CdtTrfTxInf"):
        return text_local(tx, "DbtrAcct/Id/IBAN") or text_local(tx, "DbtrAcct/Id/Othr/Id")
    return None


def _group_check(summary: Pacs008Summary) -> str | None:
    """AM18 wrong NbOfTxs, AM10 wrong CtrlSum (or TtlIntrBkSttlmAmt)."""
    if summary.nb_of_txs != len(summary.transactions):
        return "AM18"
    total = sum(t.amount_minor for t in summary.transactions)
    if total != summary.ctrl_sum_minor or total != summary.total_minor:
        return "AM10"
    return None


def _group_status(decisions: list[Decision]) -> str | None:
    statuses = {d.status for d in decisions}
    return statuses.pop() if len(statuses) == 1 else None

