"""`settlement bench all`: every scenario in one run, so the figures are ratios on one machine.

Order: the raw ceiling first (the physical limit), then the ledger matrix (its
maximum sets the latency runs' load: half of it), latency, latency against load
(exactly-once at fractions of that maximum), the batcher, end to end,
reconciliation and last the memory run (its backlog would slow everything after
it). A scenario that fails is recorded with its error and the run goes on.
"""

from __future__ import annotations

import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import confluent_kafka

from settlement import bench, loadgen
from settlement.bench_kit import cassandra_facts, describe_cassandra
from settlement.bench_stats import eos_max, latency_rate, sustained_row
from settlement.config import Settings
from settlement.store.session import connect

SCENARIOS = ("ceiling", "ledger", "latency", "latency_load", "batcher", "e2e", "sustained",
             "reconcile", "memory")


@dataclass(frozen=True)
class Sizes:
    kafka_records: int = 100_000
    insert_rows: int = 40_000
    lwt_rows: int = 20_000
    ceiling_clients: int = 2
    ledger_events: int = 30_000
    # For commit intervals of 1 s and more: the rate is timed from the first commit to the
    # last, whose wait after the backlog drained is 0-1 interval; 30,000 events are ~6 s
    # there, so that wait moved single runs by up to ~15 % (EOS/ALOS 0.75 and 1.20 in one
    # run, 2026-11-23). 90,000 are ~18 s.
    ledger_events_long: int = 90_000
    # Each EOS/ALOS pair twice, in the order EOS ALOS ALOS EOS, each mode's figure the
    # mean: single pairs on this shared machine gave EOS/ALOS 0.72 and 1.18 in one run.
    ledger_repeats: int = 2
    workers: tuple[int, ...] = (1, 2)
    commit_intervals: tuple[int, ...] = (100, 1000)
    latency_s: float = 25.0
    latency_warmup_s: float = 3.0
    # Latency against load: exactly-once, the first commit interval, each worker count,
    # at these fractions of its maximum (the latency scenario gives the point at 0.5).
    load_fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)
    load_s: float = 15.0
    batcher_payouts: int = 10_000
    e2e_payments: int = 10_000
    e2e_workers: int = 2
    # One batcher fell behind the 2 ledger workers and its seal commands queued behind
    # the backlog: 1,091-1,147 payments/s end to end against 1,594-1,626 with 2 (3:
    # 1,645-1,657, no idle core left). After the calendar's window lookup stopped
    # scanning every minute cutoff, 1 batcher 1,471-1,564 against 2 at 1,594-1,636.
    e2e_batchers: int = 2
    # Sustained end to end: the 3,000/s target and 10 %, across a cutoff mid-run and one
    # at the end (the same workers and batchers as e2e).
    sustained_rate: float = 3_300.0
    sustained_s: float = 75.0
    recon_entries: int = 1_000_000
    memory_events: int = 1_000_000
    memory_max_s: float = 150.0


FULL = Sizes()
# 100 ms commits only: 10,000 events are 2-3 s of work, a few 1 s commits, too few to
# measure (it printed 5 events/s once).
QUICK = Sizes(kafka_records=20_000, insert_rows=8_000, lwt_rows=4_000, ledger_events=10_000,
              commit_intervals=(100,), ledger_repeats=1,
              latency_s=6.0, latency_warmup_s=2.0, load_fractions=(0.25,), load_s=5.0,
              batcher_payouts=2_000, e2e_payments=2_000, sustained_s=15.0,
              recon_entries=100_000, memory_events=50_000, memory_max_s=25.0)


@dataclass
class SuiteRun:
    base: Settings
    sizes: Sizes
    out_dir: Path
    say: Callable[[str], None]
    produce: Callable[[Settings, list[loadgen.SampleRecord]], None]
    only: tuple[str, ...] = SCENARIOS
    rate: float = 0.0  # latency load; 0 = half the ledger's measured maximum
    tag: str = field(default_factory=lambda: datetime.now(UTC).strftime("%H%M%S"))

    @property
    def log_dir(self) -> Path:
        return self.out_dir / "logs"


def _meta(sizes: Sizes) -> dict[str, Any]:
    return {"when": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "load_before": [round(x, 2) for x in os.getloadavg()],
            "machine": platform.platform(), "python": platform.python_version(),
            "librdkafka": confluent_kafka.libversion()[0], "sizes": asdict(sizes)}


def _cassandra(base: Settings) -> dict[str, str]:
    """The node's version and commit log settings (a stack that is down: all unknown)."""
    try:
        session = connect(base.cassandra)
    except Exception:  # the scenarios say what is wrong with the stack
        return cassandra_facts(None)
    try:
        return cassandra_facts(session)
    finally:
        session.cluster.shutdown()


