"""The pure arithmetic of the benchmark suite: percentiles, memory growth, the summary rows.

No clients, no clocks: the scenarios measure, these functions turn their results
(plain dicts, as written to bench-out/bench.json) into figures and verdicts, so
the verdicts are unit-tested and a JSON file from another machine can be
summarized again.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Targets of issue 8.
LATENCY_SLACK_MS = 250  # p99 produced -> visible read_committed <= commit interval + this
WORKER_RSS_MB = 200.0  # a worker's steady RSS
# Exactly-once ledger throughput / at-least-once: at least this at commit intervals of
# 1 s and more, and EOS_RATIO_SHORT below that (issue 8: 0.9 at 1 s, 0.8 at 100 ms).
EOS_RATIO_LONG, EOS_RATIO_SHORT = 0.9, 0.8
RSS_GROWTH_MB_PER_MIN = 2.0  # above this over the second half of a backlog, memory is not bounded
RECON_WALL_S, RECON_RSS_MB = 60.0, 500.0  # 1,000,000 entries
SEAL_S, SEAL_PAYOUTS = 2.0, 10_000  # a cutoff (+ grace) to its pacs.008 readable on bank.outbound
E2E_PER_S = 3000.0  # payments/s from payments.succeeded into pacs.008


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was measured, never interpolated."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Spread:
    count: int
    p50: float
    p99: float
    max: float


def spread(values: Sequence[float]) -> Spread:
    return Spread(len(values), percentile(values, 50), percentile(values, 99), max(values))


def slope_per_min(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, per minute."""
    if len(samples) < 2:
        return 0.0
    ts = [t for t, _ in samples]
    vs = [v for _, v in samples]
    t_mean, v_mean = statistics.fmean(ts), statistics.fmean(vs)
    var = sum((t - t_mean) ** 2 for t in ts)
    if var == 0:
        return 0.0
    cov = sum((t - t_mean) * (v - v_mean) for t, v in zip(ts, vs, strict=True))
    return cov / var * 60


@dataclass(frozen=True)
class Growth:
    steady_mb: float  # median RSS over the second half
    peak_mb: float
    slope_mb_per_min: float  # least squares over the second half
    grows: bool


def rss_growth(samples: Sequence[tuple[float, float]],
               limit_mb_per_min: float = RSS_GROWTH_MB_PER_MIN) -> Growth:
    """(seconds, RSS MB) samples of one process under load. The first half is warm-up
    (caches, client buffers filling). Memory grows if it still climbs faster than the
    limit in both the third and the last quarter of the run: a leak or a staircase of
    allocations does, one step up (an allocator arena, a buffer grown once) does not."""
    if len(samples) < 2:
        raise ValueError("need at least two RSS samples")
    t0, t1 = samples[0][0], samples[-1][0]

    def part(a: float, b: float) -> list[tuple[float, float]]:
        return [(t, v) for t, v in samples if t0 + a * (t1 - t0) <= t <= t0 + b * (t1 - t0)]

    second = part(0.5, 1.0)
    quarters = min(slope_per_min(part(0.5, 0.75)), slope_per_min(part(0.75, 1.0)))
    return Growth(round(statistics.median(v for _, v in second), 1),
                  round(max(v for _, v in samples), 1), round(slope_per_min(second), 2),
                  quarters > limit_mb_per_min)


@dataclass(frozen=True)
class Row:
    """One line of the summary table."""

    scenario: str
    throughput: float | None = None
    unit: str = ""
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_cores: float | None = None  # the measured client or worker processes
    peak_rss_mb: float | None = None
    ratio: float | None = None
    baseline: str = ""  # what `ratio` divides by
    target: str = ""
    met: bool | None = None  # None: no target
    note: str = ""


def _workers(n: int) -> str:
    return f"{n} worker" + ("" if n == 1 else "s")


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if not num or not den else round(num / den, 2)


