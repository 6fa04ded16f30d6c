"""Ledger latency at a fixed load: from an event produced to its item visible read_committed.

Ledger worker processes run on a fresh namespace; once they hold their partitions,
payments are produced at a fixed rate (half the measured maximum, in the suite),
each record stamped with the wall-clock time it was handed to the producer (its
CreateTime). A read_committed consumer follows `settlement.items` on a thread and
notes when each payment's item became readable. The latency of a payment is the
difference; the first `warmup_s` of the run are left out (merchant cache, first
transactions). In exactly-once mode an item is readable only when its transaction
commits, so the commit interval is the floor of what this measures.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psutil
from confluent_kafka import Message

from settlement import loadgen
from settlement.bench_kit import (
    CommittedReader,
    Meter,
    Outgoing,
    produce_stream,
    server_procs,
    wait_group_ready,
    wait_until,
)
from settlement.bench_stats import spread
from settlement.config import Settings
from settlement.runtime.local import Fleet, child_env
from settlement.runtime.namespace import drop, namespace, provision
from settlement.store.merchants import CassandraMerchantRegistry
from settlement.store.session import connect

CURRENCIES = ["EUR", "USD"]
MERCHANTS = 200


@dataclass
class LatencyResult:
    mode: str
    workers: int
    commit_interval_ms: int
    rate_per_s: float  # asked for
    achieved_per_s: float  # produced over the run
    events: int  # measured, after the warm-up
    missing: int  # produced, never seen on settlement.items in time
    p50_ms: float
    p99_ms: float
    max_ms: float
    worker_cpu_cores: float
    peak_rss_mb: float
    server_cpu_cores: dict[str, float] = field(default_factory=dict)


def register_merchants(s: Settings, seed: int) -> None:
    session = connect(s.cassandra, keyspace=s.cassandra.keyspace)
    try:
        CassandraMerchantRegistry(session).upsert(
            loadgen.merchants(MERCHANTS, 3, CURRENCIES, seed))
    finally:
        session.cluster.shutdown()


def run_latency(base: Settings, *, mode: str, workers: int, commit_interval_ms: int, rate: float,
                duration_s: float, warmup_s: float, prefix: str, log_dir: Path,
                seed: int = 17) -> LatencyResult:
    ns = namespace(base, prefix)
    provision(ns)
    s = ns.settings
    try:
        register_merchants(s, seed)
        env = child_env(ns.env | {"SETTLEMENT_WORKER__PROCESSING_GUARANTEE": mode,
                                  "SETTLEMENT_WORKER__COMMIT_INTERVAL_MS": str(commit_interval_ms)})
        fleet = Fleet.of("ledger", workers, env=env, log_dir=log_dir, prefix=f"{prefix}-")
        fleet.start()
        try:
            wait_group_ready(s.kafka, f"{ns.prefix}-ledger", workers)
            return _measure(s, fleet, mode, workers, commit_interval_ms, rate, duration_s,
                            warmup_s, seed)
        finally:
            fleet.stop()
    finally:
        drop(ns)


def _measure(s: Settings, fleet: Fleet, mode: str, workers: int, commit_interval_ms: int,
             rate: float, duration_s: float, warmup_s: float, seed: int) -> LatencyResult:
    count = int(rate * (warmup_s + duration_s))
    sent: dict[str, int] = {}  # payment id -> record timestamp (ms)
    seen: dict[str, float] = {}  # payment id -> when readable (s)
    lock = threading.Lock()

    def on_item(msg: Message, at: float) -> None:
        pid = orjson.loads(msg.value() or b"{}").get("payment_id")
        with lock:
            seen.setdefault(pid, at)

    def on_sent(rec: Outgoing, ts_ms: int) -> None:
        sent[rec.key.decode()] = ts_ms

    records = (Outgoing(r.key, r.value) for r in loadgen.generate(
        count, merchants_n=MERCHANTS, currencies=CURRENCIES, seed=seed))
    procs = {w.instance_id: psutil.Process(w.pid()) for w in fleet.workers}
    meter = Meter({**procs, **server_procs(s.kafka, s.cassandra.port)})
    with CommittedReader(s.kafka, s.topics.items, on_item) as reader:
        meter.start()
        t0 = time.monotonic()
        produce_stream(s.kafka, s.topics.payments, records, rate=rate, on_sent=on_sent, linger_ms=5)
        produced_s = time.monotonic() - t0
        with contextlib.suppress(TimeoutError):  # what is never seen is reported as missing
            wait_until("items visible", lambda: len(seen) >= len(sent),
                       timeout_s=commit_interval_ms / 1000 + 30)
        meter.stop()
        if reader.error:
            raise RuntimeError(f"reading {s.topics.items}: {reader.error}")
    start_ms = min(sent.values()) + warmup_s * 1000
    with lock:
        lat = [seen[p] * 1000 - ts for p, ts in sent.items() if ts >= start_ms and p in seen]
        missing = sum(1 for p, ts in sent.items() if ts >= start_ms and p not in seen)
    if not lat:
        raise RuntimeError("no item became visible: see the worker logs")
    sp = spread(lat)
    return LatencyResult(
        mode, workers, commit_interval_ms, rate, round(len(sent) / produced_s, 1), sp.count,
        missing, round(sp.p50, 1), round(sp.p99, 1), round(sp.max, 1),
        meter.cores(procs), meter.peak_rss_mb(procs),
        {k: meter.cores([k]) for k in meter.procs if k not in procs})