def run_suite(r: SuiteRun) -> dict[str, Any]:
    """Run the chosen scenarios in order; the results as one JSON-able dict."""
    suite: dict[str, Any] = {"meta": _meta(r.sizes), "errors": {}, "seconds": {}}
    suite["meta"]["cassandra"] = _cassandra(r.base)
    r.say(describe_cassandra(suite["meta"]["cassandra"]))
    steps: dict[str, Callable[[SuiteRun, dict[str, Any]], Any]] = {
        "ceiling": _ceiling, "ledger": _ledger, "latency": _latency,
        "latency_load": _latency_load, "batcher": _batcher,
        "e2e": _e2e, "sustained": _sustained, "reconcile": _reconcile, "memory": _memory}
    for name in SCENARIOS:
        if name not in r.only:
            continue
        r.say(f"[bold]== {name}[/bold]")
        t0 = time.monotonic()
        try:
            suite[name] = steps[name](r, suite)
        except Exception as exc:  # one scenario's failure must not lose the others' figures
            suite["errors"][name] = f"{type(exc).__name__}: {exc}"
            r.say(f"[red]{name} failed:[/red] {exc}\n{traceback.format_exc(limit=4)}")
        suite["seconds"][name] = round(time.monotonic() - t0, 1)
    suite["meta"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return suite


def _ceiling(r: SuiteRun, _suite: dict[str, Any]) -> dict[str, Any]:
    from settlement.bench_ceiling import run_ceiling

    z = r.sizes
    out = run_ceiling(r.base, r.tag, z.kafka_records, z.insert_rows, z.lwt_rows,
                      clients=z.ceiling_clients)
    for k, v in out.items():
        r.say(f"  {k}: {v['records_per_s']:,.0f}/s, client {v['client_cpu_cores']} cores, servers "
              + ", ".join(f"{s} {c:.2f}" for s, c in sorted(v["server_cpu_cores"].items())))
    return out


def _ledger(r: SuiteRun, _suite: dict[str, Any]) -> list[dict[str, Any]]:
    z = r.sizes
    ccys = ["EUR", "USD"]
    accounts = loadgen.merchants(200, 3, ccys, 11)
    records = list(loadgen.generate(z.ledger_events, merchants_n=200, currencies=ccys, seed=11))
    long = [ci for ci in z.commit_intervals if ci >= 1000]
    more = list(loadgen.generate(z.ledger_events_long, merchants_n=200, currencies=ccys,
                                 seed=11)) if long else []
    return [asdict(x) for x in bench.run_matrix(
        r.base, records, accounts, list(z.workers), list(z.commit_intervals), r.tag, r.log_dir,
        r.produce, r.say, backlog_at=dict.fromkeys(long, more), repeats=z.ledger_repeats)]


def _latency(r: SuiteRun, suite: dict[str, Any]) -> list[dict[str, Any]]:
    return latency_runs(r, suite.get("ledger") or [])


def _latency_load(r: SuiteRun, suite: dict[str, Any]) -> list[dict[str, Any]]:
    return latency_load_runs(r, suite.get("ledger") or [])


def latency_runs(r: SuiteRun, ledger: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """EOS and ALOS latency per commit interval and worker count of `r.sizes`, each at
    `r.rate`, else half the exactly-once maximum `ledger` holds for it (else 400/s)."""
    from settlement.bench_latency import run_latency

    z, out = r.sizes, []
    for i, ci in enumerate(z.commit_intervals):
        for w in z.workers:
            rate = r.rate or latency_rate(ledger, ci, w) or 400.0
            for j, mode in enumerate(("exactly-once", "at-least-once")):
                res = run_latency(r.base, mode=mode, workers=w, commit_interval_ms=ci, rate=rate,
                                  duration_s=z.latency_s, warmup_s=z.latency_warmup_s,
                                  prefix=f"benchl-{r.tag}-{i}{w}{j}", log_dir=r.log_dir)
                r.say(f"  {mode}, {w} worker{'' if w == 1 else 's'}, commit {ci} ms, "
                      f"{rate:,.0f}/s: p50 {res.p50_ms:,.0f} ms, p99 {res.p99_ms:,.0f} ms, "
                      f"max {res.max_ms:,.0f} ms"
                      + (f", {res.missing} never seen" if res.missing else ""))
                out.append(asdict(res))
    return out


def latency_load_runs(r: SuiteRun, ledger: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Exactly-once latency at the first commit interval of `r.sizes`, per worker count, at
    each of its `load_fractions` of the exactly-once maximum `ledger` holds for as many
    workers: where p99 stays within its target, and how it grows towards half the maximum."""
    from settlement.bench_latency import run_latency

    z, out = r.sizes, []
    ci = z.commit_intervals[0]
    for w in z.workers:
        top = eos_max(ledger, ci, w)
        if top is None:
            r.say(f"  {w} worker(s), commit {ci} ms: no exactly-once maximum measured, skipped")
            continue
        for k, fraction in enumerate(z.load_fractions):
            rate = round(top * fraction)
            res = run_latency(r.base, mode="exactly-once", workers=w, commit_interval_ms=ci,
                              rate=rate, duration_s=z.load_s, warmup_s=z.latency_warmup_s,
                              prefix=f"benchv-{r.tag}-{w}{k}", log_dir=r.log_dir)
            r.say(f"  exactly-once, {w} worker{'' if w == 1 else 's'}, commit {ci} ms, "
                  f"{rate:,}/s ({fraction:.0%} of {top:,.0f}/s): p50 {res.p50_ms:,.0f} ms, "
                  f"p99 {res.p99_ms:,.0f} ms"
                  + (f", {res.missing} never seen" if res.missing else ""))
            out.append(asdict(res) | {"load_fraction": fraction, "max_per_s": top})
    if not out and z.load_fractions:
        raise RuntimeError("latency against load needs the ledger scenario's exactly-once "
                           f"maximum at {ci} ms: run it too (--only ledger,latency_load)")
    return out


def _batcher(r: SuiteRun, _suite: dict[str, Any]) -> dict[str, Any]:
    from settlement.bench_batcher import run_batcher_bench

    n = r.sizes.batcher_payouts
    r.say(f"  {n:,} payouts into one batch, sealed at the next minute cutoff ...")
    res = run_batcher_bench(r.base, n, r.log_dir, r.tag, lead_s=10 + n / 1000)
    placed = ("too fast to time" if res.payments_per_s is None
              else f"{res.payments_per_s:,.0f} payments/s")
    r.say(f"  {placed} placed; cutoff+grace -> pacs.008 "
          f"{res.cutoff_to_pacs008_s:.2f} s, -> its payout rows written "
          f"{res.cutoff_to_payouts_s:.2f} s")
    return asdict(res)


def _e2e(r: SuiteRun, suite: dict[str, Any]) -> dict[str, Any]:
    from settlement.bench_e2e import run_e2e

    z = r.sizes
    rate = eos_max(suite.get("ledger") or [], 100, z.e2e_workers)
    res = run_e2e(r.base, payments=z.e2e_payments, ledger_workers=z.e2e_workers,
                  batchers=z.e2e_batchers,
                  commit_interval_ms=100, prefix=f"benche-{r.tag}", log_dir=r.log_dir, say=r.say,
                  expected_rate=rate)
    r.say(f"  {res.payments_per_s:,.0f} payments/s end to end ({res.e2e_s:.1f} s, of which "
          f"{res.seal_wait_s:.1f} s waiting for the planned seal); seal due -> last pacs.008 "
          f"{res.seal_to_pacs008_s:.2f} s")
    return asdict(res)


def _sustained(r: SuiteRun, _suite: dict[str, Any]) -> dict[str, Any]:
    from settlement.bench_sustained import run_sustained

    z = r.sizes
    res = run_sustained(r.base, rate=z.sustained_rate, duration_s=z.sustained_s,
                        ledger_workers=z.e2e_workers, batchers=z.e2e_batchers,
                        commit_interval_ms=100, prefix=f"benchs-{r.tag}", log_dir=r.log_dir,
                        say=r.say)
    r.say(f"  {res.payments_per_s:,.0f} payments/s carried; {sustained_row(asdict(res)).note}")
    return asdict(res)


def _reconcile(r: SuiteRun, _suite: dict[str, Any]) -> dict[str, Any]:
    from settlement.bench_recon import run_recon_bench

    res = run_recon_bench(r.base, r.sizes.recon_entries, 50, r.out_dir / "recon", r.tag,
                          lambda m: r.say(f"  {m}"))
    r.say(f"  {res.entries:,} entries in {res.wall_s:.1f} s, peak RSS {res.peak_rss_mb:.0f} MB")
    return asdict(res)


def _memory(r: SuiteRun, _suite: dict[str, Any]) -> dict[str, Any]:
    from settlement.bench_memory import run_memory

    z = r.sizes
    r.say(f"  producing a {z.memory_events:,}-event backlog first ...")
    res = run_memory(r.base, events=z.memory_events, max_s=z.memory_max_s,
                     prefix=f"benchm-{r.tag}", log_dir=r.log_dir, say=r.say)
    r.say(f"  steady {res.steady_rss_mb:.0f} MB, peak {res.peak_rss_mb:.0f} MB, "
          f"{res.slope_mb_per_min:+.2f} MB/min over the second half; {res.processed:,} processed")
    return asdict(res)


def with_overrides(sizes: Sizes, **changes: Any) -> Sizes:
    """`sizes` with the given fields replaced (None values ignored)."""
    return replace(sizes, **{k: v for k, v in changes.items() if v is not None})