def _rss_ok(peak: float | None) -> bool | None:
    return None if peak is None else peak <= WORKER_RSS_MB


def _ceiling_rows(c: Mapping[str, Any]) -> list[Row]:
    rows = []
    kafka_plain = (c.get("kafka_plain") or {}).get("records_per_s")
    insert = (c.get("cassandra_insert") or {}).get("records_per_s")
    for key, label, base, base_name in (
            ("kafka_plain", "ceiling Kafka consume->produce", None, ""),
            ("kafka_txn", "ceiling Kafka consume->produce, txn", kafka_plain,
             "plain"),
            ("cassandra_insert", "ceiling Cassandra INSERT", None, ""),
            ("cassandra_lwt", "ceiling Cassandra INSERT IF NOT EXISTS", insert,
             "INSERT"),
            ("cassandra_lwt_batch", "ceiling Cassandra conditional batches", insert,
             "INSERT")):
        r = c.get(key)
        if not r:
            continue
        rate = r["records_per_s"]
        servers = r.get("server_cpu_cores", {})
        clients = f"{r.get('clients', 1)} client process(es); " if key.startswith("cassandra") else ""
        rows.append(Row(label, rate, "rows/s" if key.startswith("cassandra") else "records/s",
                        cpu_cores=r.get("client_cpu_cores"), ratio=_ratio(rate, base),
                        baseline=base_name,
                        note=clients + ", ".join(f"{k} {v:.2f} cores"
                                                 for k, v in sorted(servers.items()))))
    return rows


def _ledger_rows(results: Sequence[Mapping[str, Any]], lwt: float | None,
                 lwt_name: str = "LWT ceiling") -> list[Row]:
    alos = {(r["workers"], r["commit_interval_ms"]): r["events_per_s"] for r in results
            if r["mode"] == "at-least-once"}
    rows = []
    for r in results:
        eos = r["mode"] == "exactly-once"
        servers = r.get("server_cpu_cores", {})
        ratio = _ratio(r["events_per_s"], alos.get((r["workers"], r["commit_interval_ms"]))
                       if eos else lwt)
        target, met = f"RSS <= {WORKER_RSS_MB:.0f} MB", _rss_ok(r["peak_rss_mb"])
        if eos:
            least = EOS_RATIO_LONG if r["commit_interval_ms"] >= 1000 else EOS_RATIO_SHORT
            target += f", >= {least} x ALOS"
            met = None if met is None or ratio is None else met and ratio >= least
        runs = r.get("runs_events_per_s") or []
        rows.append(Row(
            f"ledger {'EOS' if eos else 'ALOS'}, {_workers(r['workers'])}, "
            f"{r['commit_interval_ms']} ms", r["events_per_s"], "events/s",
            cpu_cores=r["worker_cpu_cores"], peak_rss_mb=r["peak_rss_mb"], ratio=ratio,
            baseline="ALOS" if eos else lwt_name, target=target, met=met,
            note=(f"mean of {' and '.join(f'{x:,.0f}' for x in runs)}; " if runs else "")
            + ", ".join(f"{k} {v:.2f} cores" for k, v in sorted(servers.items()))))
    return rows


def rate_after_first_commit(total: int, left: int, secs: float | None) -> float | None:
    """Records/s from the first commit seen (`left` of `total` still pending then) to none
    pending `secs` later; None when nothing could be timed or less than a quarter was
    left: the figure would then be the last commit's wait, not throughput (`bench all
    --quick` printed 5 events/s for the ledger, and a negative rate for the batcher)."""
    if secs is None or secs <= 0 or not left or left < total / 4:
        return None
    return round(left / secs, 1)


def eos_max(ledger: Sequence[Mapping[str, Any]], commit_interval_ms: int,
            workers: int = 1) -> float | None:
    """The exactly-once maximum `ledger` holds for `workers` processes at this interval."""
    eos = [x["events_per_s"] for x in ledger if x["mode"] == "exactly-once"
           and x["workers"] == workers and x["commit_interval_ms"] == commit_interval_ms]
    return eos[0] if eos else None


