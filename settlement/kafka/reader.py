"""Read a topic from start to end, read_committed, without joining a group.

Used by operators (DLQ listing) and by checkers: a committed-only view of what
the workers published.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupState,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from settlement.config import KafkaSettings
from settlement.domain.errors import RetryableError

# What a group's coordinator answers while it is moving or loading the offsets partition.
_COORDINATOR_NOT_READY = frozenset({KafkaError.NOT_COORDINATOR,
                                    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                    KafkaError.COORDINATOR_NOT_AVAILABLE})


def read_all(kafka: KafkaSettings, topic: str, timeout_s: float = 60.0) -> Iterator[Message]:
    """Yield every committed record of `topic` up to its current end, then stop."""
    consumer = Consumer({
        **kafka.client_config(),
        "group.id": "settlement-reader",  # never commits; assign() does not join the group
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
    })
    try:
        meta = consumer.list_topics(topic, timeout=10)
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None:
            raise RetryableError(f"topic {topic} not found")
        parts = sorted(tmeta.partitions)
        ends = {}
        for p in parts:
            # read_committed high watermark = last stable offset
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
        todo = {p for p in parts if ends[p] > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise RetryableError(f"timed out reading {topic}; {len(todo)} partitions left")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == err._PARTITION_EOF:
                    todo.discard(msg.partition())
                    continue
                raise RetryableError(f"reading {topic}: {err}")
            partition, offset = position(msg)
            if offset >= ends[partition]:
                todo.discard(partition)
                continue
            yield msg
            if offset + 1 >= ends[partition]:
                todo.discard(partition)
    finally:
        consumer.close()


def position(msg: Message) -> tuple[int, int]:
    """(partition, offset) of a consumed record; librdkafka sets both on every non-error message."""
    partition, offset = msg.partition(), msg.offset()
    assert partition is not None and offset is not None
    return partition, offset


def header_pairs(msg: Message) -> list[tuple[str, bytes]]:
    """A consumed record's headers as (name, value) pairs; a null value becomes b"".

    The stubs also allow a dict and str values (the producer side accepts both); a
    consumed record always carries a list of bytes | None.
    """
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    out: list[tuple[str, bytes]] = []
    for k, v in pairs:
        out.append((k, v.encode() if isinstance(v, str) else v or b""))
    return out


def headers_dict(msg: Message) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in header_pairs(msg):
        out[k] = v.decode("utf-8", "replace")
    return out


def end_offsets(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    """Last stable offset per partition (what read_committed readers can see)."""
    c = Consumer({**kafka.client_config(), "group.id": "settlement-reader",
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    finally:
        c.close()


def committed(c: Consumer, tps: list[TopicPartition], timeout_s: float = 30.0
              ) -> list[TopicPartition]:
    """The group's committed offsets, asked again while the broker says it cannot answer yet.

    Right after a broker starts (or a group's coordinator moves) the offsets partition is
    still loading and `committed` fails with NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS
    or COORDINATOR_NOT_AVAILABLE (the client does not flag these retriable here); a poll
    of a group's progress is "not known yet" then, not a crash. Any other error, or one
    that lasts `timeout_s`, is raised.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return list(c.committed(tps, timeout=10))
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            code = err.code() if isinstance(err, KafkaError) else None
            if code not in _COORDINATOR_NOT_READY or time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def group_lag(kafka: KafkaSettings, group: str, topic: str) -> int:
    """How many records of `topic` the consumer group has not committed yet."""
    c = Consumer({**kafka.client_config(), "group.id": group, "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in parts]
        lag = 0
        for tp in committed(c, tps):
            _low, high = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        c.close()


def pending_records(kafka: KafkaSettings, group: str, topic: str, cap: int = 10_000) -> int:
    """Committed data records after the group's committed offsets (up to `cap`).

    Unlike watermark arithmetic this is exact on transactional topics, where
    commit markers occupy offsets after the last record a group can consume.
    """
    c = Consumer({**kafka.client_config(), "group.id": group, "enable.auto.commit": False,
                  "isolation.level": "read_committed", "enable.partition.eof": True})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        start = committed(c, [TopicPartition(topic, p) for p in parts])
        todo = []
        for tp in start:
            _low, high = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            pos = max(tp.offset, 0)
            if high > pos:
                todo.append(TopicPartition(topic, tp.partition, pos))
        if not todo:
            return 0
        c.assign(todo)
        left = {tp.partition for tp in todo}
        count, deadline = 0, time.monotonic() + 30
        while left and count < cap and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == err._PARTITION_EOF:
                    left.discard(msg.partition())
                continue
            count += 1
        return count if not left or count >= cap else max(count, 1)
    finally:
        c.close()


def ready_members(admin: AdminClient, groups: list[str], timeout_s: float = 10) -> dict[str, int]:
    """Per consumer group: its members holding partitions, or 0 while it is rebalancing."""
    out: dict[str, int] = {}
    for group, fut in admin.describe_consumer_groups(groups, request_timeout=timeout_s).items():
        try:
            desc = fut.result(timeout_s)
        except KafkaException:
            out[group] = 0
            continue
        stable = desc.state == ConsumerGroupState.STABLE
        out[group] = sum(1 for m in desc.members if m.assignment.topic_partitions) if stable else 0
    return out
