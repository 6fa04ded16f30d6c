"""The one place that builds clients and wires handlers to adapters."""

from __future__ import annotations

from cassandra.cluster import Session

from settlement.config import Settings
from settlement.kafka.loop import StageLoop
from settlement.runtime.worker import Worker
from settlement.service.ledger import LedgerHandler
from settlement.store.ledger import CassandraLedgerStore
from settlement.store.merchants import CassandraMerchantRegistry
from settlement.store.session import connect

ROLES = ("ledger",)


def cassandra(settings: Settings) -> Session:
    return connect(settings.cassandra, keyspace=settings.cassandra.keyspace)


def merchant_registry(settings: Settings, session: Session) -> CassandraMerchantRegistry:
    return CassandraMerchantRegistry(session, settings.ledger.merchant_cache_ttl_s)


def build_worker(settings: Settings, role: str) -> Worker:
    """Build one worker process's clients (after fork: never share them across processes)."""
    if role != "ledger":
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    session = cassandra(settings)
    handler = LedgerHandler(
        CassandraLedgerStore(session, settings.cassandra.concurrency),
        merchant_registry(settings, session),
        settings.topics,
        settings.ledger,
        worker_id=f"{role}-{settings.worker.instance_id}",
    )
    loop = StageLoop(
        kafka=settings.kafka,
        worker=settings.worker,
        handler=handler,
        topics=[settings.topics.payments],
        group_id=f"{settings.worker.group_prefix}-{role}",
        role=role,
        tick_interval_s=settings.ledger.park_release_interval_s,
    )
    return Worker(loop, session)
