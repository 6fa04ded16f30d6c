"""The batcher stage: payments into payouts, payouts into batches, batches into pacs.008.

Items arrive keyed by bank and currency, so one worker owns every batch of a
bank+currency. Sealing is driven through the log itself: when a batch's
cutoff (plus grace) has passed, the owner appends a *seal command* to the
batch's own items partition. Items before the command are in the batch; items
after it are late and go to the next window. Consuming the command seals the
batch and publishes its pacs.008 in the same transaction as the command's
offset, so the message is published exactly once, and a replay after a crash
makes the same decisions in the same order.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Protocol

import orjson
import structlog
from pydantic import ValidationError

from settlement import metrics
from settlement.config import BatcherSettings, ProcessorSettings, TopicSettings
from settlement.domain.batch import (
    Party,
    PayoutTx,
    SealedBatch,
    batch_id_for,
    payout_id_for,
    retry_row_id,
    shard_of,
    short_id,
    transaction_ids,
)
from settlement.domain.calendar import PayoutWindow
from settlement.domain.errors import RetryableError, SettlementError
from settlement.domain.payment import SettlementItem
from settlement.domain.reconciliation import ExpectedBooking, ExpectedKind
from settlement.iso20022.errors import MessageRefusedError
from settlement.iso20022.pacs008 import parse_pacs008_summary
from settlement.service.deadletter import dead_letter, header
from settlement.service.killpoints import kill_point
from settlement.service.ports import (
    AddOutcome,
    BatchHeader,
    BatchRow,
    BatchStore,
    HandlerResult,
    InboundRecord,
    MerchantDirectory,
    OutboundRecord,
)

log = structlog.get_logger(__name__)
MAX_LATE_HOPS = 64  # a payment later than this many sealed windows is a bug, not a case
WARM_LEAD_S = 0.5  # merchant accounts load this long (+ one check interval) before a seal
UNWRITTEN_OVERDUE_S = 60.0  # a sealed batch's payout rows not written by then: the tick does


def _log_warm_failure(done: Future[None]) -> None:
    """A merchant-account load ahead of a seal failed: said now, not only when the seal
    that needs the accounts runs into it."""
    if not done.cancelled() and (exc := done.exception()) is not None:
        log.warning("batcher.merchant_prewarm_failed", error=f"{type(exc).__name__}: {exc}"[:300])


class BatchOwnershipLostError(RetryableError):
    """Another worker holds a newer epoch for this items partition (we are a zombie)."""


class BatchTooLargeError(SettlementError):
    """A sealed batch's pacs.008 is over the size one message may have (the limit our own
    parser and the banks' endpoints take): its payouts are marked unsent, not sent."""


class Calendars(Protocol):
    """What the batcher needs from the bank calendars."""

    def window_of(self, bic: str, captured_at: datetime) -> PayoutWindow: ...
    def next_window(self, bic: str, window: PayoutWindow) -> PayoutWindow: ...
    def shards(self, bic: str) -> int: ...


@dataclass
class BatcherStats:
    items: int = 0
    late: int = 0
    sealed: int = 0
    published: int = 0
    duplicate_commands: int = 0
    dead_letters: int = 0


@dataclass
class _Target:
    item: SettlementItem
    partition: int
    window: PayoutWindow
    late: bool = False
    payout_id: str = ""
    batch_id: str = ""
    retry_of: str | None = None  # a new attempt of this existing payout
    attempt: int = 1


def _waves(by_part: dict[int, list[_Target]]) -> list[dict[int, list[_Target]]]:
    """The partitions, in groups whose batches are disjoint, to be placed one group at a
    time. A batch belongs to one items partition (its bank and currency are the key), so
    this is one group, unless the topic's partition count changed under a window."""
    waves: list[tuple[dict[int, list[_Target]], set[str]]] = []
    for partition, group in by_part.items():
        ids = {t.batch_id for t in group}
        for wave, taken in waves:
            if not ids & taken:
                wave[partition] = group
                taken |= ids
                break
        else:
            waves.append(({partition: group}, ids))
    return [wave for wave, _ in waves]


@dataclass
class _Owned:
    epoch: int
    batches: dict[str, BatchHeader] = field(default_factory=dict)
    commanded: set[str] = field(default_factory=set)


