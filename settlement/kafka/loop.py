"""The consume -> transform -> produce loop, exactly once with Kafka transactions.

One transaction spans up to `commit_interval_ms` of polls. Per poll the handler
writes Cassandra (idempotently) and returns records; they are produced into the
open transaction. At the interval the transaction commits with the consumed
positions, so outputs and offsets land together or not at all.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from settlement import metrics
from settlement.config import KafkaSettings, WorkerSettings
from settlement.domain.errors import FatalError, NotYetError, RetryableError
from settlement.kafka.errors import TxnErrorKind, classify
from settlement.kafka.reader import committed, header_pairs, position
from settlement.kafka.telemetry import STATS_INTERVAL_MS, LoopHealth, brokers_up, observe_lag
from settlement.service.deadletter import H_REASON, header
from settlement.service.ports import Handler, HandlerResult, InboundRecord, SourceRef

log = structlog.get_logger(__name__)
TP = tuple[str, int]


class AbortBatchError(Exception):
    """Internal: the open transaction must be aborted and its input re-read."""


def commit_due(elapsed_s: float, next_step_s: float, interval_ms: int) -> bool:
    """Commit now, when the open transaction has run `elapsed_s` and one more step (about
    as long as the last one, `next_step_s`) would end past the interval. Waiting for
    the interval to pass instead would make a transaction span the interval and up to one
    step more, and its first records wait for all of it (p99 ~0.8 x at 100 ms under load,
    docs/benchmarks.md). A step longer than the interval commits after every step."""
    return (elapsed_s + next_step_s) * 1000 >= interval_ms


@dataclass
class LoopStats:
    consumed: int = 0
    produced: int = 0
    commits: int = 0
    aborts: int = 0
    producer_rebuilds: int = 0
    outages: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Batch:
    """What the open transaction (or at-least-once interval) has done so far."""

    started: float = field(default_factory=time.monotonic)
    first_offsets: dict[TP, int] = field(default_factory=dict)
    next_offsets: dict[TP, int] = field(default_factory=dict)
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    after_abort: list[Callable[[], None]] = field(default_factory=list)
    produced: int = 0
    tally: Tally[tuple[str, str | None]] = field(default_factory=Tally)  # (topic, dlq reason)


class StageLoop:
    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        worker: WorkerSettings,
        handler: Handler,
        topics: list[str],
        group_id: str,
        role: str,
        tick_interval_s: float = 5.0,
        producer_extra: dict[str, Any] | None = None,
    ) -> None:
        self._kafka = kafka
        self._worker = worker
        self._handler = handler
        self._topics = topics
        self._group_id = group_id
        self._role = role
        self._tick_interval = tick_interval_s
        self._producer_extra = producer_extra or {}
        self._eos = worker.processing_guarantee == "exactly-once"
        self._txn_id = f"{worker.group_prefix}-{role}-{worker.instance_id}"
        self._stop = threading.Event()
        self._batch: _Batch | None = None
        self._txn_open = False
        self._assigned: set[TP] = set()
        self._outage_until = 0.0
        self._outage_backoff = 0.0
        self._last_tick = 0.0
        self._last_step_s = 0.0  # how long the last step took: the next one's estimate
        self._last_progress = time.monotonic()
        # Read by the health endpoints (another thread): plain values, replaced whole.
        self._heartbeat = time.monotonic()
        self._observed_at = 0.0
        self._started = self._running = False
        self._assignments = 0
        self._fatal: dict[str, str] = {}  # client -> its fatal error
        self._brokers_up: bool | None = None  # None until the first statistics
        self._delivery_errors: list[KafkaError] = []
        self.stats = LoopStats()
        self._log = log.bind(role=role, instance=worker.instance_id, eos=self._eos)
        self._consumer = self._new_consumer()
        self._producer = self._new_producer()

    # -- construction -------------------------------------------------------

    def _new_consumer(self) -> Consumer:
        conf = {
            **self._kafka.client_config(),
            "group.id": self._group_id,
            "client.id": self._txn_id,  # names the replica in describe-group output
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": self._kafka.session_timeout_ms,
            "max.poll.interval.ms": self._kafka.max_poll_interval_ms,
            "fetch.min.bytes": self._kafka.fetch_min_bytes,
            "fetch.wait.max.ms": self._kafka.fetch_wait_max_ms,
            "enable.partition.eof": False,
            "statistics.interval.ms": STATS_INTERVAL_MS,
            "stats_cb": self._on_stats,
            "error_cb": partial(self._on_client_error, "consumer"),
            **self._kafka.extra,  # last: it may override the tunables above (config.py)
        }
        return Consumer(conf)

    def _new_producer(self) -> Producer:
        conf: dict[str, Any] = {
            **self._kafka.client_config(),
            "enable.idempotence": True,
            "linger.ms": 5,
            # ISO 20022 XML compresses ~10x; big pacs.008 batches must fit the topic limit.
            "compression.type": "zstd",
            "message.max.bytes": 64 * 1024 * 1024,
            **self._producer_extra,
            **self._kafka.extra,
        }
        if self._eos:
            conf["transactional.id"] = self._txn_id
            conf["transaction.timeout.ms"] = self._kafka.transaction_timeout_ms
        producer = Producer(conf, error_cb=partial(self._on_client_error, "producer"))
        if self._eos:
            self._init_transactions(producer)
        return producer

    def _init_transactions(self, producer: Producer) -> None:
        """Fence any older producer with our transactional.id (and abort its open txn).

        A broker that is down or still loading its transaction state (a restart) makes
        this time out: wait and try again rather than crash the worker (found by
        `settlement chaos`: a worker restarted during a broker kill -9 died here). A
        fatal error (e.g. not authorized) still raises.
        """
        delay = 0.5
        while True:
            try:
                self._call(lambda: producer.init_transactions(self._kafka.txn_call_timeout_s),
                           "init_transactions")
                return
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if classify(exc) is TxnErrorKind.FATAL or (err is not None and err.code() in (
                        KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)):
                    raise
                error = str(exc)
            except FutureTimeout:
                error = "init_transactions hung past our own timeout"
            if self._stop.is_set():
                raise FatalError(f"stopped while waiting for the transaction coordinator: {error}")
            self._log.warning("kafka.init_transactions_retry", error=error, retry_in_s=delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _on_client_error(self, client: str, err: KafkaError) -> None:
        self._log.warning("kafka.client_error", client=client, error=str(err), fatal=err.fatal())
        if err.fatal():
            self._fatal[client] = str(err)

    def _on_stats(self, stats_json: str) -> None:
        self._brokers_up = brokers_up(stats_json)

    # -- public -------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def health(self) -> LoopHealth:
        """The loop's state for /healthz and /readyz; safe to call from another thread."""
        fatal = "; ".join(f"{c}: {e}" for c, e in sorted(dict(self._fatal).items()))  # copy: atomic
        kafka_error = fatal or ("no Kafka broker reachable" if self._brokers_up is False else None)
        return LoopHealth(
            started=self._started, running=self._running, stopping=self._stop.is_set(),
            heartbeat=self._heartbeat, assignments=self._assignments,
            partitions=len(self._assigned), in_outage=self._outage_until != 0.0,
            kafka_error=kafka_error,
        )

    def stop_requested_during_startup(self, signum: int) -> None:
        self._log.info("worker.drain_requested", signal=signal.Signals(signum).name, during="startup")
        self.stop()

    def install_signal_handlers(self) -> None:
        def _drain(signum: int, _frame: Any) -> None:
            self._log.info("worker.drain_requested", signal=signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, _drain)
        signal.signal(signal.SIGINT, _drain)

    def run(self) -> None:
        self._consumer.subscribe(
            self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._log.info("worker.started", topics=self._topics, group=self._group_id,
                       transactional_id=self._txn_id if self._eos else None)
        self._started = self._running = True
        try:
            while not self._stop.is_set():
                self._step()
            self._log.info("worker.draining")
            self._finish_batch()
        finally:
            try:
                self._close()
            finally:
                self._running = False

    # -- the loop -----------------------------------------------------------

    def _step(self) -> None:
        started = self._heartbeat = time.monotonic()
        self._observe()
        if self._in_outage():
            return
        try:
            msgs = self._consumer.consume(self._worker.max_batch, self._worker.poll_timeout_s)
            records = [r for r in (self._record(m) for m in msgs) if r is not None]
            if records:
                self._process(records)
            self._maybe_tick()
            self._last_step_s = time.monotonic() - started
            if self._batch is not None and self._due():
                self._finish_batch()
            self._progress()
        except RetryableError as exc:
            self._enter_outage(exc)
        except AbortBatchError as exc:
            self._log.warning("txn.aborting", reason=str(exc))
            self._abort_and_rewind()

    def _record(self, msg: Message) -> InboundRecord | None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise FatalError(f"consumer error: {err}")
            self._log.warning("kafka.consume_error", error=str(err))
            return None
        topic = msg.topic()
        assert topic is not None  # set on every non-error message, like partition and offset
        partition, offset = position(msg)
        return InboundRecord(
            SourceRef(topic, partition, offset), msg.key(), msg.value(), header_pairs(msg)
        )

    def _process(self, records: list[InboundRecord]) -> None:
        # Where to rewind to is known before anything can fail: a handler that raises
        # (Cassandra down) on a batch's first records must not leave the consumer past
        # records that were never handled (found by `settlement chaos`: it skipped them
        # and later committed past them).
        first: dict[TP, int] = {}
        for rec in records:
            first.setdefault((rec.source.topic, rec.source.partition), rec.source.offset)
        try:
            batch = self._open_batch()
        except BaseException:
            self._rewind(first)
            raise
        for tp, offset in first.items():
            batch.first_offsets.setdefault(tp, offset)
        result = self._handler.handle(records)
        self._emit(result, batch)
        for rec in records:
            tp = (rec.source.topic, rec.source.partition)
            batch.next_offsets[tp] = rec.source.offset + 1  # commit positions, not offsets
        self.stats.consumed += len(records)
        metrics.consumed(self._role, (rec.source.topic for rec in records))

    def _maybe_tick(self) -> None:
        now = time.monotonic()
        if now - self._last_tick < self._tick_interval or not self._assigned:
            return
        self._last_tick = now
        result = self._handler.tick(sorted(self._assigned))
        if result.outputs or result.after_commit or result.after_abort:
            self._emit(result, self._open_batch())

    def _emit(self, result: HandlerResult, batch: _Batch) -> None:
        for out in result.outputs:
            while True:
                try:
                    extra: dict[str, Any] = (
                        {} if out.partition is None else {"partition": out.partition})
                    headers: list[tuple[str, str | bytes | None]] = list(out.headers)
                    self._producer.produce(
                        out.topic, value=out.value, key=out.key, headers=headers,
                        on_delivery=None if self._eos else self._on_delivery, **extra,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)  # local queue full: let deliveries drain
                except KafkaException as exc:
                    raise AbortBatchError(f"produce failed: {exc}") from exc
            batch.tally[(out.topic, header(out.headers, H_REASON))] += 1
        batch.produced += len(result.outputs)
        batch.after_commit.extend(result.after_commit)
        batch.after_abort.extend(result.after_abort)
        self._producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._delivery_errors.append(err)

    def _open_batch(self) -> _Batch:
        if self._batch is None:
            if self._eos:
                self._txn(self._producer.begin_transaction, "begin_transaction")
                self._txn_open = True
            self._batch = _Batch()
        return self._batch

    def _due(self) -> bool:
        assert self._batch is not None
        return commit_due(time.monotonic() - self._batch.started, self._last_step_s,
                          self._worker.commit_interval_ms)

    # -- commit / abort -----------------------------------------------------

    def _finish_batch(self) -> None:
        """Commit the open batch; on failure abort it and re-read its input."""
        if self._batch is None:
            return
        try:
            self._commit()
        except AbortBatchError as exc:
            self._log.warning("txn.aborting", reason=str(exc))
            self._abort_and_rewind()

    def _commit(self) -> None:
        batch = self._batch
        assert batch is not None
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.next_offsets.items()]
        if self._eos:
            # 1. offsets join the transaction, fenced by the current group generation
            if offsets:
                group = self._consumer.consumer_group_metadata()  # fresh each time (KIP-447)
                self._txn(
                    lambda: self._producer.send_offsets_to_transaction(
                        offsets, group, self._kafka.txn_call_timeout_s),
                    "send_offsets_to_transaction",
                )
            # 2. outputs + offsets become visible atomically
            self._txn(
                lambda: self._producer.commit_transaction(self._kafka.txn_call_timeout_s),
                "commit_transaction",
            )
            self._txn_open = False
        else:
            # At-least-once: outputs first, then offsets; a crash between them duplicates.
            remaining = self._producer.flush(self._kafka.txn_call_timeout_s)
            if remaining or self._delivery_errors:
                errs, self._delivery_errors = self._delivery_errors, []
                raise AbortBatchError(f"{remaining} undelivered, errors: {errs[:3]}")
            if offsets:
                try:
                    self._consumer.commit(offsets=offsets, asynchronous=False)
                except KafkaException as exc:
                    raise AbortBatchError(f"offset commit failed: {exc}") from exc
        self._batch = None
        self.stats.commits += 1
        self._outage_backoff = 0.0  # the next outage starts at the shortest wait again
        self.stats.produced += batch.produced
        metrics.committed(self._role, batch.tally)
        for callback in batch.after_commit:
            try:
                callback()
            except RetryableError as exc:
                # Safe to drop: the work is redone by the next tick (see callers).
                self._log.warning("txn.after_commit_failed", error=str(exc))

    def _abort_and_rewind(self) -> None:
        batch, self._batch = self._batch, None
        self.stats.aborts += 1
        metrics.aborted(self._role)
        if self._eos and self._txn_open:
            self._txn_open = False
            try:
                self._txn(
                    lambda: self._producer.abort_transaction(self._kafka.txn_call_timeout_s),
                    "abort_transaction",
                )
            except AbortBatchError as exc:
                self._log.warning("txn.abort_failed", error=str(exc))
                self._rebuild_producer()
        elif not self._eos:
            self._producer.purge()
            self._delivery_errors.clear()
        if batch is not None:
            for callback in batch.after_abort:
                callback()  # in-memory undo (e.g. a seal command to issue again)
            self._rewind(batch.first_offsets)

    def _rewind(self, first_offsets: dict[TP, int]) -> None:
        for (topic, partition), offset in first_offsets.items():
            if (topic, partition) not in self._assigned:
                continue  # no longer ours; the new owner starts from the committed offset
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                self._log.warning("kafka.seek_failed", topic=topic, partition=partition,
                                  error=str(exc))
                self._reassign_from_committed()
                return
        self._log.info("txn.rewound", partitions=len(first_offsets))

    def _reassign_from_committed(self) -> None:
        # asked again while the group's coordinator is loading (a broker just restarted):
        # the seek that failed here often failed for the same restart
        tps = [TopicPartition(t, p) for t, p in sorted(self._assigned)]
        self._consumer.assign(committed(self._consumer, tps, self._kafka.txn_call_timeout_s))

    def _txn(self, call: Callable[[], None], what: str) -> None:
        """Run one transactional call: retry retriable, abort abortable, rebuild on fatal."""
        for attempt in range(1, 6):
            try:
                self._call(call, what)
                return
            except KafkaException as exc:
                kind = classify(exc)
                self._log.warning("txn.call_failed", call=what, kind=kind.value,
                                  attempt=attempt, error=str(exc))
                if kind is TxnErrorKind.RETRIABLE and attempt < 5:
                    time.sleep(min(0.1 * 2**attempt, 2.0))
                    continue
                if kind is TxnErrorKind.FATAL:
                    self._rebuild_producer()
                raise AbortBatchError(f"{what}: {exc}") from exc
            except FutureTimeout as exc:
                self._log.error("txn.call_hung", call=what)
                self._rebuild_producer()
                raise AbortBatchError(f"{what} hung past our own timeout") from exc

    def _call(self, call: Callable[[], Any], what: str) -> Any:
        # Our own deadline around librdkafka calls known to hang (#5456, #5511).
        # A daemon thread per call, not a pool: a call that hangs for good must not keep
        # the process from exiting (the pool's threads are joined at exit; found by
        # `settlement chaos`: a zombie batcher drained, logged worker.stopped, never exited).
        done, box = threading.Event(), {}

        def run() -> None:
            try:
                box["result"] = call()
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=run, name=f"txn-{what}", daemon=True).start()
        if not done.wait(self._kafka.txn_call_timeout_s + 5):
            raise FutureTimeout(f"{what} did not return in {self._kafka.txn_call_timeout_s + 5:.0f}s")
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def _rebuild_producer(self) -> None:
        self.stats.producer_rebuilds += 1
        metrics.PRODUCER_REBUILDS.labels(self._role).inc()
        self._log.warning("kafka.producer_rebuild")
        with contextlib.suppress(KafkaException):
            self._producer.purge()
        # The old transaction dies with the old producer (init_transactions aborts it);
        # the caller still rewinds the batch's input.
        self._txn_open = False
        self._producer = self._new_producer()
        self._fatal.pop("producer", None)

    # -- outages ------------------------------------------------------------

    def _enter_outage(self, exc: RetryableError) -> None:
        """A dependency is down: abort, rewind, pause and keep polling until it is back."""
        self.stats.outages += 1
        self._outage_backoff = min(max(self._outage_backoff * 2, 0.5),
                                   self._worker.outage_backoff_max_s)
        if isinstance(exc, NotYetError):
            self._log.info("worker.waiting", reason=str(exc), retry_in_s=self._outage_backoff)
        else:
            metrics.OUTAGES.labels(self._role).inc()
            self._log.warning("worker.dependency_down", error=str(exc),
                              retry_in_s=self._outage_backoff)
        self._abort_and_rewind()
        self._consumer.pause([TopicPartition(t, p) for t, p in self._assigned])
        self._outage_until = time.monotonic() + self._outage_backoff

    def _in_outage(self) -> bool:
        if self._outage_until == 0.0:
            return False
        if time.monotonic() < self._outage_until and not self._stop.is_set():
            self._consumer.poll(0.1)  # stay in the group while paused
            return True
        self._outage_until = 0.0
        # everything assigned now, including partitions assigned while paused
        self._consumer.resume(self._consumer.assignment())
        return False

    # -- rebalances ---------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.update((tp.topic, tp.partition) for tp in partitions)
        self._assignments += 1  # even an empty one: we are in the group (more replicas than partitions)
        metrics.assigned(self._role, len(self._assigned))
        self._log.info("kafka.assigned", partitions=[f"{t.topic}/{t.partition}" for t in partitions])
        self._handler.assigned([(tp.topic, tp.partition) for tp in partitions])
        # Set the pause state either way: librdkafka keeps a partition's pause flag across
        # a loss and re-assignment, so a partition paused by an outage, lost while the
        # worker was stopped (a zombie) and assigned again stayed paused for good (found
        # by `settlement chaos`: the batcher stopped consuming, nothing logged).
        if self._outage_until:
            consumer.pause(partitions)
        else:
            consumer.resume(partitions)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Revoked cleanly: commit what we did, so the next owner starts after it.
        self._log.info("kafka.revoked", partitions=len(partitions))
        self._drop([(tp.topic, tp.partition) for tp in partitions])
        self._finish_batch()

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost (session expired): another worker may own them already; never commit.
        self._log.warning("kafka.lost", partitions=len(partitions))
        self._drop([(tp.topic, tp.partition) for tp in partitions])
        if self._batch is not None:
            self._abort_and_rewind()

    def _drop(self, partitions: list[tuple[str, int]]) -> None:
        self._assigned.difference_update(partitions)
        metrics.assigned(self._role, len(self._assigned), dropped=partitions)

    # -- housekeeping -------------------------------------------------------

    def _observe(self) -> None:
        """Lag and heartbeat metrics, at most once a second (local calls only)."""
        now = time.monotonic()
        if now - self._observed_at >= 1.0:
            self._observed_at = now
            metrics.HEARTBEAT.labels(self._role).set_to_current_time()
            observe_lag(self._consumer, self._role, self._assigned)

    def _progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress >= 10:
            self._last_progress = now
            s = self.stats
            self._log.info("worker.progress", consumed=s.consumed, produced=s.produced,
                           commits=s.commits, aborts=s.aborts, outages=s.outages,
                           partitions=len(self._assigned))

    def _close(self) -> None:
        try:
            self._consumer.close()  # leaves the group: a fast rebalance for the others
        finally:
            self._handler.close()
            self._producer.flush(5)
            s = self.stats
            self._log.info("worker.stopped", consumed=s.consumed, produced=s.produced,
                           commits=s.commits, aborts=s.aborts)
