"""End to end: payments.succeeded -> ledger -> batcher -> pacs.008 on bank.outbound.

As the demo does it: N payments captured in the seconds before a minute cutoff
that has just passed, ledger workers already in their group, and batchers with a
seal grace that ends when every payment will have been placed: planned from the
ledger's rate measured just before (the suite), else started once the ledger's
pace shows (`seal_in_s`). Measured:

- payments/s end to end: N over the time from the first payment produced to the
  last pacs.008 of the window readable (read_committed) on bank.outbound;
- the part of that spent waiting for the planned seal after the ledger finished
  (the plan's margin, not work), and the time from the seal being due to the last
  pacs.008 readable (the batcher's seal: read rows, net, render, validate, store,
  publish).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from cassandra.cluster import Session
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
from settlement.config import Settings
from settlement.kafka.reader import group_lag, headers_dict, pending_records
from settlement.runtime.local import Fleet, child_env
from settlement.runtime.namespace import Namespace, drop, namespace, provision
from settlement.store.merchants import CassandraMerchantRegistry
from settlement.store.session import connect

MERCHANTS, CURRENCIES, BANKS = 100, ["EUR", "USD"], 3
BATCHER_BOOT_S = 15.0  # batchers up and in their group before the first payment
# The ledger alone ran at the expected rate; here the batcher places at the same time on the
# same two cores (about a third slower in a measured run), so the seal gets this much more.
SEAL_MARGIN = 1.6
MINUTE_CUTOFFS = {"bic": "DEFAULT", "timezone": "UTC", "holiday_calendar": "none", "weekend": [],
                  "cutoffs": [f"{h:02d}:{m:02d}" for h in range(24) for m in range(60)]}


@dataclass
class E2EResult:
    payments: int
    ledger_workers: int
    batchers: int
    commit_interval_ms: int
    ledger_s: float  # first payment produced -> every payment recorded
    seal_wait_s: float  # ledger done -> seal due: the plan's margin
    seal_to_pacs008_s: float  # seal due -> last pacs.008 readable
    e2e_s: float  # first payment produced -> last pacs.008 readable
    payments_per_s: float  # the window's payments (late ones are in the next window)
    pacs008: int
    payments_in_window: int
    late: int  # placed after the seal, into the next window (not lost)
    worker_cpu_cores: float
    peak_rss_mb: float
    server_cpu_cores: dict[str, float] = field(default_factory=dict)


def seal_in_s(done: int, total: int, elapsed_s: float, boot_s: float = 8.0,
              batcher_rate: float = 3000.0, fallback_rate: float = 300.0) -> float:
    """Seconds from now until the seal should be due: the ledger's remaining work at its
    pace so far with a quarter to spare, or the batchers' start-up and backlog if longer."""
    rate = done / elapsed_s if done and elapsed_s > 0 else fallback_rate
    ledger_left_s = (total - done) / max(rate, 1.0)
    return max(1.25 * ledger_left_s + 2, boot_s + done / batcher_rate) + 2


def pipeline_env(ns: Namespace, session: Session, commit_interval_ms: int, seed: int,
                 **extra: str) -> dict[str, str]:
    """Registers the scenario's merchants; the workers' environment: the commit interval,
    a cutoff every minute, seal checks every 0.2 s, and any `extra` variables."""
    CassandraMerchantRegistry(session).upsert(loadgen.merchants(
        MERCHANTS, BANKS, CURRENCIES, seed, per_payment_share=0.05))
    return child_env(ns.env | {
        "SETTLEMENT_WORKER__COMMIT_INTERVAL_MS": str(commit_interval_ms),
        "SETTLEMENT_BATCHER__DEFAULT_BANK": json.dumps(MINUTE_CUTOFFS),
        "SETTLEMENT_BATCHER__SEAL_CHECK_INTERVAL_S": "0.2", **extra})


