"""Operator replays against Kafka: reset a group's offsets, or copy a range again.

- reset: the stage's group re-reads [from, end) itself. Kafka accepts an offset
  change only while the group has no members, so the workers must be stopped.
- republish: the committed records of [from, to) are copied (key, bytes, headers,
  same partition) to the end of the topic or another one, in transactions.

Both rely on the stages being idempotent: a record processed twice changes nothing
downstream (docs/architecture.md). Every read here is read_committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec  # .admin re-exports it untyped

from settlement.config import KafkaSettings
from settlement.domain.errors import ConfigError, FatalError, RetryableError
from settlement.kafka.positions import Bounds, PartitionRange
from settlement.kafka.reader import header_pairs, position, read_all
from settlement.service.ports import InboundRecord, OutboundRecord, SourceRef
from settlement.service.replay import copy_record

log = structlog.get_logger(__name__)
Progress = Callable[[int], None]
_TIMEOUT_S = 30.0
_EARLIEST: OffsetSpec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
_LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]
# Kafka's answer to an offset change for a group that still has members.
_GROUP_BUSY = (KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS,
               KafkaError.ILLEGAL_GENERATION)


class GroupActiveError(FatalError):
    """The consumer group has live members: its offsets cannot be reset now."""


@dataclass(frozen=True)
class Member:
    client_id: str
    host: str
    partitions: int

    def __str__(self) -> str:
        return f"{self.client_id}@{self.host.lstrip('/')} ({self.partitions} partition(s))"


def _wait(futures: dict[Any, Any], what: str) -> dict[Any, Any]:
    out = {}
    for key, fut in futures.items():
        try:
            out[key] = fut.result(_TIMEOUT_S)
        except KafkaException as exc:
            raise RetryableError(f"{what}: {exc}") from exc
    return out


class KafkaAdmin:
    """One admin client for a command: offsets (an `OffsetSource`, read_committed) and groups."""

    def __init__(self, kafka: KafkaSettings) -> None:
        # log_level 5: not librdkafka's info line "Purging 1 unserved events" that
        # describe_consumer_groups sometimes leaves at exit; warnings and errors still show.
        self._admin = AdminClient({**kafka.client_config(), "log_level": 5})

    def partitions(self, topic: str) -> list[int]:
        try:
            # All topics, not list_topics(topic): that may auto-create the topic on the broker.
            meta = self._admin.list_topics(timeout=_TIMEOUT_S)
        except KafkaException as exc:
            raise RetryableError(f"cannot read metadata of {topic}: {exc}") from exc
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            raise ConfigError(f"topic {topic} does not exist (see `settlement topics ensure`)")
        return sorted(tmeta.partitions)

    def _list(self, topic: str, partitions: Sequence[int], spec: OffsetSpec,
              level: IsolationLevel = IsolationLevel.READ_COMMITTED) -> dict[int, int]:
        req = {TopicPartition(topic, p): spec for p in partitions}
        found = _wait(self._admin.list_offsets(req, isolation_level=level), f"list offsets of {topic}")
        return {tp.partition: info.offset for tp, info in found.items()}

    def bounds(self, topic: str, partitions: Sequence[int]) -> dict[int, Bounds]:
        low = self._list(topic, partitions, _EARLIEST)
        stable = self._list(topic, partitions, _LATEST)
        high = self._list(topic, partitions, _LATEST, IsolationLevel.READ_UNCOMMITTED)
        return {p: Bounds(low[p], stable[p], high[p]) for p in partitions}

    def offsets_for_time(self, topic: str, partitions: Sequence[int], ms: int) -> dict[int, int | None]:
        found = self._list(topic, partitions, OffsetSpec.for_timestamp(ms))
        return {p: None if o < 0 else o for p, o in found.items()}

    # -- groups -----------------------------------------------------------------

    def members(self, group: str) -> list[Member]:
        desc = _wait(self._admin.describe_consumer_groups([group]), f"describe group {group}")[group]
        return [Member(m.client_id, m.host,
                       len(m.assignment.topic_partitions) if m.assignment else 0)
                for m in desc.members]

    def committed(self, group: str, topic: str, partitions: Iterable[int]) -> dict[int, int | None]:
        """The group's committed position per partition; None where it has none."""
        req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
        res = _wait(self._admin.list_consumer_group_offsets([req]), f"offsets of group {group}")
        return {tp.partition: (tp.offset if tp.offset >= 0 else None)
                for tp in res[group].topic_partitions}

    def reset(self, group: str, topic: str, ranges: Sequence[PartitionRange], *,
              force: bool = False, wait_s: float = 30.0) -> None:
        """Set the group's committed offsets on `topic` to each range's start.

        Refuses while the group has members. With `force` the member check is skipped and
        the change is retried for up to `wait_s` while Kafka still refuses it: for members
        of killed workers that have not timed out yet, or workers still draining. Kafka
        itself never moves the offsets of a group with live members.
        """
        if not force:
            members = self.members(group)
            if members:
                raise GroupActiveError(
                    f"group {group} has {len(members)} live member(s): "
                    f"{', '.join(map(str, members))}. Stop its workers first (they would "
                    "overwrite the reset with their next commit); --force waits for members "
                    "that are gone but not yet timed out")
        req = ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, r.partition, r.start) for r in ranges])
        deadline = time.monotonic() + wait_s
        while True:
            res = _wait(self._admin.alter_consumer_group_offsets([req]), f"reset group {group}")
            errors = [(tp.partition, tp.error) for tp in res[group].topic_partitions
                      if tp.error is not None]
            if not errors:
                log.info("replay.group_reset", group=group, topic=topic,
                         offsets={r.partition: r.start for r in ranges})
                return
            if not all(e.code() in _GROUP_BUSY for _p, e in errors):
                raise FatalError(f"Kafka refused to reset group {group}: "
                                 f"{'; '.join(f'partition {p}: {e.str()}' for p, e in errors)}")
            if not force or time.monotonic() >= deadline:
                members = self.members(group)
                raise GroupActiveError(
                    f"Kafka refused to reset group {group}: it still has live member(s) "
                    f"({', '.join(map(str, members)) or 'rebalancing'}"
                    f"{f', waited {wait_s:.0f}s' if force else ''}). Stop its workers and "
                    "run again")
            time.sleep(1.0)


