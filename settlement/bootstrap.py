"""The one place that builds clients and wires handlers to adapters."""

from __future__ import annotations

from datetime import datetime

import structlog
from cassandra.cluster import Session
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_before_delay,
    wait_exponential,
)

from settlement.bank.client import HttpBankClient
from settlement.config import Settings
from settlement.domain.batch import Party, SealedBatch
from settlement.domain.calendar import PayoutWindow
from settlement.domain.errors import ConfigError, RetryableError
from settlement.iso20022.pacs008 import render_pacs008
from settlement.kafka.loop import StageLoop
from settlement.runtime import startup
from settlement.runtime.health import CachedCheck, Check, HealthApp, HealthServer
from settlement.runtime.worker import Worker
from settlement.service.batcher import BatcherHandler
from settlement.service.calendars import CalendarRegistry
from settlement.service.gateway import GatewayHandler
from settlement.service.inbound import DEFAULT_CONCURRENCY as INBOUND_CONCURRENCY
from settlement.service.inbound import InboundHandler
from settlement.service.ledger import LedgerHandler
from settlement.store.batches import CassandraBatchStore
from settlement.store.deliveries import CassandraDeliveryStore
from settlement.store.inbound import CassandraInboundStore
from settlement.store.ledger import CassandraLedgerStore
from settlement.store.merchants import CassandraMerchantRegistry
from settlement.store.recon import CassandraReconStore
from settlement.store.session import connect, live_hosts

ROLES = ("ledger", "batcher", "gateway", "inbound")
log = structlog.get_logger(__name__)


def group_id(settings: Settings, role: str) -> str:
    """The consumer group of a stage: `<group_prefix>-<role>`."""
    return f"{settings.worker.group_prefix}-{role}"


def stage_inputs(settings: Settings) -> dict[str, str]:
    """Input topic -> the role that consumes it (one stage per topic)."""
    t = settings.topics
    return {t.payments: "ledger", t.items: "batcher", t.bank_outbound: "gateway",
            t.bank_inbound: "inbound"}


def group_for_topic(settings: Settings, topic: str) -> str | None:
    """The group whose committed offsets say how far `topic` was processed, if a stage reads it."""
    role = stage_inputs(settings).get(topic)
    return None if role is None else group_id(settings, role)


class _Calendars:
    """Adapts the calendar registry to what the batcher needs."""

    def __init__(self, settings: Settings) -> None:
        self._registry = CalendarRegistry(settings.banks, settings.batcher.default_bank)
        self._shards = {b.bic: b.shards for b in settings.banks}
        self._default_shards = settings.batcher.default_bank.shards

    def window_of(self, bic: str, captured_at: datetime) -> PayoutWindow:
        return self._registry.window_of(bic, captured_at)

    def next_window(self, bic: str, window: PayoutWindow) -> PayoutWindow:
        return self._registry.for_bic(bic).next_window(window)

    def shards(self, bic: str) -> int:
        return self._shards.get(bic, self._default_shards)


def _render(batch: SealedBatch, debtor: Party, charge_bearer: str, method: str) -> bytes:
    return render_pacs008(batch, debtor, charge_bearer=charge_bearer, settlement_method=method)


def cassandra(settings: Settings) -> Session:
    return connect(settings.cassandra, keyspace=settings.cassandra.keyspace)


def _worker_session(settings: Settings, role: str) -> Session:
    """Cassandra for a starting worker: an unreachable node (restarting, or a rollout of
    both) is retried with backoff for `cassandra.startup_wait_s` instead of exit 2 at
    once; refused credentials or a missing keyspace still fail at once (FatalError), and
    a SIGTERM while waiting stops the worker cleanly (StoppedWhileStarting)."""
    def waiting(state: RetryCallState) -> None:
        log.warning("worker.waiting_for_cassandra", role=role, attempt=state.attempt_number,
                    retry_in_s=state.next_action.sleep if state.next_action else None,
                    error=str(state.outcome.exception() if state.outcome else "")[:300])

    retrying = Retrying(
        retry=retry_if_exception_type(RetryableError),
        wait=wait_exponential(multiplier=0.5, max=8.0),  # 0.5, 1, 2, 4, 8, 8 ... s
        stop=stop_before_delay(settings.cassandra.startup_wait_s),  # no sleep past the deadline
        sleep=startup.wait_unless_stopped, before_sleep=waiting, reraise=True)
    return retrying(cassandra, settings)