def run_e2e(base: Settings, *, payments: int, ledger_workers: int, batchers: int,
            commit_interval_ms: int, prefix: str, log_dir: Path, say: Callable[[str], None],
            expected_rate: float | None = None, seed: int = 29, timeout_s: float = 300) -> E2EResult:
    """`expected_rate`: the ledger's events/s measured before (same workers and commit
    interval): the batchers start before the payments, with the seal planned from it;
    without it they start once the ledger's pace shows (the demo's way)."""
    ns = namespace(base, prefix)
    provision(ns)
    s = ns.settings
    session = connect(s.cassandra, keyspace=s.cassandra.keyspace)
    fleet = Fleet([])
    try:
        env = pipeline_env(ns, session, commit_interval_ms, seed)
        fleet = Fleet.of("ledger", ledger_workers, env=env, log_dir=log_dir, prefix=f"{prefix}-")
        fleet.start()
        wait_group_ready(s.kafka, f"{ns.prefix}-ledger", ledger_workers)
        seen: dict[str, float] = {}  # batch id -> when its pacs.008 became readable
        lock = threading.Lock()

        def on_pacs008(msg: Message, at: float) -> None:
            with lock:
                seen.setdefault(headers_dict(msg).get("batch_id", ""), at)

        cutoff = (datetime.now(UTC) - timedelta(seconds=1)).replace(second=0, microsecond=0)
        records = [Outgoing(r.key, r.value) for r in loadgen.generate(
            payments, merchants_n=MERCHANTS, currencies=CURRENCIES, seed=seed,
            start=cutoff - timedelta(seconds=6), span=timedelta(seconds=5))]
        ledger_procs = {w.instance_id: psutil.Process(w.pid()) for w in fleet.workers}
        meter = Meter({**ledger_procs, **server_procs(s.kafka, s.cassandra.port)}).start()
        group = f"{ns.prefix}-ledger"
        if expected_rate:  # known pace: batchers up before the first payment, none of their start-up
            go = time.time() + BATCHER_BOOT_S  # the first payment is produced then
            seal_due = go + SEAL_MARGIN * payments / expected_rate + 2
            batcher_meter = _start_batchers(seal_due, cutoff, env, batchers, fleet, log_dir, prefix)
            wait_group_ready(s.kafka, f"{ns.prefix}-batcher", batchers, timeout_s=BATCHER_BOOT_S)
            time.sleep(max(go - time.time(), 0.0))
            say(f"  batchers up; seal due {seal_due - cutoff.timestamp():.0f} s after the "
                f"{cutoff:%H:%M} cutoff (the ledger alone ran at {expected_rate:,.0f}/s; "
                f"x{SEAL_MARGIN} for the pipeline)")
        with CommittedReader(s.kafka, s.topics.bank_outbound, on_pacs008):
            t0 = time.time()
            produce_stream(s.kafka, s.topics.payments, records)
            if not expected_rate:
                seal_due, batcher_meter = _start_batchers_on_pace(
                    s, group, payments, t0, cutoff, env, batchers, fleet, log_dir, prefix, say)
            wait_until("ledger", lambda: group_lag(s.kafka, group, s.topics.payments) == 0,
                       timeout_s, every_s=0.3)
            ledger_done = time.time()
            window = _wait_window(s, session, cutoff, seen, lock, f"{ns.prefix}-batcher", timeout_s)
        meter.stop()
        batcher_meter.stop()
        late = sum(1 for r in session.execute("SELECT late FROM batches") if r.late)
    finally:
        fleet.stop()
        session.cluster.shutdown()
        drop(ns)
    sent = [seen[b] for b in window.sent]
    last = max(sent)
    e2e = last - t0
    workers = {**ledger_procs, **batcher_meter.procs}
    cpu_s = sum(m.cpu_seconds([k for k in m.procs if k in workers]) for m in (meter, batcher_meter))
    return E2EResult(
        payments, ledger_workers, batchers, commit_interval_ms, round(ledger_done - t0, 2),
        round(max(seal_due - ledger_done, 0.0), 2), round(last - seal_due, 2), round(e2e, 2),
        round(window.payments / e2e, 1), len(sent), window.payments, late,
        round(cpu_s / e2e, 2), max(meter.peak_rss_mb(ledger_procs), batcher_meter.peak_rss_mb()),
        {k: meter.cores([k]) for k in meter.procs if k not in ledger_procs})


def _start_batchers_on_pace(s: Settings, group: str, total: int, t0: float, cutoff: datetime,
                            env: dict[str, str], n: int, fleet: Fleet, log_dir: Path, prefix: str,
                            say: Callable[[str], None]) -> tuple[float, Meter]:
    """Once a fifth of the payments are recorded (or 6 s passed), start the batchers with a
    seal grace ending when all of them will have been placed; returns when the seal is due."""
    while True:
        left = group_lag(s.kafka, group, s.topics.payments)
        done, elapsed = total - left, time.time() - t0
        if done >= total / 5 or elapsed >= 6 or left == 0:
            break
        time.sleep(0.3)
    seal_due = time.time() + seal_in_s(done, total, elapsed)
    meter = _start_batchers(seal_due, cutoff, env, n, fleet, log_dir, prefix)
    say(f"  batchers started at {done:,}/{total:,} recorded ({done / max(elapsed, 1e-9):,.0f}/s); "
        f"seal due {seal_due - cutoff.timestamp():.0f} s after the {cutoff:%H:%M} cutoff")
    return seal_due, meter


def _start_batchers(seal_due: float, cutoff: datetime, env: dict[str, str], n: int, fleet: Fleet,
                    log_dir: Path, prefix: str) -> Meter:
    grace = seal_due - cutoff.timestamp()
    batchers = Fleet.of("batcher", n, env=env | {"SETTLEMENT_BATCHER__SEAL_GRACE_S": f"{grace:.1f}"},
                        log_dir=log_dir, prefix=f"{prefix}-")
    fleet.workers += batchers.workers
    batchers.start()
    return Meter({w.instance_id: psutil.Process(w.pid()) for w in batchers.workers}).start()


@dataclass
class _Window:
    sent: list[str] = field(default_factory=list)  # batches with a pacs.008
    payments: int = 0


def published_windows(session: Session, seen: dict[str, float], lock: threading.Lock,
                      keep: Callable[[datetime], bool]) -> list[Any] | None:
    """The `batch_index` rows (batch_id, status, cutoff_at, payments) of the windows whose
    cutoff `keep` names, once every one of their batches is sealed and each one sent has
    its pacs.008 readable (in `seen`); None until then."""
    rows = [r for r in session.execute(
        "SELECT batch_id, status, cutoff_at, payments FROM batch_index")
        if keep(r.cutoff_at.replace(tzinfo=UTC))]
    if not rows or any(r.status == "open" for r in rows):
        return None
    with lock:
        if not all(r.batch_id in seen for r in rows if r.status == "sent"):
            return None
    return rows


def _wait_window(s: Settings, session: Session, cutoff: datetime, seen: dict[str, float],
                 lock: threading.Lock, batcher_group: str, timeout_s: float) -> _Window:
    """Until every batch of the window is sealed and each pacs.008 is readable."""
    out = _Window()

    def done() -> bool:
        rows = published_windows(session, seen, lock, lambda at: at == cutoff)
        if rows is None or pending_records(s.kafka, batcher_group, s.topics.items) > 0:
            return False
        out.sent = [r.batch_id for r in rows if r.status == "sent"]
        out.payments = sum(r.payments or 0 for r in rows)
        return True

    wait_until("window sealed and published", done, timeout_s, every_s=0.3)
    return out