def _reader(kafka: KafkaSettings, group: str) -> Consumer:
    return Consumer({
        **kafka.client_config(),
        "group.id": group,  # assign() only: never joins the group, never commits
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "auto.offset.reset": "error",  # a start deleted by retention meanwhile: fail, never skip
        "fetch.max.bytes": 64 * 1024 * 1024,
    })


def read_ranges(
    kafka: KafkaSettings, topic: str, ranges: Sequence[PartitionRange], reader_group: str,
    timeout_s: float = 120.0,
) -> Iterator[InboundRecord]:
    """The committed records of each [start, end), partition by partition interleaved."""
    todo = {r.partition: r for r in ranges if r.end > r.start}
    if not todo:
        return
    consumer = _reader(kafka, reader_group)
    try:
        consumer.assign([TopicPartition(topic, r.partition, r.start) for r in todo.values()])
        idle_deadline = time.monotonic() + timeout_s
        while todo:
            msg = consumer.poll(0.5)
            if msg is None:
                if time.monotonic() > idle_deadline:
                    raise RetryableError(f"reading {topic}: no progress for {timeout_s:.0f}s on "
                                         f"partitions {sorted(todo)}")
                continue
            idle_deadline = time.monotonic() + timeout_s
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    eof = msg.partition()
                    if eof is not None:
                        todo.pop(eof, None)  # the stable end: nothing more to read
                    continue
                raise RetryableError(f"reading {topic}: {err}")
            partition, offset = position(msg)
            rng = todo.get(partition)
            if rng is None:
                continue
            if offset >= rng.end:
                del todo[partition]
                consumer.pause([TopicPartition(topic, partition)])
                continue
            yield InboundRecord(SourceRef(topic, partition, offset), msg.key(), msg.value(),
                                header_pairs(msg))
            if offset + 1 >= rng.end:
                del todo[partition]
                consumer.pause([TopicPartition(topic, partition)])
    finally:
        consumer.close()


def read_topic(kafka: KafkaSettings, topic: str) -> list[InboundRecord]:
    """Every committed record of `topic` (e.g. a dead-letter topic), in log order per partition."""
    out = []
    for msg in read_all(kafka, topic):
        partition, offset = position(msg)
        out.append(InboundRecord(SourceRef(topic, partition, offset), msg.key(), msg.value(),
                                 header_pairs(msg)))
    return out