def half_load(top: float) -> int:
    """The latency runs' load: half a measured maximum."""
    return round(top / 2)


def latency_rate(ledger: Sequence[Mapping[str, Any]], commit_interval_ms: int,
                 workers: int = 1) -> float | None:
    """Half the exactly-once maximum of `workers` processes at this commit interval."""
    top = eos_max(ledger, commit_interval_ms, workers)
    return None if top is None else half_load(top)


def _latency_met(r: Mapping[str, Any]) -> bool:
    """p99 within commit interval + LATENCY_SLACK_MS, and every item seen."""
    return r["p99_ms"] <= r["commit_interval_ms"] + LATENCY_SLACK_MS and not r.get("missing", 0)


def _latency_rows(results: Sequence[Mapping[str, Any]]) -> list[Row]:
    alos = {(r["workers"], r["commit_interval_ms"]): r["p99_ms"] for r in results
            if r["mode"] == "at-least-once"}
    rows = []
    for r in results:
        eos = r["mode"] == "exactly-once"
        limit = r["commit_interval_ms"] + LATENCY_SLACK_MS
        missing = r.get("missing", 0)
        w = r["workers"]
        rows.append(Row(
            f"latency {'EOS' if eos else 'ALOS'}, {w} worker{'' if w == 1 else 's'}, "
            f"{r['commit_interval_ms']} ms, at {r['rate_per_s']:,.0f}/s", r["achieved_per_s"],
            "events/s",
            p50_ms=r["p50_ms"], p99_ms=r["p99_ms"], cpu_cores=r.get("worker_cpu_cores"),
            peak_rss_mb=r.get("peak_rss_mb"),
            ratio=_ratio(r["p99_ms"], alos.get((r["workers"], r["commit_interval_ms"])))
            if eos else None, baseline="ALOS p99" if eos else "",
            target=f"p99 <= {limit} ms", met=_latency_met(r),
            note=f"max {r['max_ms']:.0f} ms" + (f", {missing} never seen" if missing else "")))
    return rows


def load_curves(sweep: Sequence[Mapping[str, Any]], latency: Sequence[Mapping[str, Any]]
                ) -> dict[tuple[int, int], list[Mapping[str, Any]]]:
    """Exactly-once latency runs per (workers, commit interval), by load: the load scenario's
    runs, and the latency scenario's run at half the same maximum when there is one."""
    curves: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for r in sweep:
        curves.setdefault((r["workers"], r["commit_interval_ms"]), []).append(r)
    for (w, ci), runs in curves.items():
        top = curve_max(runs)
        runs.extend(x for x in latency if x["mode"] == "exactly-once" and x["workers"] == w
                    and x["commit_interval_ms"] == ci and x["rate_per_s"] == half_load(top))
        runs.sort(key=lambda x: x["rate_per_s"])
    return curves


def curve_max(runs: Sequence[Mapping[str, Any]]) -> float:
    """The maximum a load curve's shares are of (its load-scenario runs carry it)."""
    return float(next(x["max_per_s"] for x in runs if "max_per_s" in x))


