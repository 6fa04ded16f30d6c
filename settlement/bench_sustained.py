"""Sustained end to end: payments offered at a fixed rate across minute cutoffs.

The one-window `e2e` scenario times a burst captured before one cutoff, so its
figure carries the wait it plans for that window's seal. This one measures what
the pipeline carries when payments keep coming: ledger workers and batchers are
up first, then payments are produced at `rate` for `duration_s`, each captured
when it is produced, across at least one minute cutoff (that window is sealed
and published while payments keep arriving) and ending half a second before the
next, so the last window closes as production ends. Measured:

- payments/s carried: every payment produced, recorded by the ledger and placed
  in its batch, over the time from the first produced to the last placed. A
  pipeline that keeps up carries the offered rate (less the last payments'
  latency over the run); one that falls behind carries its capacity;
- the backlog (payments produced but not yet placed) sampled every second, and
  how long it took to clear after the last payment was produced;
- per window: its payments, pacs.008s, and the time from its cutoff + grace to
  its last pacs.008 readable (read_committed) on bank.outbound;
- payments placed after their window was sealed (late: in the next window, not
  lost) and whether every payment is in a batch.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Message

from settlement import loadgen
from settlement.bench_e2e import CURRENCIES, MERCHANTS, pipeline_env, published_windows
from settlement.bench_kit import (
    CommittedReader,
    Meter,
    Outgoing,
    cassandra_facts,
    produce_stream,
    server_procs,
    wait_group_ready,
    wait_until,
)
from settlement.config import Settings
from settlement.kafka.reader import group_lag, headers_dict, pending_records
from settlement.runtime.local import Fleet
from settlement.runtime.namespace import drop, namespace, provision
from settlement.store.session import connect

GRACE_S = 2.0  # the batcher's default seal grace
END_BEFORE_CUTOFF_S = 0.5  # the last payment is captured this long before the last cutoff


@dataclass
class WindowFigures:
    cutoff: str  # ISO instant
    batches: int
    pacs008: int
    payments: int
    seal_s: float | None  # cutoff + grace -> its last pacs.008 readable; None: none sent


@dataclass
class SustainedResult:
    offered_per_s: float
    payments: int
    ledger_workers: int
    batchers: int
    commit_interval_ms: int
    produce_s: float  # first payment produced -> last produced
    produced_per_s: float  # what the producer reached (on the same two cores)
    drain_s: float  # last produced -> every payment recorded and placed
    payments_per_s: float  # payments / (first produced -> last placed)
    kept_up: bool  # no payment late and the backlog cleared within the seal grace
    max_backlog: int  # payments produced but not yet placed, the most sampled
    late: int  # placed after their window's seal, into the next one (not lost)
    in_batches: int  # payment rows in any batch: == payments when none is lost
    max_backlog_by_stage: dict[str, int] = field(default_factory=dict)  # where it waited
    windows: list[WindowFigures] = field(default_factory=list)
    worker_cpu_cores: float = 0.0  # ledger workers and batchers
    cpu_by_role: dict[str, float] = field(default_factory=dict)  # cores, all of a role
    bench_cpu_cores: float = 0.0  # this process: the producer and the readers
    peak_rss_mb: float = 0.0
    server_cpu_cores: dict[str, float] = field(default_factory=dict)
    backlog: list[tuple[float, int]] = field(default_factory=list)  # (s after start, payments)
    cassandra: dict[str, str] = field(default_factory=dict)  # bench_kit.cassandra_facts


def plan(ready_at: float, duration_s: float) -> tuple[float, float]:
    """(first payment's time, last cutoff): production starts once the workers are ready
    and ends END_BEFORE_CUTOFF_S before a whole minute, the earliest that allows."""
    last_cutoff = math.ceil((ready_at + duration_s + END_BEFORE_CUTOFF_S) / 60) * 60
    return last_cutoff - END_BEFORE_CUTOFF_S - duration_s, float(last_cutoff)


def windows_of(rows: Iterable[Any], seen: dict[str, float], grace_s: float,
               up_to: float) -> list[WindowFigures]:
    """Per cutoff up to `up_to` (epoch s), from `batch_index` rows (batch_id, status,
    cutoff_at, payments) and when each batch's pacs.008 became readable."""
    by_cutoff: dict[float, list[Any]] = {}
    for r in rows:
        at = r.cutoff_at.replace(tzinfo=UTC).timestamp()
        if at <= up_to:
            by_cutoff.setdefault(at, []).append(r)
    out = []
    for at in sorted(by_cutoff):
        group = by_cutoff[at]
        readable = [seen[r.batch_id] for r in group if r.status == "sent" and r.batch_id in seen]
        out.append(WindowFigures(
            datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds"), len(group),
            len(readable), sum(r.payments or 0 for r in group),
            round(max(readable) - at - grace_s, 2) if readable else None))
    return out


class _Backlog:
    """Payments produced but not yet placed, sampled on a thread: the ledger group's lag
    on payments.succeeded plus the batcher group's on settlement.items (watermarks: a
    few transaction markers high, so only the exact checks decide when it is clear)."""

    def __init__(self, s: Settings, prefix: str, every_s: float = 1.0) -> None:
        self._s, self._prefix, self._every = s, prefix, every_s
        self.samples: list[tuple[float, int]] = []
        self.most = {"ledger": 0, "batcher": 0}  # each stage's own lag, the most sampled
        self._stop = threading.Event()
        self._t0 = time.time()
        self._thread = threading.Thread(target=self._run, name="bench-backlog", daemon=True)

    def __enter__(self) -> _Backlog:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        s, prefix = self._s, self._prefix
        while not self._stop.wait(self._every):
            try:
                lags = {"ledger": group_lag(s.kafka, f"{prefix}-ledger", s.topics.payments),
                        "batcher": group_lag(s.kafka, f"{prefix}-batcher", s.topics.items)}
            except Exception:  # a sample lost to a slow broker is a gap, not a failure
                continue
            self.samples.append((round(time.time() - self._t0, 1), sum(lags.values())))
            self.most = {k: max(v, lags[k]) for k, v in self.most.items()}


def _records(n: int, start: datetime, span: timedelta, seed: int) -> Iterator[Outgoing]:
    for r in loadgen.generate(n, merchants_n=MERCHANTS, currencies=CURRENCIES, seed=seed,
                              start=start, span=span):
        yield Outgoing(r.key, r.value)


def run_sustained(base: Settings, *, rate: float, duration_s: float, ledger_workers: int,
                  batchers: int, commit_interval_ms: int, prefix: str, log_dir: Path,
                  say: Callable[[str], None], seed: int = 31,
                  timeout_s: float = 300) -> SustainedResult:
    ns = namespace(base, prefix)
    provision(ns)
    s = ns.settings
    session = connect(s.cassandra, keyspace=s.cassandra.keyspace)
    fleet = Fleet([])
    n = int(rate * duration_s)
    try:
        env = pipeline_env(ns, session, commit_interval_ms, seed,
                           SETTLEMENT_BATCHER__SEAL_GRACE_S=str(GRACE_S))
        fleet = Fleet.of("ledger", ledger_workers, env=env, log_dir=log_dir, prefix=f"{prefix}-")
        more = Fleet.of("batcher", batchers, env=env, log_dir=log_dir, prefix=f"{prefix}-")
        fleet.workers += more.workers
        fleet.start()
        wait_group_ready(s.kafka, f"{ns.prefix}-ledger", ledger_workers)
        wait_group_ready(s.kafka, f"{ns.prefix}-batcher", batchers)
        t0, last_cutoff = plan(time.time() + 1, duration_s)
        say(f"  {ledger_workers} ledger workers and {batchers} batchers up; {n:,} payments at "
            f"{rate:,.0f}/s from {datetime.fromtimestamp(t0, UTC):%H:%M:%S} to "
            f"{END_BEFORE_CUTOFF_S} s before the {datetime.fromtimestamp(last_cutoff, UTC):%H:%M} "
            "cutoff")
        seen: dict[str, float] = {}  # batch id -> when its pacs.008 became readable
        lock = threading.Lock()

        def on_pacs008(msg: Message, at: float) -> None:
            with lock:
                seen.setdefault(headers_dict(msg).get("batch_id", ""), at)

        workers = {w.instance_id: psutil.Process(w.pid()) for w in fleet.workers}
        meter = Meter({**workers, "bench": psutil.Process(),
                       **server_procs(s.kafka, s.cassandra.port)})
        records = _records(n, datetime.fromtimestamp(t0, UTC), timedelta(seconds=duration_s), seed)
        time.sleep(max(t0 - time.time(), 0.0))
        meter.start()
        with CommittedReader(s.kafka, s.topics.bank_outbound, on_pacs008), _Backlog(s, ns.prefix) as backlog:
            started = time.time()
            produce_stream(s.kafka, s.topics.payments, records, rate=rate)
            produced = time.time()
            say(f"  produced {n:,} in {produced - started:.1f} s ({n / (produced - started):,.0f}/s);"
                " waiting for the ledger and the batchers to place them ...")
            wait_until("every payment recorded and placed", lambda: _placed(s, ns.prefix), timeout_s,
                       every_s=0.2)
            placed = time.time()
            meter.stop()
            rows: list[Any] = []

            def published() -> bool:
                rows[:] = published_windows(session, seen, lock,
                                            lambda at: at.timestamp() <= last_cutoff) or []
                return bool(rows)

            wait_until("the last window sealed and published", published, timeout_s,
                       every_s=0.3)
        placed_rows = [bool(r.late) for r in session.execute(
            "SELECT payment_id, late FROM batches") if r.payment_id is not None]
        facts = cassandra_facts(session)
    finally:
        fleet.stop()
        session.cluster.shutdown()
        drop(ns)
    with lock:
        windows = windows_of(rows, dict(seen), GRACE_S, last_cutoff)
    drain = placed - produced
    return SustainedResult(
        offered_per_s=rate, payments=n, ledger_workers=ledger_workers, batchers=batchers,
        commit_interval_ms=commit_interval_ms, produce_s=round(produced - started, 2),
        produced_per_s=round(n / (produced - started), 1), drain_s=round(drain, 2),
        payments_per_s=round(n / (placed - started), 1),
        kept_up=not any(placed_rows) and drain <= GRACE_S, max_backlog=max(
            (b for _, b in backlog.samples), default=0), max_backlog_by_stage=backlog.most,
        late=sum(placed_rows), in_batches=len(placed_rows), windows=windows,
        worker_cpu_cores=meter.cores(workers),
        cpu_by_role={role: meter.cores([w.instance_id for w in fleet.workers if w.role == role])
                     for role in ("ledger", "batcher")},
        bench_cpu_cores=meter.cores(["bench"]),
        peak_rss_mb=meter.peak_rss_mb(workers),
        server_cpu_cores={k: meter.cores([k]) for k in ("kafka", "cassandra") if k in meter.procs},
        backlog=backlog.samples, cassandra=facts)


def _placed(s: Settings, prefix: str) -> bool:
    """Exact: the ledger has committed past every payment, and the batchers past every
    item the ledger wrote (read_committed, so transaction markers do not count)."""
    return (group_lag(s.kafka, f"{prefix}-ledger", s.topics.payments) == 0
            and pending_records(s.kafka, f"{prefix}-batcher", s.topics.items) == 0)

