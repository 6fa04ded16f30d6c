"""A ledger worker's memory under a backlog: is it bounded?

The whole backlog (1,000,000 events by default) is produced to payments.succeeded
first, streamed from the generator (never held in memory here); then one ledger
worker starts and its RSS is sampled every second until the backlog is drained
or `max_s` has passed. Steady RSS is the median over the second half of the run,
growth the least-squares slope over that half (bench_stats.rss_growth).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from settlement import loadgen
from settlement.bench_kit import Meter, Outgoing, produce_stream, server_procs
from settlement.bench_latency import CURRENCIES, MERCHANTS, register_merchants
from settlement.bench_stats import rss_growth
from settlement.config import Settings
from settlement.kafka.reader import group_lag
from settlement.runtime.local import Fleet, child_env
from settlement.runtime.namespace import drop, namespace, provision


@dataclass
class MemoryResult:
    backlog: int
    produce_s: float
    seconds: float  # the worker's run, start-up included
    processed: int
    drained: bool
    events_per_s: float  # from the first commit on
    steady_rss_mb: float
    peak_rss_mb: float
    slope_mb_per_min: float
    grows: bool
    worker_cpu_cores: float
    server_cpu_cores: dict[str, float] = field(default_factory=dict)
    rss_samples: list[tuple[float, float]] = field(default_factory=list)  # (s, MB)


def run_memory(base: Settings, *, events: int, max_s: float, prefix: str, log_dir: Path,
               commit_interval_ms: int = 100, say: Callable[[str], None] = print,
               seed: int = 23) -> MemoryResult:
    ns = namespace(base, prefix)
    provision(ns)
    s = ns.settings
    try:
        register_merchants(s, seed)
        t0 = time.monotonic()
        produce_stream(s.kafka, s.topics.payments, (Outgoing(r.key, r.value) for r in loadgen.generate(
            events, merchants_n=MERCHANTS, currencies=CURRENCIES, seed=seed)), linger_ms=50)
        produce_s = time.monotonic() - t0
        say(f"  {events:,} events produced in {produce_s:.0f} s; starting one ledger worker")
        env = child_env(ns.env | {"SETTLEMENT_WORKER__COMMIT_INTERVAL_MS": str(commit_interval_ms)})
        fleet = Fleet.of("ledger", 1, env=env, log_dir=log_dir, prefix=f"{prefix}-")
        fleet.start()
        try:
            worker = psutil.Process(fleet.workers[0].pid())
            meter = Meter({"worker": worker, **server_procs(s.kafka, s.cassandra.port)}).start()
            group, lag, first = f"{ns.prefix}-ledger", events, None
            start = time.monotonic()
            while time.monotonic() - start < max_s and lag > 0 and fleet.workers[0].alive:
                time.sleep(2.0)
                lag = group_lag(s.kafka, group, s.topics.payments)
                if first is None and lag < events:
                    first = (time.monotonic(), lag)  # the first commit: start-up is over
            meter.stop()
            end = time.monotonic()
        finally:
            fleet.stop()
        if not fleet.workers[0].alive and fleet.workers[0].proc and fleet.workers[0].proc.returncode:
            raise RuntimeError(f"the worker exited with {fleet.workers[0].proc.returncode}")
    finally:
        drop(ns)
    samples = [(round(t, 1), round(v, 1)) for t, v in meter.rss_mb.get("worker", [])]
    g = rss_growth(samples)
    rate = 0.0 if first is None else (first[1] - lag) / max(end - first[0], 1e-9)
    return MemoryResult(
        events, round(produce_s, 1), round(meter.seconds, 1), events - lag, lag == 0,
        round(rate, 1), g.steady_mb, g.peak_mb, g.slope_mb_per_min, g.grows,
        meter.cores(["worker"]), {k: meter.cores([k]) for k in meter.procs if k != "worker"},
        samples)
