"""The ledger's partition (bucket) of a payment: a function of its payment_id only.

Dedupe is global because the same payment_id always lands in the same bucket,
whatever Kafka partition or key it arrived with. The hash is Kafka's murmur2 (the
Java client's default partitioner, librdkafka's `murmur2_random`), so when payments
are keyed by payment_id and the topic's partition count divides LEDGER_BUCKETS,
bucket % partitions is the payment's Kafka partition: the workers own disjoint
buckets and their conditional batches never contend.
"""

from __future__ import annotations

# Fixed: changing it moves every payment to another bucket, so it is part of the
# schema (0006_ledger_buckets.cql). A multiple of 1-6, 10, 12, 15, 20 and 30
# partitions; 60 rather than 120 measured ~10 % faster (bigger batches, fewer
# Paxos rounds) for partitions twice the size (docs/architecture.md).
LEDGER_BUCKETS = 60

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (`Utils.murmur2`), as a signed 32-bit int."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length % 4
    if tail:
        if tail == 3:
            h ^= data[end + 2] << 16
        if tail >= 2:
            h ^= data[end + 1] << 8
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def kafka_partition(key: bytes, partitions: int) -> int:
    """Where Kafka's default (murmur2) partitioner puts a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def ledger_bucket(payment_id: str) -> int:
    return kafka_partition(payment_id.encode(), LEDGER_BUCKETS)