@dataclass
class _Unwritten:
    """A sealed batch's payout rows, to be written once its pacs.008 is published."""

    payouts: list[tuple[object, ...]]
    retried: list[tuple[object, ...]]
    due: bool = False  # the tick may write them: the seal's transaction was not committed
    since: float = field(default_factory=time.monotonic)

    def overdue(self) -> bool:
        """Due, or waiting longer than any commit takes (the seal's result was lost with
        an error later in the same poll, and its replay went to another worker)."""
        return self.due or time.monotonic() - self.since > UNWRITTEN_OVERDUE_S


@dataclass(frozen=True, slots=True)
class _Payout:
    """One payout of a sealed batch: its payments netted, its attempt's ids."""

    payout_id: str
    merchant_id: str
    gross: int
    fee: int
    payments: int
    late: int
    attempt: int
    instr_id: str
    end_to_end_id: str
    uetr: str

    @property
    def net(self) -> int:
        return self.gross - self.fee


def _payouts_of(rows: Sequence[BatchRow]) -> list[_Payout]:
    by_payout: dict[str, list[BatchRow]] = defaultdict(list)
    for r in rows:
        by_payout[r.payout_id].append(r)
    out = []
    for payout_id in sorted(by_payout):
        group = by_payout[payout_id]
        attempt = max(r.attempt for r in group)
        instr, e2e, uetr = transaction_ids(payout_id, attempt)
        out.append(_Payout(payout_id, group[0].merchant_id, sum(r.amount_minor for r in group),
                           sum(r.fee_minor for r in group), len(group),
                           sum(r.late for r in group), attempt, instr, e2e, uetr))
    return out


def _unsent_status(p: _Payout) -> str:
    return "nothing_to_pay" if p.net == 0 else "no_payout_account"


Renderer = Callable[[SealedBatch, Party, str, str], bytes]


