"""What the stage loop reports about its Kafka clients: lag, broker reachability, health."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

from settlement import metrics

# librdkafka statistics are only needed for broker reachability: a slow interval is enough.
STATS_INTERVAL_MS = 10_000


@dataclass(frozen=True, slots=True)
class LoopHealth:
    """A snapshot of the loop's state, read by the health endpoints on another thread."""

    started: bool               # run() was entered
    running: bool               # run() has not returned yet
    stopping: bool              # a drain was requested
    heartbeat: float            # time.monotonic() of the last poll step (or construction)
    assignments: int            # partition assignments received (0: not in the group yet)
    partitions: int             # input partitions owned now
    in_outage: bool             # paused: a dependency is down
    kafka_error: str | None     # a fatal client error, or no broker reachable


def observe_lag(consumer: Consumer, role: str, assigned: Iterable[tuple[str, int]]) -> None:
    """Lag = high watermark (cached from the last fetch) - position, per owned partition.

    Local calls only. A partition nothing was consumed from yet has no position,
    so no lag series until its first record.
    """
    tps = [TopicPartition(t, p) for t, p in sorted(assigned)]
    if not tps:
        return
    try:
        positions = consumer.position(tps)
        for tp in positions:
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
            if tp.offset >= 0 and high >= 0:
                metrics.lag(role, tp.topic, tp.partition, max(high - tp.offset, 0))
    except KafkaException:
        return  # e.g. a partition revoked in between: the next observation fixes it


def brokers_up(stats_json: str) -> bool:
    """From a librdkafka statistics document: is any broker connection up?"""
    brokers = orjson.loads(stats_json).get("brokers", {})
    return any(b.get("state") == "UP" for b in brokers.values())
