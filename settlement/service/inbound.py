"""The inbound stage: the banks' answers applied to one payout state machine (I5).

Each bank message is parsed with the hardened parser (by local names, so
neighbouring versions parse), applied once per bank MsgId, and correlated by
OrgnlEndToEndId (transactions) or OrgnlMsgId (group status). A transition is
a guarded LWT from the payout's current status; what the state machine does
not allow (out of order, impossible, unknown payout) is parked with its
reason, never applied and never lost. Every applied transition emits a
settlement event in the same transaction as the offset.

A message's transactions are applied `concurrency` at a time: each is a read, an
LWT and a write, and one after another they waited on Cassandra's round trips.
The transactions naming one EndToEndId stay in one task, in message order, and
what they decide (events, parks, counts, logs) is taken up in message order, so
the outcome is the one the sequential loop had.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import orjson
import structlog

from settlement import metrics
from settlement.config import TopicSettings
from settlement.domain.bank_messages import Notification as BookingNotification
from settlement.domain.bank_messages import PaymentReturn, Statement, StatusReport
from settlement.domain.batch import PayoutStatus, transition
from settlement.domain.errors import InvalidTransitionError
from settlement.domain.reconciliation import ExpectedBooking, ExpectedKind
from settlement.iso20022.camt053 import parse_camt053
from settlement.iso20022.camt054 import parse_camt054
from settlement.iso20022.errors import MessageRefusedError
from settlement.iso20022.pacs002 import parse_pacs002
from settlement.iso20022.pacs004 import parse_pacs004_all
from settlement.iso20022.xml import message_type, parse_secure
from settlement.service.deadletter import header
from settlement.service.ports import (
    HandlerResult,
    InboundRecord,
    InboundStore,
    OutboundRecord,
    PayoutRef,
)

log = structlog.get_logger(__name__)
MAX_BODY = 10 * 1024 * 1024
ACCEPTED = {"ACSP", "ACCP", "ACSC", "ACTC", "ACWC"}
MAX_BANK_LABEL = 64  # a BIC is 8 or 11 characters; the label keys Cassandra partitions
DEFAULT_CONCURRENCY = 16  # transactions of one message applied at a time


def _bank_of(rec: InboundRecord) -> str:
    """The sending bank: the bank_bic header, else the record key; any bytes, never a crash."""
    label = header(rec.headers, "bank_bic") or (rec.key or b"").decode("utf-8", "replace")
    return label[:MAX_BANK_LABEL] or "?"


@dataclass
class InboundStats:
    applied: int = 0
    parked: int = 0
    duplicates: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


def run_all(pool: ThreadPoolExecutor, fn: Callable[[list[int]], None],
            tasks: Sequence[list[int]]) -> None:
    """fn(task) for every task on `pool`; returns when all are done, raising the first
    error in task order (the others have finished, so nothing runs on behind the caller)."""
    if len(tasks) <= 1:
        for task in tasks:
            fn(task)
        return
    futures = [pool.submit(fn, task) for task in tasks]
    errors = [exc for f in futures if (exc := f.exception()) is not None]
    if errors:
        raise errors[0]


@dataclass
class _Step:
    """One transaction of a message: a payout (or the EndToEndId that names one) and what
    the bank says of it. `target` None: nothing to do (PDNG), once the payout is known."""

    e2e: str | None
    payout: PayoutRef | None
    target: PayoutStatus | None
    reason: str | None = None


@dataclass
class _Decided:
    """What applying one step decided, taken up by the handler in message order."""

    applied: PayoutRef | None = None  # moved to its step's target
    park: tuple[str, str, str, PayoutRef | None] | None = None  # kind, reason, detail, payout


class InboundHandler:
    def __init__(self, store: InboundStore, topics: TopicSettings, worker_id: str,
                 concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self._store = store
        self._topics = topics
        self._worker_id = worker_id
        self.stats = InboundStats()
        self._pool = ThreadPoolExecutor(max(concurrency, 1), thread_name_prefix="inbound-apply")

    def close(self) -> None:
        """The apply threads end; the Cassandra session belongs to the worker."""
        self._pool.shutdown(wait=True)

    def assigned(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Nothing to claim: transitions are guarded per payout."""

    def tick(self, owned: Sequence[tuple[str, int]]) -> HandlerResult:
        return HandlerResult()

    def handle(self, records: Sequence[InboundRecord]) -> HandlerResult:
        result = HandlerResult()
        for rec in records:
            self._one(rec, result)
        return result

    def _one(self, rec: InboundRecord, result: HandlerResult) -> None:
        bank = _bank_of(rec)
        src = f"{rec.source.topic}/{rec.source.partition}@{rec.source.offset}"
        body = rec.value or b""
        try:
            if len(body) > MAX_BODY:
                raise MessageRefusedError("oversized", f"{len(body)} bytes > {MAX_BODY}")
            kind = message_type(parse_secure(body, max_bytes=MAX_BODY))
        except MessageRefusedError as exc:
            self._park(bank, "?", "?", f"refused_{exc.code}", exc.detail, body, src)
            return
        family = kind.rsplit(".", 2)[0]  # e.g. pacs.002
        self.stats.by_type[family] = self.stats.by_type.get(family, 0) + 1
        try:
            if family == "pacs.002":
                self._status(bank, parse_pacs002(body), body, src, result)
            elif family == "pacs.004":
                for ret in parse_pacs004_all(body):
                    self._return(bank, ret, body, src, result)
            elif family == "camt.054":
                self._booking(bank, parse_camt054(body), body, src, result)
            elif family == "camt.053":
                self._statement(bank, parse_camt053(body), body, src)
            else:
                self._park(bank, "?", kind, "unsupported_message", kind, body, src)
        except MessageRefusedError as exc:
            self._park(bank, "?", kind, f"refused_{exc.code}", exc.detail, body, src)

    # -- messages ----------------------------------------------------------

    def _first(self, bank: str, msg_id: str, kind: str, src: str) -> bool:
        seen = self._store.register(bank, msg_id, kind, src)
        if seen == "duplicate":
            self.stats.duplicates += 1
            log.info("inbound.duplicate_message", bank=bank, msg_id=msg_id, type=kind)
            return False
        return True

    def _status(self, bank: str, rpt: StatusReport, body: bytes, src: str,
                result: HandlerResult) -> None:
        if not self._first(bank, rpt.msg_id, "pacs.002", src):
            return
        if rpt.group_status == "RJCT" and rpt.group_reason == "DU01":
            # The bank refused a re-delivery of a message it already has: nothing changes.
            log.info("inbound.duplicate_refused", bank=bank, orgnl_msg_id=rpt.orgnl_msg_id)
            return
        if rpt.group_status == "RJCT" and not rpt.transactions:
            payouts = self._store.payouts_of_msg(rpt.orgnl_msg_id)
            if not payouts:
                self._park(bank, rpt.msg_id, "pacs.002", "unknown_original_message",
                           f"OrgnlMsgId {rpt.orgnl_msg_id} matches no sent batch", body, src)
            self._apply_all(bank, "pacs.002", [
                _Step(None, po, PayoutStatus.REJECTED, rpt.group_reason) for po in payouts],
                rpt.msg_id, src, body, result)
            return
        steps = []
        for tx in rpt.transactions:
            if tx.status == "RJCT":
                target: PayoutStatus | None = PayoutStatus.REJECTED
            elif tx.status in ACCEPTED:
                target = PayoutStatus.ACCEPTED
            else:
                target = None  # PDNG: nothing to do until a final status arrives
            steps.append(_Step(tx.orgnl_end_to_end_id, None, target,
                               tx.reason if tx.status == "RJCT" else None))
        self._apply_all(bank, "pacs.002", steps, rpt.msg_id, src, body, result)

    def _return(self, bank: str, ret: PaymentReturn, body: bytes, src: str,
                result: HandlerResult) -> None:
        if not self._first(bank, f"{ret.msg_id}/{ret.return_id}", "pacs.004", src):
            return
        po = self._store.payout_by_e2e(ret.orgnl_end_to_end_id)
        if po is None:
            self._park(bank, ret.msg_id, "pacs.004", "unknown_payout",
                       f"OrgnlEndToEndId {ret.orgnl_end_to_end_id} matches no payout", body, src)
            return
        if self._apply(bank, po, PayoutStatus.RETURNED, ret.msg_id, src, ret.reason, body, result):
            # reconciliation expects the money back on the return's settlement date
            self._store.save_expected_return(ExpectedBooking(
                ExpectedKind.RETURN, bank, ret.settlement_date, ret.currency,
                ret.orgnl_end_to_end_id, ret.returned_minor, ret.msg_id, po.merchant_id,
                ref=ret.return_id))

    def _booking(self, bank: str, ntf: BookingNotification, body: bytes, src: str,
                 result: HandlerResult) -> None:
        if not self._first(bank, ntf.msg_id, "camt.054", src):
            return
        steps = [_Step(e2e, None, PayoutStatus.SETTLED) for entry in ntf.entries
                 # credits to us (returns) are applied from the pacs.004
                 if entry.credit_debit == "DBIT" and entry.status == "BOOK" and not entry.is_return
                 for e2e in entry.end_to_end_ids]
        self._apply_all(bank, "camt.054", steps, ntf.msg_id, src, body, result)

    def _statement(self, bank: str, stmt: Statement, body: bytes, src: str) -> None:
        if not self._first(bank, stmt.msg_id, "camt.053", src):
            return
        self._store.save_statement(bank, stmt.account_id, stmt.to_date, stmt.statement_id,
                                   stmt.msg_id, stmt.electronic_seq_nb, body)
        log.info("inbound.statement_stored", bank=bank, statement_id=stmt.statement_id,
                 entries=len(stmt.entries))

    # -- state machine -----------------------------------------------------

    def _apply_all(self, bank: str, kind: str, steps: Sequence[_Step], cause: str, src: str,
                   body: bytes, result: HandlerResult) -> None:
        """Apply a message's steps `concurrency` at a time; take up their decisions in order."""
        by_e2e: dict[str, list[int]] = {}
        tasks: list[list[int]] = []
        for i, step in enumerate(steps):
            if step.e2e is None:
                tasks.append([i])
            elif step.e2e in by_e2e:
                by_e2e[step.e2e].append(i)  # the same payout again: after it, in its task
            else:
                by_e2e[step.e2e] = [i]
                tasks.append(by_e2e[step.e2e])
        decided: dict[int, _Decided] = {}

        def run(task: list[int]) -> None:
            for i in task:
                decided[i] = self._decide(kind, steps[i], cause, src)

        run_all(self._pool, run, tasks)
        for i, step in enumerate(steps):
            d = decided[i]
            if d.park is not None:
                self._park(bank, cause, *d.park[:3], body, src, d.park[3])
            elif d.applied is not None and step.target is not None:
                self._applied(bank, d.applied, step.target, cause, step.reason, result)

    def _decide(self, kind: str, step: _Step, cause: str, src: str) -> _Decided:
        """Look the payout up and move it: on an apply thread, so it only reads and writes
        the store and returns what it decided."""
        po = step.payout
        if po is None:
            assert step.e2e is not None
            po = self._store.payout_by_e2e(step.e2e)
            if po is None:
                what = "booking for EndToEndId" if kind == "camt.054" else "OrgnlEndToEndId"
                return _Decided(park=(kind, "unknown_payout",
                                      f"{what} {step.e2e} matches no payout", None))
        if step.target is None:
            return _Decided()
        return self._move(po, step.target, cause, src, step.reason)

    def _move(self, po: PayoutRef, target: PayoutStatus, cause: str, src: str,
              reason: str | None) -> _Decided:
        """Move `po` to `target` (`applied`), or say why not (`park`): never both, never lost."""
        try:
            transition(PayoutStatus(po.status), target)
        except InvalidTransitionError as exc:
            if po.status != target.value:
                return _Decided(park=(target.value, "invalid_transition",
                                      f"payout {po.payout_id}: {exc}", po))
        outcome = self._store.transition(po, target.value, cause, src, reason)
        if outcome not in ("applied", "replay"):
            if outcome != target.value:
                return _Decided(park=(target.value, "invalid_transition",
                                      f"payout {po.payout_id} is {outcome}, cannot become "
                                      f"{target.value}", po))
            return _Decided()
        return _Decided(applied=po)

    def _apply(self, bank: str, po: PayoutRef, target: PayoutStatus, cause: str, src: str,
               reason: str | None, body: bytes, result: HandlerResult) -> bool:
        """Move `po` to `target` (True), or park the message (False), on this thread."""
        d = self._move(po, target, cause, src, reason)
        if d.park is not None:
            self._park(bank, cause, *d.park[:3], body, src, po)
            return False
        if d.applied is None:
            return False
        self._applied(bank, po, target, cause, reason, result)
        return True

    def _applied(self, bank: str, po: PayoutRef, target: PayoutStatus, cause: str,
                 reason: str | None, result: HandlerResult) -> None:
        self.stats.applied += 1
        event_type = f"payout.{target.value}"
        event = {"type": event_type, "payout_id": po.payout_id,
                 "merchant_id": po.merchant_id, "amount_minor": po.amount_minor,
                 "currency": po.currency, "reason": reason, "bank_bic": bank,
                 "bank_msg_id": cause}
        result.outputs.append(OutboundRecord(
            topic=self._topics.events, key=po.payout_id.encode(), value=orjson.dumps(event),
            headers=[("type", event_type.encode())]))
        log.info("payout.transition", payout_id=po.payout_id, batch_id=po.batch_id,
                 status=target.value, reason=reason, bank=bank, bank_msg_id=cause)

    def _park(self, bank: str, msg_id: str, kind: str, reason: str, detail: str, body: bytes,
              src: str, payout: PayoutRef | None = None) -> None:
        self.stats.parked += 1
        self._store.park(bank, msg_id, kind, reason, detail[:2000], body, src)
        metrics.parked("inbound", reason)
        log.warning("inbound.parked", bank=bank, msg_id=msg_id, type=kind, reason=reason,
                    payout_id=payout.payout_id if payout else None,
                    batch_id=payout.batch_id if payout else None, src=src, detail=detail[:300])