def count_records(
    kafka: KafkaSettings, topic: str, ranges: Sequence[PartitionRange], reader_group: str,
    progress: Progress | None = None,
) -> dict[int, int]:
    """Committed data records per range (offsets also hold transaction markers and aborts)."""
    counts = {r.partition: 0 for r in ranges}
    for rec in read_ranges(kafka, topic, ranges, reader_group):
        counts[rec.source.partition] += 1
        if progress is not None:
            progress(1)
    return counts


# -- republish -----------------------------------------------------------------


class TransactionalWriter:
    """Produce records in transactions of up to `chunk` records.

    A stable transactional.id per target fences a replay still running (or crashed)
    for the same target: its open transaction is aborted, never half visible.
    """

    def __init__(self, kafka: KafkaSettings, transactional_id: str, chunk: int = 5000) -> None:
        self._kafka = kafka
        self._chunk = chunk
        self._open = 0
        self.committed = 0
        self._producer = Producer({
            **kafka.client_config(),
            "transactional.id": transactional_id,
            "transaction.timeout.ms": kafka.transaction_timeout_ms,
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "zstd",
            "message.max.bytes": 64 * 1024 * 1024,
        })
        self._call(lambda: self._producer.init_transactions(kafka.txn_call_timeout_s), "init")

    def _call(self, fn: Callable[[], None], what: str) -> None:
        try:
            fn()
        except KafkaException as exc:
            raise FatalError(f"replay transaction {what} failed after {self.committed} record(s) "
                             f"were committed: {exc}") from exc

    def write(self, rec: OutboundRecord) -> None:
        if self._open == 0:
            self._call(self._producer.begin_transaction, "begin")
        extra: dict[str, Any] = {} if rec.partition is None else {"partition": rec.partition}
        headers: list[tuple[str, str | bytes | None]] = list(rec.headers)
        while True:
            try:
                self._producer.produce(rec.topic, value=rec.value, key=rec.key, headers=headers,
                                       **extra)
                break
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:
                self.abort()
                raise FatalError(f"produce to {rec.topic} failed: {exc}") from exc
        self._open += 1
        if self._open >= self._chunk:
            self.commit()

    def commit(self) -> None:
        if self._open == 0:
            return
        self._call(lambda: self._producer.commit_transaction(self._kafka.txn_call_timeout_s),
                   "commit")
        self.committed += self._open
        self._open = 0

    def abort(self) -> None:
        if self._open:
            self._open = 0
            try:
                self._producer.abort_transaction(self._kafka.txn_call_timeout_s)
            except KafkaException as exc:
                log.warning("replay.abort_failed", error=str(exc))

    def close(self) -> None:
        self.abort()
        self._producer.flush(5)


def check_partitions(admin: KafkaAdmin, records_partitions: dict[str, set[int]]) -> None:
    """Every (topic, partition) a replay writes to must exist."""
    for topic, parts in records_partitions.items():
        have = set(admin.partitions(topic))
        missing = sorted(parts - have)
        if missing:
            raise ConfigError(f"topic {topic} has no partition {', '.join(map(str, missing))}: "
                              f"records are replayed into the partition they came from")


def republish(
    kafka: KafkaSettings, admin: KafkaAdmin, topic: str, ranges: Sequence[PartitionRange],
    target: str, transactional_id: str, reader_group: str, progress: Progress | None = None,
) -> int:
    """Copy the committed records of each range to `target` (same partition); returns the count."""
    check_partitions(admin, {target: {r.partition for r in ranges if r.end > r.start}})
    writer = TransactionalWriter(kafka, transactional_id)
    try:
        for rec in read_ranges(kafka, topic, ranges, reader_group):
            writer.write(copy_record(rec, target))
            if progress is not None:
                progress(1)
        writer.commit()
    finally:
        writer.close()
    log.info("replay.republished", topic=topic, target=target, records=writer.committed)
    return writer.committed


def write_all(kafka: KafkaSettings, admin: KafkaAdmin, records: Sequence[OutboundRecord],
              transactional_id: str, progress: Progress | None = None) -> int:
    """Produce prepared records (e.g. dead letters going home) in transactions."""
    parts: dict[str, set[int]] = {}
    for r in records:
        parts.setdefault(r.topic, set()).update(() if r.partition is None else (r.partition,))
    check_partitions(admin, parts)
    writer = TransactionalWriter(kafka, transactional_id)
    try:
        for rec in records:
            writer.write(rec)
            if progress is not None:
                progress(1)
        writer.commit()
    finally:
        writer.close()
    return writer.committed
