"""Test-side helpers: produce raw records, read topics read_committed, read the ledger."""

from __future__ import annotations

from collections import Counter

from confluent_kafka import Message, Producer

from settlement.config import Settings
from settlement.domain.merchant import MerchantAccount
from settlement.kafka.reader import read_all
from settlement.store.merchants import CassandraMerchantRegistry
from settlement.store.session import connect


def produce_raw(settings: Settings, records: list[tuple[bytes | None, bytes]],
                topic: str | None = None) -> None:
    p = Producer({**settings.kafka.client_config(), "enable.idempotence": True,
                  "message.max.bytes": 64 * 1024 * 1024, "linger.ms": 10})
    for key, value in records:
        while True:
            try:
                p.produce(topic or settings.topics.payments, value=value, key=key)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(60) == 0


def committed(settings: Settings, topic: str) -> list[Message]:
    return list(read_all(settings.kafka, topic, timeout_s=120))


def ledger_rows(settings: Settings) -> dict[str, tuple[int, int, str, str]]:
    session = connect(settings.cassandra, keyspace=settings.cassandra.keyspace)
    try:
        return {r.payment_id: (r.amount_minor, r.fee_minor, r.currency, r.merchant_id)
                for r in session.execute(
                    "SELECT payment_id, amount_minor, fee_minor, currency, merchant_id FROM ledger_buckets")}
    finally:
        session.cluster.shutdown()


def register(settings: Settings, accounts: list[MerchantAccount]) -> None:
    session = connect(settings.cassandra, keyspace=settings.cassandra.keyspace)
    try:
        CassandraMerchantRegistry(session).upsert(accounts)
    finally:
        session.cluster.shutdown()


def item_counts(settings: Settings) -> Counter[str]:
    """Settlement items per payment. The items topic also carries the batchers' seal
    commands ({"batch_id": ...}): a window that closes while a test polls adds one."""
    import orjson

    values = (orjson.loads(m.value()) for m in committed(settings, settings.topics.items))
    return Counter(v["payment_id"] for v in values if "payment_id" in v)


def payout_statuses(settings: Settings) -> dict[str, tuple[str, str, int]]:
    """EndToEndId -> (status, payout_id, amount_minor), from our payouts table."""
    session = connect(settings.cassandra, keyspace=settings.cassandra.keyspace)
    try:
        return {r.end_to_end_id: (r.status, r.payout_id, r.amount_minor) for r in session.execute(
            "SELECT end_to_end_id, status, payout_id, amount_minor FROM payouts")}
    finally:
        session.cluster.shutdown()