def recon_store(settings: Settings, session: Session) -> CassandraReconStore:
    return CassandraReconStore(session, settings.cassandra.concurrency)


def merchant_registry(settings: Settings, session: Session) -> CassandraMerchantRegistry:
    return CassandraMerchantRegistry(session, settings.ledger.merchant_cache_ttl_s)


def _worker(settings: Settings, loop: StageLoop, session: Session) -> Worker:
    """The worker, with its HTTP surface unless worker.health_port is 0 (started by run)."""
    w = settings.worker
    if w.health_port == 0:
        return Worker(loop, session)

    def cassandra_check() -> Check:
        hosts = live_hosts(session)
        return Check(True, f"live: {', '.join(hosts)}") if hosts else Check(
            False, "no live Cassandra host")

    app = HealthApp(loop.health, CachedCheck(cassandra_check, ttl_s=w.health_cache_s),
                    liveness_limit_s=settings.kafka.max_poll_interval_ms / 1000)
    return Worker(loop, session, HealthServer(app, w.health_host, w.health_port))


def build_worker(settings: Settings, role: str) -> Worker:
    """Build one worker process's clients (after fork: never share them across processes)."""
    if role == "batcher":
        return _batcher(settings)
    if role == "gateway":
        return _gateway(settings)
    if role == "inbound":
        return _inbound(settings)
    if role != "ledger":
        raise ConfigError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    session = _worker_session(settings, role)
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
        group_id=group_id(settings, role),
        role=role,
        tick_interval_s=settings.ledger.park_release_interval_s,
    )
    return _worker(settings, loop, session)


def _batcher(settings: Settings) -> Worker:
    calendars = _Calendars(settings)  # a bad [[banks]] entry fails before anything connects
    session = _worker_session(settings, "batcher")
    worker_id = f"batcher-{settings.worker.instance_id}"
    handler = BatcherHandler(
        CassandraBatchStore(session, settings.cassandra.concurrency,
                            settings.cassandra.write_batch_rows),
        merchant_registry(settings, session),
        calendars,
        settings.topics,
        settings.batcher,
        settings.processor,
        _render,
        worker_id,
    )
    loop = StageLoop(
        kafka=settings.kafka,
        worker=settings.worker,
        handler=handler,
        topics=[settings.topics.items],
        group_id=group_id(settings, "batcher"),
        role="batcher",
        tick_interval_s=settings.batcher.seal_check_interval_s,
    )
    return _worker(settings, loop, session)


def _gateway(settings: Settings) -> Worker:
    session = _worker_session(settings, "gateway")
    handler = GatewayHandler(
        CassandraDeliveryStore(session),
        HttpBankClient(settings.gateway, settings.banks),
        settings.topics,
        settings.gateway,
        f"gateway-{settings.worker.instance_id}",
    )
    loop = StageLoop(
        kafka=settings.kafka, worker=settings.worker, handler=handler,
        topics=[settings.topics.bank_outbound],
        group_id=group_id(settings, "gateway"), role="gateway",
        tick_interval_s=min(settings.gateway.poll_interval_s, 1.0),
    )
    return _worker(settings, loop, session)


def _inbound(settings: Settings) -> Worker:
    session = _worker_session(settings, "inbound")
    handler = InboundHandler(CassandraInboundStore(session), settings.topics,
                             f"inbound-{settings.worker.instance_id}",
                             min(settings.cassandra.concurrency, INBOUND_CONCURRENCY))
    loop = StageLoop(
        kafka=settings.kafka, worker=settings.worker, handler=handler,
        topics=[settings.topics.bank_inbound],
        group_id=group_id(settings, "inbound"), role="inbound",
    )
    return _worker(settings, loop, session)