class BatcherHandler:
    def __init__(self, store: BatchStore, merchants: MerchantDirectory, calendars: Calendars,
                 topics: TopicSettings, settings: BatcherSettings, processor: ProcessorSettings,
                 render: Renderer, worker_id: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._merchants = merchants
        self._cal = calendars
        self._topics = topics
        self._settings = settings
        self._processor = processor
        self._render = render
        self._worker_id = worker_id
        self._clock = clock
        self._owned: dict[int, _Owned] = {}
        self._fresh: set[int] = set()  # assigned, ownership not yet claimed
        self._known: set[str] = set()  # batch ids whose header exists
        # A seal's Cassandra work off the loop's thread: the merchant accounts' load (ahead
        # of the seal, and beside the rows' read).
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seal-io")
        self._warming: Future[None] | None = None
        # Sealed batches whose payout rows are still to be written (after the commit that
        # published their pacs.008), with the rows when this worker sealed them, or None
        # when found marked pending (a new owner after a crash): the tick writes those.
        self._unwritten: dict[str, _Unwritten | None] = {}
        self.stats = BatcherStats()

    # -- ownership ---------------------------------------------------------

    def close(self) -> None:
        """The seal's thread; the Cassandra session belongs to the worker."""
        self._io.shutdown(wait=True)

    def assigned(self, partitions: Sequence[tuple[str, int]]) -> None:
        for topic, p in partitions:
            if topic == self._topics.items:
                self._owned.pop(p, None)
                self._fresh.add(p)

    def _own(self, partition: int) -> _Owned:
        owned = self._owned.get(partition)
        if owned is None or partition in self._fresh:
            epoch = self._store.claim(self._topics.items, partition, self._worker_id)
            owned = _Owned(epoch)
            for batch_id, status, _cutoff in self._store.batches_of(self._topics.items, partition):
                if status == "open":
                    found = self._store.header(batch_id)
                    if found is not None and found[1].status == "open":
                        owned.batches[batch_id] = found[0]
            pending = self._store.pending_of(self._topics.items, partition)
            for batch_id in pending:
                self._unwritten.setdefault(batch_id, None)
            self._owned[partition] = owned
            self._fresh.discard(partition)
            log.info("batcher.partition_claimed", partition=partition, epoch=epoch,
                     open_batches=len(owned.batches), payouts_pending=len(pending))
        return owned

    # -- records -----------------------------------------------------------

    def handle(self, records: Sequence[InboundRecord]) -> HandlerResult:
        result = HandlerResult()
        pending: list[_Target] = []
        for rec in records:
            if header(rec.headers, "kind") == "seal":
                self._place(pending)
                pending = []
                self._seal(rec, result)
                continue
            if header(rec.headers, "kind") == "retry":
                target = self._retry_target(rec, result)
                if target is not None:
                    pending.append(target)
                continue
            try:
                item = SettlementItem.model_validate_json(rec.value or b"")
            except ValidationError as exc:
                self._dead_letter(rec, result, "invalid_item", str(exc)[:500], "ValidationError")
                continue
            window = self._cal.window_of(item.bank_bic, item.captured_at)
            pending.append(_Target(item, rec.source.partition, window))
        self._place(pending)
        return result

    def _place(self, targets: list[_Target]) -> None:
        """Put each payment into its payout's batch; a sealed batch sends it one window on."""
        self.stats.items += len(targets)
        for _hop in range(MAX_LATE_HOPS):
            if not targets:
                return
            by_part: dict[int, list[_Target]] = defaultdict(list)
            for t in targets:
                self._address(t)
                by_part[t.partition].append(t)
            targets = []
            for wave in _waves(by_part):
                targets.extend(self._place_in_partitions(wave))
        raise RetryableError(f"{len(targets)} payments still unplaced after {MAX_LATE_HOPS} windows")

    def _retry_target(self, rec: InboundRecord, result: HandlerResult) -> _Target | None:
        """An operator's retry of a rejected payout: one row for the whole payout, placed in
        the window open now (the payments themselves stay where they were)."""
        try:
            cmd = orjson.loads(rec.value or b"{}")
            attempt = int(cmd["attempt"])
            item = SettlementItem(
                payment_id=retry_row_id(attempt), event_id=f"retry-{cmd['payout_id']}",
                merchant_id=cmd["merchant_id"], amount_minor=int(cmd["amount_minor"]),
                fee_minor=0, currency=cmd["currency"], captured_at=self._clock(),
                bank_bic=cmd["bank_bic"], payout_mode="payment")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self._dead_letter(rec, result, "invalid_retry_command", repr(exc)[:500],
                              type(exc).__name__)
            return None
        window = self._cal.window_of(item.bank_bic, item.captured_at)
        log.info("batcher.retry_requested", payout_id=cmd["payout_id"], attempt=attempt)
        return _Target(item, rec.source.partition, window, retry_of=str(cmd["payout_id"]),
                       attempt=attempt)

    def _address(self, t: _Target) -> None:
        it = t.item
        t.payout_id = t.retry_of or payout_id_for(it.merchant_id, it.currency, t.window.window_id,
                                                  it.payment_id, it.payout_mode)
        shard = shard_of(t.payout_id, self._cal.shards(it.bank_bic))
        t.batch_id = batch_id_for(it.bank_bic, it.currency, t.window.window_id, shard)

    def _place_in_partitions(self, wave: dict[int, list[_Target]]) -> list[_Target]:
        """Place the payments of several items partitions with one round of conditional
        batches (each under its partition's epoch), not one round per partition: the
        rounds are waits on Cassandra, and a batcher owns several partitions."""
        plans: list[tuple[int, _Owned, dict[str, BatchHeader], list[_Target]]] = []
        rows: dict[str, list[BatchRow]] = defaultdict(list)
        epochs: dict[str, int] = {}
        for partition, group in wave.items():
            owned = self._own(partition)
            headers: dict[str, BatchHeader] = {}
            for t in group:
                if t.batch_id not in headers:
                    headers[t.batch_id] = BatchHeader(
                        t.batch_id, t.item.bank_bic, t.item.currency, t.window.window_id,
                        t.window.cutoff_at, t.window.settlement_date,
                        int(t.batch_id.rsplit("-", 1)[1]), self._topics.items, partition)
                    epochs[t.batch_id] = owned.epoch
                it = t.item
                rows[t.batch_id].append(BatchRow(t.payout_id, it.payment_id, it.merchant_id,
                                                 it.payout_mode, it.amount_minor, it.fee_minor,
                                                 it.captured_at, t.late, t.attempt))
            new_headers = {b: h for b, h in headers.items() if b not in self._known}
            if new_headers:
                self._store.create(list(new_headers.values()), owned.epoch)
                self._known.update(new_headers)
            plans.append((partition, owned, headers, group))
        outcomes = self._store.add(dict(rows), epochs)
        late: list[_Target] = []
        for partition, owned, headers, group in plans:
            late.extend(self._placed(partition, owned, headers, group, outcomes))
        return late

    def _placed(self, partition: int, owned: _Owned, headers: dict[str, BatchHeader],
                group: list[_Target], outcomes: dict[str, AddOutcome]) -> list[_Target]:
        """One partition's outcomes: its open batches noted, its late payments one window on."""
        late: list[_Target] = []
        sealed_ids: set[str] = set()
        for batch_id in headers:
            outcome = outcomes[batch_id]
            if outcome is AddOutcome.SEALED:
                sealed_ids.add(batch_id)
            if outcome is AddOutcome.FENCED:
                raise BatchOwnershipLostError(
                    f"batch {batch_id}: a newer owner holds items partition {partition}")
            if outcome is AddOutcome.MISSING:
                raise RetryableError(f"batch {batch_id} has no header")
            if outcome is AddOutcome.APPLIED:
                # Open and ours, so due to be sealed: also when it was created in an
                # earlier attempt whose rows failed (then it is known, but was never
                # noted; found by `settlement chaos`, seed 1213681672: never sealed).
                owned.batches.setdefault(batch_id, headers[batch_id])
        if sealed_ids:
            # Rows that made it in before the seal stay there; the rest are late.
            cands = [t for t in group if t.batch_id in sealed_ids]
            present = self._store.present([(t.batch_id, t.payout_id, t.item.payment_id)
                                           for t in cands])
            for t in cands:
                if (t.batch_id, t.payout_id, t.item.payment_id) not in present:
                    t.window = self._cal.next_window(t.item.bank_bic, t.window)
                    t.late = True
                    late.append(t)
                    self.stats.late += 1
                    log.info("batcher.late_payment", payment_id=t.item.payment_id,
                             payout_id=t.payout_id, sealed_batch=t.batch_id,
                             next_window=t.window.window_id)
                owned.batches.pop(t.batch_id, None)
        return late

    # -- sealing -----------------------------------------------------------

    def tick(self, owned: Sequence[tuple[str, int]]) -> HandlerResult:
        """Append a seal command for every owned batch whose cutoff + grace has passed, after
        writing the payout rows still due (see `_write_payouts`)."""
        result = HandlerResult()
        now = self._clock()
        grace = timedelta(seconds=self._settings.seal_grace_s)
        mine = {p for t, p in owned if t == self._topics.items}
        for p in list(self._owned):
            if p not in mine:
                del self._owned[p]  # revoked: the next owner claims a new epoch
        # Claimed first: a claim that fails must fail before any command is marked issued.
        states = [(p, self._own(p)) for p in sorted(mine)]
        for batch_id in sorted(self._unwritten):
            entry = self._unwritten.get(batch_id)
            if entry is None or entry.overdue():
                self._write_payouts(batch_id)
        soon = now + timedelta(seconds=self._settings.seal_check_interval_s + WARM_LEAD_S)
        for p, state in states:
            for batch_id, head in sorted(state.batches.items()):
                if batch_id in state.commanded or soon < head.cutoff_at + grace:
                    continue
                self._prewarm()
                if now < head.cutoff_at + grace:
                    continue
                state.commanded.add(batch_id)
                # The command rides the open transaction; if that aborts, the command is
                # gone and nothing re-reads it, so the next tick must issue it again
                # (found by `settlement chaos`, seed 1480177189: never sealed otherwise).
                result.after_abort.append(partial(state.commanded.discard, batch_id))
                result.outputs.append(OutboundRecord(
                    topic=self._topics.items, key=f"{head.bank_bic}:{head.currency}".encode(),
                    value=orjson.dumps({"batch_id": batch_id, "issued_by": self._worker_id,
                                        "issued_at": now.isoformat()}),
                    headers=[("kind", b"seal"), ("batch_id", batch_id.encode())], partition=p))
                log.info("batcher.seal_requested", batch_id=batch_id,
                         cutoff_at=head.cutoff_at.isoformat())
        return result

    def _prewarm(self) -> Future[None]:
        """Load the merchant accounts before a seal looks them all up (10,000 take ~0.3 s).

        On the seal's I/O thread, one load at a time: a load under way is returned, not
        started again. The tick does not wait for it; a load that fails is logged when it
        does, and the seal waits for it (or a new load, if the accounts went stale since)
        and fails there.
        """
        if self._warming is None or self._warming.done():
            self._warming = self._io.submit(self._merchants.warm)
            self._warming.add_done_callback(_log_warm_failure)
        return self._warming

    def _seal(self, rec: InboundRecord, result: HandlerResult) -> None:
        try:
            batch_id = str(orjson.loads(rec.value or b"{}")["batch_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            self._dead_letter(rec, result, "invalid_seal_command", repr(exc), type(exc).__name__)
            return
        partition = rec.source.partition
        owned = self._own(partition)
        found = self._store.header(batch_id)
        if found is None:
            self._dead_letter(rec, result, "unknown_batch", f"no batch {batch_id}", "LookupError",
                              batch_id=batch_id)
            return
        head = found[0]
        sealed_by = f"{rec.source.topic}/{rec.source.partition}@{rec.source.offset}"
        sealed_at = self._clock().replace(microsecond=0)
        state = self._store.seal(batch_id, owned.epoch, sealed_by, sealed_at,
                                 short_id("M", batch_id))
        owned.batches.pop(batch_id, None)
        if state.status == "open":
            raise BatchOwnershipLostError(f"batch {batch_id}: sealed by a newer owner's epoch")
        if not state.applied and state.sealed_by != sealed_by:
            self.stats.duplicate_commands += 1
            log.info("batcher.seal_duplicate", batch_id=batch_id, sealed_by=state.sealed_by)
            return
        assert state.sealed_at is not None and state.msg_id is not None
        self.stats.sealed += state.applied
        try:
            xml = self._message(head, state.sealed_at, state.msg_id)
        except BatchTooLargeError as exc:
            # Sending it is not possible and retrying the seal would fail the same way: the
            # command goes to the items DLQ, the worker and the partition's other batches go on.
            log.error("batch.too_large", batch_id=batch_id, bank=head.bank_bic,
                      currency=head.currency, detail=str(exc))
            self._dead_letter(rec, result, "pacs008_oversized", str(exc), type(exc).__name__,
                              batch_id=batch_id)
            return
        if xml is not None:
            self.stats.published += 1
            result.after_commit.append(partial(self._published, head, state.msg_id))
            result.outputs.append(OutboundRecord(
                topic=self._topics.bank_outbound, key=head.bank_bic.encode(), value=xml,
                headers=[("msg_id", state.msg_id.encode()), ("batch_id", batch_id.encode()),
                         ("bank_bic", head.bank_bic.encode()), ("currency", head.currency.encode())]))
        if batch_id in self._unwritten:
            # Its payout rows follow the commit that publishes the pacs.008 (the tick
            # writes them if that commit never comes; a new owner, if this worker dies).
            result.after_commit.append(partial(self._after_publish, batch_id))
            result.after_abort.append(partial(self._write_due, batch_id))

    def _after_publish(self, batch_id: str) -> None:
        kill_point("batcher.published_before_payouts")
        self._write_payouts(batch_id)

    def _published(self, head: BatchHeader, msg_id: str) -> None:
        """After the commit that made the pacs.008 visible on bank.outbound."""
        latency = (self._clock() - head.cutoff_at).total_seconds()
        metrics.batch_published(head.bank_bic, latency)
        log.info("batch.published", batch_id=head.batch_id, msg_id=msg_id, bank=head.bank_bic,
                 seconds_after_cutoff=round(latency, 3))

    def _dead_letter(self, rec: InboundRecord, result: HandlerResult, code: str, detail: str,
                     error_class: str, batch_id: str | None = None) -> None:
        self.stats.dead_letters += 1
        result.outputs.append(dead_letter(rec, self._topics.items_dlq, code, detail, error_class,
                                          self._worker_id))
        log.warning("batcher.dead_lettered", reason=code, batch_id=batch_id,
                    payment_id=header(rec.headers, "payment_id"), detail=detail[:300],
                    topic=rec.source.topic, partition=rec.source.partition,
                    offset=rec.source.offset)

    def _message(self, head: BatchHeader, sealed_at: datetime, msg_id: str) -> bytes | None:
        """The batch's pacs.008: stored at first seal, re-sent byte for byte afterwards.

        The merchant accounts load (if the tick's prewarm has not) while the rows are read;
        the payouts are netted and the pacs.008 rendered and validated. Then the batch
        is marked pending, its expected bookings and the message are stored: the stored
        message makes the seal final (a replay re-sends it). The payout rows (one partition
        each, the seal's longest write) are not written here but after the commit that
        publishes the message (`_write_payouts`); until then the marker tells the inbound
        stage that an answer about them is early, not unknown. A batch with nothing to send
        writes its rows here.
        """
        stored = self._store.message(head.batch_id)
        if stored is not None:
            return stored
        t0 = time.monotonic()
        warming = self._prewarm()
        try:
            rows = self._store.rows(head.batch_id)
        finally:
            wait([warming])  # a retry must not overlap it; the read's error wins
        warming.result()
        t_read = time.monotonic()
        payouts: list[tuple[object, ...]] = []
        retried: list[tuple[object, ...]] = []
        txs: list[PayoutTx] = []
        plan = _payouts_of(rows)
        for p in plan:
            account = self._merchants.lookup(p.merchant_id, head.currency)
            status = "sent" if p.net > 0 and account is not None else _unsent_status(p)
            if status == "sent":
                assert account is not None
                txs.append(PayoutTx(
                    payout_id=p.payout_id, instr_id=p.instr_id, end_to_end_id=p.end_to_end_id,
                    uetr=p.uetr, amount_minor=p.net, currency=head.currency,
                    creditor=Party(name=account.creditor_name, account_id=account.account_id,
                                   account_scheme=account.account_scheme, bic=account.bank_bic),
                    remittance=(f"Payout {p.payout_id} attempt {p.attempt}" if p.attempt > 1 else
                                f"Payout {p.payout_id} {head.window_id}: {p.payments} payment(s)"),
                    payments=p.payments))
            (retried if p.attempt > 1 else payouts).append(self._row(head, p, status, sealed_at))
        t_build = time.monotonic()
        xml = self._render_now(head, sealed_at, msg_id, txs, payouts, retried, rows)
        t_render = time.monotonic()
        if xml is not None:
            by_payout = {p.payout_id: p for p in plan}
            self._store.mark_pending(head.batch_id, self._topics.items, head.items_partition,
                                     msg_id, sealed_at)
            self._store.save_expected(head.batch_id, [ExpectedBooking(
                ExpectedKind.PAYOUT, head.bank_bic, head.settlement_date, head.currency,
                t.end_to_end_id, t.amount_minor, msg_id, by_payout[t.payout_id].merchant_id,
                by_payout[t.payout_id].gross, by_payout[t.payout_id].fee) for t in txs])
            self._store.save_message((head.batch_id, msg_id, head.bank_bic, head.currency,
                                      head.settlement_date, len(txs),
                                      sum(t.amount_minor for t in txs), xml, sealed_at))
            self._unwritten[head.batch_id] = _Unwritten(payouts, retried)
        else:
            self._save_payouts(payouts, retried)  # nothing to send, so nothing to wait for
        self._mark_index(head, "sent" if xml else "empty", txs, rows, msg_id, sealed_at)
        metrics.batch_rendered(head.bank_bic, head.currency, len(txs))
        log.info("batch.sealed", batch_id=head.batch_id, msg_id=msg_id, txs=len(txs),
                 payments=len(rows), late=sum(r.late for r in rows),
                 read_ms=int((t_read - t0) * 1000), build_ms=int((t_build - t_read) * 1000),
                 render_ms=int((t_render - t_build) * 1000),
                 store_ms=int((time.monotonic() - t_render) * 1000))
        return xml

    def _render_now(self, head: BatchHeader, sealed_at: datetime, msg_id: str,
                    txs: list[PayoutTx], payouts: list[tuple[object, ...]],
                    retried: list[tuple[object, ...]], rows: list[BatchRow]) -> bytes | None:
        """The pacs.008, rendered and validated (None when nothing is sent); one too large
        to send is not sent."""
        if not txs:
            return None
        batch = SealedBatch(batch_id=head.batch_id, msg_id=msg_id, created_at=sealed_at,
                            settlement_date=head.settlement_date, currency=head.currency,
                            bank_bic=head.bank_bic, transactions=tuple(txs))
        p = self._processor
        debtor = Party(name=p.name, account_id=p.iban, bic=p.bic)
        try:
            return self._render(batch, debtor, p.charge_bearer, p.settlement_method)
        except MessageRefusedError as exc:
            if exc.code != "oversized":
                raise
            self._too_large(head, sealed_at, msg_id, txs, payouts, retried, rows, exc)
        raise AssertionError("unreachable: _too_large raises")

    @staticmethod
    def _row(head: BatchHeader, p: _Payout, status: str, sealed_at: datetime) -> tuple[object, ...]:
        return (p.payout_id, head.batch_id, p.merchant_id, head.currency, head.window_id, p.net,
                p.gross, p.fee, p.payments, p.late, p.attempt, p.end_to_end_id, p.instr_id,
                p.uetr, status, sealed_at)

    def _write_payouts(self, batch_id: str) -> None:
        """A sealed batch's payout rows, then its pending marker cleared.

        After the commit that published its pacs.008 (or, by the tick, when that commit
        did not happen or this write failed; or by a new owner of the items partition,
        which rebuilds the rows from the batch and the stored message). Deterministic
        rows at the seal's timestamp: writing them twice, or after a bank's answer moved
        a payout on, changes nothing.
        """
        if batch_id not in self._unwritten:
            return
        t0 = time.monotonic()
        self._write_due(batch_id)  # if this write fails, the tick tries again
        entry = self._unwritten[batch_id] or self._rebuild(batch_id)
        if entry is None:
            return
        self._save_payouts(entry.payouts, entry.retried)
        self._store.clear_pending(batch_id)
        self._unwritten.pop(batch_id, None)
        log.info("batch.payouts_written", batch_id=batch_id,
                 payouts=len(entry.payouts) + len(entry.retried),
                 ms=int((time.monotonic() - t0) * 1000))

    def _write_due(self, batch_id: str) -> None:
        """The seal's transaction aborted: the tick writes the rows (a replayed seal
        command sends the stored message again, which needs them no less)."""
        entry = self._unwritten.get(batch_id)
        if entry is not None:
            entry.due = True

    def _rebuild(self, batch_id: str) -> _Unwritten | None:
        """The payout rows of a batch found pending, from its rows and its stored pacs.008:
        a payout is 'sent' when its EndToEndId is in the message, as it was at the seal
        (the merchant registry may have changed since)."""
        found = self._store.header(batch_id)
        xml = self._store.message(batch_id)
        if found is None or xml is None or found[1].sealed_at is None:
            # Marked, but the seal did not get to store its message: the seal command is
            # replayed (it was not committed) and seals it in full.
            self._unwritten.pop(batch_id, None)
            log.info("batch.payouts_pending_without_message", batch_id=batch_id)
            return None
        head, state = found
        assert state.sealed_at is not None
        sent = {t.end_to_end_id for t in parse_pacs008_summary(xml).transactions}
        entry = _Unwritten([], [])
        for p in _payouts_of(self._store.rows(batch_id)):
            status = "sent" if p.end_to_end_id in sent else _unsent_status(p)
            (entry.retried if p.attempt > 1 else entry.payouts).append(
                self._row(head, p, status, state.sealed_at))
        log.info("batch.payouts_rebuilt", batch_id=batch_id,
                 payouts=len(entry.payouts) + len(entry.retried), sent=len(sent))
        return entry

    def _too_large(self, head: BatchHeader, sealed_at: datetime, msg_id: str,
                   txs: list[PayoutTx], payouts: list[tuple[object, ...]],
                   retried: list[tuple[object, ...]], rows: list[BatchRow],
                   exc: MessageRefusedError) -> None:
        """The batch's payouts are written, then marked 'unsent' (over the seal's write,
        as a replay writes them again); the batch index says 'oversized', and nothing is
        stored or published."""
        self._save_payouts(payouts, retried)
        self._store.mark_unsent([t.payout_id for t in txs], sealed_at)
        self._mark_index(head, "oversized", txs, rows, msg_id, sealed_at)
        shards = self._cal.shards(head.bank_bic)
        raise BatchTooLargeError(
            f"batch {head.batch_id}: its pacs.008 of {len(txs):,} payouts is too large to send "
            f"({exc.detail}); its payouts are marked unsent. "
            f"Raise `shards` for bank {head.bank_bic} (now {shards}) so a window's batches stay "
            "under ~9,000 payouts each, then `settlement payouts retry` them") from exc

    def _mark_index(self, head: BatchHeader, status: str, txs: list[PayoutTx],
                    rows: list[BatchRow], msg_id: str, sealed_at: datetime) -> None:
        """The batch's line in its partition's index: how it ended and its totals."""
        self._store.mark_index((
            status, len(txs), sum(t.amount_minor for t in txs), len(rows),
            sum(r.late for r in rows), msg_id, sealed_at, self._topics.items,
            head.items_partition, head.batch_id))

    def _save_payouts(self, payouts: list[tuple[object, ...]],
                      retried: list[tuple[object, ...]]) -> None:
        self._store.save_payouts(payouts)
        self._store.save_retried(retried)

