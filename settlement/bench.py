"""Ledger-stage benchmark: exactly-once vs at-least-once, side by side in one run.

Each scenario gets its own topics and keyspace, the same pre-produced backlog,
and K worker processes; throughput is measured from the first committed
progress to an empty backlog (so process start-up is not counted), with worker
RSS and CPU sampled by psutil.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka.admin import AdminClient

from settlement import loadgen
from settlement.bench_kit import meter_servers
from settlement.bench_stats import rate_after_first_commit
from settlement.config import Settings, load_settings
from settlement.kafka.admin import ensure_topics, topic_specs
from settlement.kafka.reader import group_lag
from settlement.runtime.local import Fleet, child_env
from settlement.store.merchants import CassandraMerchantRegistry
from settlement.store.migrate import migrate
from settlement.store.session import connect


@dataclass
class Scenario:
    mode: str
    workers: int
    commit_interval_ms: int


@dataclass
class Result:
    mode: str
    workers: int
    commit_interval_ms: int
    events: int
    seconds: float
    events_per_s: float
    worker_cpu_cores: float
    peak_rss_mb: float
    aborts_seen: int
    server_cpu_cores: dict[str, float] = field(default_factory=dict)  # Kafka, Cassandra
    runs_events_per_s: list[float] = field(default_factory=list)  # each run, when repeated


def _env(prefix: str, sc: Scenario) -> dict[str, str]:
    return {
        "SETTLEMENT_CASSANDRA__KEYSPACE": prefix.replace("-", "_"),
        "SETTLEMENT_WORKER__GROUP_PREFIX": prefix,
        "SETTLEMENT_WORKER__PROCESSING_GUARANTEE": sc.mode,
        "SETTLEMENT_WORKER__COMMIT_INTERVAL_MS": str(sc.commit_interval_ms),
        **{f"SETTLEMENT_TOPICS__{k.upper()}": f"{prefix}.{k}" for k in (
            "payments", "payments_dlq", "items", "items_dlq", "bank_outbound", "bank_inbound", "events")},
    }


def run_scenario(base: Settings, sc: Scenario, records: list[loadgen.SampleRecord],
                 accounts: list[Any], prefix: str, log_dir: Path,
                 produce: Callable[[Settings, list[loadgen.SampleRecord]], None]) -> Result:
    env = _env(prefix, sc)
    s = load_settings(**_overrides(base, env))
    ensure_topics(s.kafka, s.topics)
    session = connect(s.cassandra)
    try:
        migrate(session, s.cassandra)
        CassandraMerchantRegistry(session).upsert(accounts)
        produce(s, records)
        fleet = Fleet.of("ledger", sc.workers, env=child_env(env), log_dir=log_dir,
                         prefix=f"{prefix}-")
        fleet.start()
        procs = [psutil.Process(w.pid()) for w in fleet.workers]
        servers = meter_servers(s)
        total, group = len(records), f"{prefix}-ledger"
        t_start = lag_start = None
        peak_rss = 0
        cpu0: dict[int, float] = {}
        try:
            while True:
                lag = group_lag(s.kafka, group, s.topics.payments)
                now = time.monotonic()
                for p in procs:
                    with contextlib.suppress(psutil.Error):
                        peak_rss = max(peak_rss, p.memory_info().rss)
                if t_start is None and lag < total:
                    t_start, lag_start = now, lag
                    cpu0 = {p.pid: sum(p.cpu_times()[:2]) for p in procs}
                    servers.start()
                if lag == 0:
                    break
                time.sleep(0.2)
            cpu = sum(sum(p.cpu_times()[:2]) - cpu0.get(p.pid, 0.0) for p in procs)
            servers.stop()
        finally:
            fleet.stop()
        assert t_start is not None and lag_start is not None
        secs = max(time.monotonic() - t_start, 1e-6)
        rate = backlog_rate(total, lag_start, secs, sc.commit_interval_ms)
        aborts = sum(w.log_path.read_text().count('"txn.aborting"') for w in fleet.workers)
        return Result(sc.mode, sc.workers, sc.commit_interval_ms, total, round(secs, 2),
                      rate, round(cpu / secs, 2),
                      round(peak_rss / 2**20, 1), aborts,
                      {k: servers.cores([k]) for k in servers.procs})
    finally:
        try:
            session.execute(f"DROP KEYSPACE IF EXISTS {s.cassandra.keyspace}", timeout=60)
        finally:
            session.cluster.shutdown()
        admin = AdminClient(s.kafka.client_config())
        for f in admin.delete_topics([t.name for t in topic_specs(s.topics)]).values():
            f.result(30)


def _overrides(base: Settings, env: dict[str, str]) -> dict[str, Any]:
    topics = {k.split("__")[1].lower(): v for k, v in env.items() if "__TOPICS__" in f"_{k}"
              or k.startswith("SETTLEMENT_TOPICS__")}
    return {
        "cassandra": {**base.cassandra.model_dump(), "keyspace": env["SETTLEMENT_CASSANDRA__KEYSPACE"]},
        "topics": {**base.topics.model_dump(), **topics},
        "kafka": base.kafka.model_dump(),
    }


def write_json(results: list[Result], path: Path, meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=2))


def backlog_rate(total: int, lag_start: int, secs: float, commit_interval_ms: int) -> float:
    """Events/s from the first commit seen (`lag_start` events left) to an empty backlog
    `secs` later, or a RuntimeError when too little was left to measure."""
    rate = rate_after_first_commit(total, lag_start, secs)
    if rate is not None:
        return rate
    if not lag_start:
        raise RuntimeError(f"the {total:,}-event backlog drained between two lag samples: "
                           "too few events to measure at this rate")
    raise RuntimeError(
        f"only {lag_start:,} of {total:,} events were left at the first commit: too few "
        f"to measure {commit_interval_ms} ms commits; use more events")


MODES = ("exactly-once", "at-least-once")


def run_matrix(base: Settings, records: list[loadgen.SampleRecord], accounts: list[Any],
               workers: list[int], commit_intervals: list[int], tag: str, log_dir: Path,
               produce: Callable[[Settings, list[loadgen.SampleRecord]], None],
               say: Callable[[str], None],
               backlog_at: Mapping[int, list[loadgen.SampleRecord]] | None = None,
               repeats: int = 1) -> list[Result]:
    """Every (workers, commit interval) in both modes, exactly-once and at-least-once side
    by side, so drift of the machine hits both alike. `backlog_at`: a bigger backlog for
    some commit intervals (the rate is timed from one commit to the last, so a run must
    span many intervals: the last commit's wait is up to one interval, ~8 % of a 6 s run
    at 1 s commits, in either mode). `repeats` > 1: each pair that many times, the order
    alternating (EOS ALOS, ALOS EOS, ...) so a machine getting faster or slower during
    the pair's runs favours neither mode; each mode's figure is then its runs' mean."""
    results: list[Result] = []
    n = 0
    for w in workers:
        for ci in commit_intervals:
            backlog = (backlog_at or {}).get(ci, records)
            runs: dict[str, list[Result]] = {m: [] for m in MODES}
            for rep in range(repeats):
                for mode in MODES if rep % 2 == 0 else MODES[::-1]:
                    n += 1
                    say(f"[bold]ledger {n}[/bold]: {mode}, {w} worker(s), commit every {ci} ms, "
                        f"{len(backlog):,} events"
                        + (f" (run {rep + 1} of {repeats})" if repeats > 1 else ""))
                    r = run_scenario(base, Scenario(mode, w, ci), backlog, accounts,
                                     f"bench-{tag}-{n}", log_dir, produce)
                    say(f"  {r.events_per_s:,.0f} events/s, {r.worker_cpu_cores} cores, "
                        f"peak RSS {r.peak_rss_mb} MB; servers "
                        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(r.server_cpu_cores.items()))
                        + " cores")
                    runs[mode].append(r)
            results.extend(mean_result(runs[m]) for m in MODES)
    return results


def mean_result(runs: list[Result]) -> Result:
    """One figure for repeated runs of one scenario: the means (peak RSS: the highest,
    aborts: all of them); a single run is returned as it is."""
    if len(runs) == 1:
        return runs[0]
    k = len(runs)
    servers = {name: round(sum(r.server_cpu_cores.get(name, 0.0) for r in runs) / k, 2)
               for name in runs[0].server_cpu_cores}
    return replace(
        runs[0], seconds=round(sum(r.seconds for r in runs) / k, 2),
        events_per_s=round(sum(r.events_per_s for r in runs) / k, 1),
        worker_cpu_cores=round(sum(r.worker_cpu_cores for r in runs) / k, 2),
        peak_rss_mb=max(r.peak_rss_mb for r in runs),
        aborts_seen=sum(r.aborts_seen for r in runs), server_cpu_cores=servers,
        runs_events_per_s=[r.events_per_s for r in runs])
