"""Prometheus metrics of a worker process, and the one-line calls that record them.

Module-level, like the standard prometheus_client idiom: one worker process runs
one role, so the `role` label is enough to tell stages apart when several run in
one process (tests). The registry is ours rather than the library's global one,
so `/metrics` shows exactly what is documented in docs/operations.md (plus the
process, platform and GC collectors). It imports only the domain (for the
reconciliation's break types), so service and every adapter may record into it.

Counters recorded by the loop at commit count what became visible; counters
recorded inside a handler (parked, bank calls) count what was done, which an
aborted and replayed transaction may repeat.
"""

from __future__ import annotations

import contextlib
from collections import Counter as Counter_
from collections.abc import Iterable, Mapping

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from settlement.domain.reconciliation import BreakType

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: nothing alerts on them
REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

# -- the stage loop ---------------------------------------------------------

RECORDS_CONSUMED = Counter(
    "settlement_records_consumed", "Records handed to the stage handler (redelivered ones again).",
    ["role", "topic"], registry=REGISTRY)
RECORDS_PRODUCED = Counter(
    "settlement_records_produced", "Records produced in committed transactions, dead letters included.",
    ["role", "topic"], registry=REGISTRY)
TXN_COMMITTED = Counter(
    "settlement_transactions_committed", "Kafka transactions committed (at-least-once: commit intervals).",
    ["role"], registry=REGISTRY)
TXN_ABORTED = Counter(
    "settlement_transactions_aborted", "Transactions aborted; their input is read again.",
    ["role"], registry=REGISTRY)
DLQ_RECORDS = Counter(
    "settlement_dlq_records", "Dead letters in committed transactions, by DLQ topic and reason.",
    ["role", "topic", "reason"], registry=REGISTRY)
CONSUMER_LAG = Gauge(
    "settlement_consumer_lag", "High watermark minus the consumer's position, per owned partition.",
    ["role", "topic", "partition"], registry=REGISTRY)
ASSIGNED_PARTITIONS = Gauge(
    "settlement_assigned_partitions", "Input partitions this worker owns now.",
    ["role"], registry=REGISTRY)
OUTAGES = Counter(
    "settlement_dependency_outages", "Times the loop paused its partitions because a dependency was down.",
    ["role"], registry=REGISTRY)
PRODUCER_REBUILDS = Counter(
    "settlement_producer_rebuilds", "Transactional producers rebuilt after a fatal error or a hung call.",
    ["role"], registry=REGISTRY)
HEARTBEAT = Gauge(
    "settlement_loop_heartbeat_timestamp_seconds", "Unix time of the loop's last poll step.",
    ["role"], registry=REGISTRY)

# -- stages -----------------------------------------------------------------

PARKED = Counter(
    "settlement_parked", "Payments (ledger) or bank messages (inbound) parked, by reason.",
    ["role", "reason"], registry=REGISTRY)
PARKED_PAYMENTS = Gauge(
    "settlement_parked_payments", "Payments still parked on this ledger's partitions at its last check.",
    registry=REGISTRY)
BATCH_PAYOUTS = Histogram(
    "settlement_batch_payouts", "Payout transactions per sealed batch (pacs.008 CdtTrfTxInf count).",
    ["bank", "currency"], registry=REGISTRY,
    buckets=(0, 1, 5, 10, 50, 100, 500, 1000, 5000, 10_000, 50_000))
SEAL_LATENCY = Histogram(
    "settlement_seal_latency_seconds", "From a batch's cutoff to the commit that publishes its pacs.008.",
    ["bank"], registry=REGISTRY,
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600))
BANK_CALL = Histogram(
    "settlement_bank_call_seconds", "One HTTP call to a bank API (each inline retry is a call).",
    ["bank", "call"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
BANK_ERRORS = Counter(
    "settlement_bank_call_errors", "Bank calls that got no usable answer, by kind.",
    ["bank", "call", "kind"], registry=REGISTRY)
BREAKER_STATE = Gauge(
    "settlement_breaker_state", "Circuit breaker per bank: 0 closed, 1 half-open, 2 open.",
    ["bank"], registry=REGISTRY)
RECON_BREAKS = Counter(
    "settlement_reconciliation_breaks", "Ledger-vs-bank-statement breaks found, by type.",
    ["type"], registry=REGISTRY)

BANK_ERROR_KINDS = ("timeout", "connect", "transport", "http_3xx", "http_4xx", "http_5xx",
                    "breaker_open")
BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}
BREAK_TYPES = tuple(t.value for t in BreakType)
for _type in BREAK_TYPES:
    RECON_BREAKS.labels(_type)  # present at 0, so a dashboard shows "none" rather than "no data"


# -- the calls --------------------------------------------------------------

def record_breaks(type_: BreakType | str, n: int = 1) -> None:
    """Count `n` reconciliation breaks of one type (a BreakType)."""
    if n:
        RECON_BREAKS.labels(str(type_)).inc(n)


def parked(role: str, reason: str, n: int = 1) -> None:
    PARKED.labels(role, reason).inc(n)


def batch_rendered(bank: str, currency: str, payouts: int) -> None:
    BATCH_PAYOUTS.labels(bank, currency).observe(payouts)


def batch_published(bank: str, seconds_after_cutoff: float) -> None:
    SEAL_LATENCY.labels(bank).observe(max(seconds_after_cutoff, 0.0))


def bank_call(bank: str, call: str, seconds: float) -> None:
    BANK_CALL.labels(bank, call).observe(seconds)


def bank_error(bank: str, call: str, kind: str) -> None:
    """`kind` is one of BANK_ERROR_KINDS."""
    BANK_ERRORS.labels(bank, call, kind).inc()


def breaker_state(bank: str, state: str) -> None:
    BREAKER_STATE.labels(bank).set(BREAKER_STATES.get(state, 2))


def parked_now(n: int) -> None:
    PARKED_PAYMENTS.set(n)


def consumed(role: str, topics: Iterable[str]) -> None:
    for topic, n in Counter_(topics).items():
        RECORDS_CONSUMED.labels(role, topic).inc(n)


def committed(role: str, produced: Mapping[tuple[str, str | None], int]) -> None:
    """One committed transaction and what it made visible: (topic, dead-letter reason) -> n."""
    TXN_COMMITTED.labels(role).inc()
    for (topic, reason), n in produced.items():
        RECORDS_PRODUCED.labels(role, topic).inc(n)
        if reason is not None:
            DLQ_RECORDS.labels(role, topic, reason).inc(n)


def aborted(role: str) -> None:
    TXN_ABORTED.labels(role).inc()


def lag(role: str, topic: str, partition: int, records: int) -> None:
    CONSUMER_LAG.labels(role, topic, str(partition)).set(records)


def assigned(role: str, partitions: int, dropped: Iterable[tuple[str, int]] = ()) -> None:
    """The partitions owned now; the lag series of `dropped` ones (no longer ours) go away."""
    ASSIGNED_PARTITIONS.labels(role).set(partitions)
    for topic, partition in dropped:
        with contextlib.suppress(KeyError):
            CONSUMER_LAG.remove(role, topic, str(partition))