def within_target(runs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The highest-load run such that it and every lighter run kept p99 within commit
    interval + LATENCY_SLACK_MS with nothing missing (runs ordered by load)."""
    best = None
    for r in runs:
        if not _latency_met(r):
            break
        best = r
    return best


def _load_rows(sweep: Sequence[Mapping[str, Any]], latency: Sequence[Mapping[str, Any]]
               ) -> list[Row]:
    rows = []
    for (w, ci), runs in sorted(load_curves(sweep, latency).items()):
        limit = ci + LATENCY_SLACK_MS
        best = within_target(runs)
        top = curve_max(runs)
        points = ", ".join(f"{x['rate_per_s'] / top:.0%} {x['p99_ms']:,.0f}" for x in runs)
        rows.append(Row(
            f"latency EOS, {_workers(w)}, {ci} ms, p99 <= {limit} ms up to",
            best["rate_per_s"] if best else None, "events/s",
            p50_ms=best["p50_ms"] if best else None, p99_ms=best["p99_ms"] if best else None,
            cpu_cores=best.get("worker_cpu_cores") if best else None,
            peak_rss_mb=best.get("peak_rss_mb") if best else None,
            note=(f"{best['rate_per_s'] / top:.0%} of the maximum {top:,.0f}/s" if best else
                  f"none of the loads measured (maximum {top:,.0f}/s)")
            + f"; p99 ms by load: {points}"))
    return rows


def _busy(e: Mapping[str, Any]) -> str:
    """End to end without the wait for the planned seal: payments over the ledger's time
    and the seal's (due -> last pacs.008, which includes placing what was left)."""
    busy = e["e2e_s"] - e["seal_wait_s"] if "e2e_s" in e else 0
    return f"; {e['payments'] / busy:,.0f}/s without that wait" if busy > 0 else ""


def sustained_row(e: Mapping[str, Any]) -> Row:
    """The sustained end-to-end run: met when it carried the target rate (or kept up with
    a rate produced at or above it: the last payments' latency then weighs on a short
    run's figure) and every payment is in a batch (late ones, in the next window, count:
    they are not lost)."""
    seals = ", ".join("-" if w["seal_s"] is None else f"{w['seal_s']:.2f}" for w in e["windows"])
    by_stage = e.get("max_backlog_by_stage") or {}  # absent from results written before it
    stages = f" ({', '.join(f'{k} {v:,}' for k, v in by_stage.items())})" if by_stage else ""
    return Row(
        f"e2e sustained, {e['offered_per_s']:,.0f}/s offered for {e['produce_s']:.0f} s, "
        f"{_workers(e['ledger_workers'])}, {e['batchers']} batcher"
        + ("" if e["batchers"] == 1 else "s"),
        e["payments_per_s"], "payments/s", cpu_cores=e["worker_cpu_cores"],
        peak_rss_mb=e["peak_rss_mb"], target=f">= {E2E_PER_S:,.0f}/s",
        met=e["in_batches"] == e["payments"] and (
            e["payments_per_s"] >= E2E_PER_S
            or (e["kept_up"] and e["produced_per_s"] >= E2E_PER_S)),
        note=f"{'kept up' if e['kept_up'] else 'fell behind'}: produced at "
             f"{e['produced_per_s']:,.0f}/s, backlog at most {e['max_backlog']:,}{stages}, placed "
             f"{e['drain_s']:.1f} s after the last; cutoff+grace -> last pacs.008 per window "
             f"{seals} s; {e['late']:,} late (next window), {e['in_batches']:,} of "
             f"{e['payments']:,} in batches; CPU: bench {e['bench_cpu_cores']:.2f}, "
             + ", ".join(f"{k} {v:.2f}" for k, v in e["server_cpu_cores"].items()))


def summarize(suite: Mapping[str, Any]) -> list[Row]:
    """The summary rows of a suite's results, each scenario only if it ran."""
    rows: list[Row] = []
    ceiling = suite.get("ceiling") or {}
    rows += _ceiling_rows(ceiling)
    # The ledger writes by conditional batches; older results only have one LWT per row.
    batched = (ceiling.get("cassandra_lwt_batch") or {}).get("records_per_s")
    lwt = batched or (ceiling.get("cassandra_lwt") or {}).get("records_per_s")
    rows += _ledger_rows(suite.get("ledger") or [], lwt,
                         "LWT batch ceiling" if batched else "LWT ceiling")
    rows += _latency_rows(suite.get("latency") or [])
    rows += _load_rows(suite.get("latency_load") or [], suite.get("latency") or [])
    if b := suite.get("batcher"):
        rows.append(Row(f"batcher, {b['payouts']:,} payouts", b["payments_per_s"], "payments/s",
                        # the target is for a 10,000-payout batch; --quick seals 2,000
                        target=f"seal <= {SEAL_S:.0f} s" if b["payouts"] >= SEAL_PAYOUTS else "",
                        met=b["cutoff_to_pacs008_s"] <= SEAL_S
                        if b["payouts"] >= SEAL_PAYOUTS else None,
                        note=f"cutoff+grace -> pacs.008 {b['cutoff_to_pacs008_s']:.2f} s for "
                             f"{b['nb_of_txs']:,} txs" + (
                                 "" if b.get("cutoff_to_payouts_s") is None else
                                 f", payout rows {b['cutoff_to_payouts_s']:.2f} s")))
    if e := suite.get("e2e"):
        eos2 = eos_max(suite.get("ledger") or [], e["commit_interval_ms"], e["ledger_workers"])
        rows.append(Row(
            f"e2e to pacs.008, {e['payments']:,} payments, {e.get('batchers', 1)} batcher"
            + ("" if e.get("batchers", 1) == 1 else "s"),
            e["payments_per_s"], "payments/s", cpu_cores=e.get("worker_cpu_cores"),
            peak_rss_mb=e.get("peak_rss_mb"), ratio=_ratio(e["payments_per_s"], eos2),
            baseline=f"ledger EOS, {_workers(e['ledger_workers'])}",
            target=f">= {E2E_PER_S:,.0f}/s", met=e["payments_per_s"] >= E2E_PER_S,
            note=f"seal due -> last pacs.008 {e['seal_to_pacs008_s']:.2f} s; "
                 f"{e['pacs008']} pacs.008; waited {e['seal_wait_s']:.1f} s for the seal"
                 + _busy(e)
                 + (f"; {e['late']:,} late (next window, not counted)" if e.get("late") else "")))
    if e := suite.get("sustained"):
        rows.append(sustained_row(e))
    if r := suite.get("reconcile"):
        ok = r["wall_s"] <= RECON_WALL_S * r["entries"] / 1_000_000 and r["peak_rss_mb"] <= RECON_RSS_MB
        rows.append(Row(
            f"reconcile {r['entries']:,} entries", r["entries_per_s"], "entries/s",
            peak_rss_mb=r["peak_rss_mb"],
            target=f"<= {RECON_WALL_S * r['entries'] / 1_000_000:.0f} s, <= {RECON_RSS_MB:.0f} MB",
            met=ok and r["found_breaks"] == {k: v for k, v in r["injected_breaks"].items() if v},
            note=f"wall {r['wall_s']:.1f} s"))
    if m := suite.get("memory"):
        if len(m.get("rss_samples") or []) >= 2:  # the verdict of this version, from the samples
            g = rss_growth([(t, v) for t, v in m["rss_samples"]])
            m = {**m, "steady_rss_mb": g.steady_mb, "slope_mb_per_min": g.slope_mb_per_min,
                 "grows": g.grows}
        rows.append(Row(
            f"memory, {m['backlog']:,} backlog", m["events_per_s"], "events/s",
            cpu_cores=m.get("worker_cpu_cores"), peak_rss_mb=m["peak_rss_mb"],
            target=f"<= {WORKER_RSS_MB:.0f} MB, flat",
            met=m["steady_rss_mb"] <= WORKER_RSS_MB and not m["grows"],
            note=f"steady {m['steady_rss_mb']:.0f} MB, {m['slope_mb_per_min']:+.2f} MB/min, "
                 f"{m['processed']:,} processed in {m['seconds']:.0f} s"
                 + ("" if m["drained"] else " (not drained)")))
    return rows


def fmt(value: float | None, digits: int = 0) -> str:
    """A figure for the table: thousands separators, '-' when not measured."""
    return "-" if value is None else f"{value:,.{digits}f}"


def verdict(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "NO")
