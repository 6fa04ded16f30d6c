"""`settlement bench all|ceiling|latency|e2e|sustained|memory|report`: the suite of issue 8.

Each scenario prints its rows of the summary table and writes JSON; `all` runs
them in one go, writes bench-out/bench.json and draws the PNG plots; `report`
prints the table and redraws the plots from a JSON file written before.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Column, Table

from settlement.bench_stats import Row, fmt, summarize, verdict
from settlement.cli.bench import save_result, write_json
from settlement.cli.context import console, fail, run, state
from settlement.config import Settings
from settlement.runtime.stack import ensure_stack

OUT = Path("bench-out")


def register(bench_app: typer.Typer) -> None:
    for name, fn in (("all", bench_all), ("ceiling", bench_ceiling), ("latency", bench_latency),
                     ("e2e", bench_e2e), ("sustained", bench_sustained),
                     ("memory", bench_memory), ("report", bench_report)):
        bench_app.command(name)(fn)


def _commitlog(meta: dict[str, Any]) -> str:
    """The suite's Cassandra commit log mode, for a title (older reports: unknown)."""
    return f"Cassandra commitlog_sync {meta.get('cassandra', {}).get('commitlog_sync', 'unknown')}"


def render(rows: Sequence[Row], title: str, errors: dict[str, str] | None = None) -> None:
    """The summary table, then each row's notes (server CPU, seal times ...) below it."""
    table = Table(Column("scenario", no_wrap=True), "throughput", "p50 ms", "p99 ms", "CPU cores",
                  "peak RSS MB", "ratio to baseline", "target", "met?", title=title)
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f} x {r.baseline}"
        met = verdict(r.met)
        table.add_row(r.scenario, f"{fmt(r.throughput)} {r.unit}".strip(), fmt(r.p50_ms),
                      fmt(r.p99_ms), fmt(r.cpu_cores, 2), fmt(r.peak_rss_mb), ratio,
                      r.target or "-", f"[red]{met}[/red]" if met == "NO" else met)
    for name in errors or {}:
        table.add_row(f"{name}: [red]FAILED[/red]", *["-"] * 8)
    console.print(table)
    for r in rows:
        if r.note:
            console.print(f"  {r.scenario}: {r.note}", highlight=False)
    for name, err in (errors or {}).items():
        console.print(f"  [red]{name} failed[/red]: {err}", highlight=False)


def _settings(ctx: typer.Context) -> Settings:
    app = state(ctx)
    # warnings and worse unless asked: the table, not migration info lines
    s = app.settings(**({} if app.log_level or app.log_format else {"log": {"level": "warning"}}))
    # The benchmark's own Kafka clients log notices and worse, not librdkafka's info lines.
    s = s.model_copy(update={"kafka": s.kafka.model_copy(
        update={"extra": {"log_level": "5", **s.kafka.extra}})})
    run(lambda: ensure_stack(s))
    return s


def _tag() -> str:
    return datetime.now(UTC).strftime("%H%M%S")


def _draw(suite: dict[str, Any], out_dir: Path) -> None:
    try:
        from settlement.bench_plots import draw
    except ImportError:  # matplotlib is a dev extra
        console.print("[yellow]no plots: matplotlib is not installed (pip install -e '.[dev]')")
        return
    for p in draw(suite, out_dir):
        console.print(f"plot {p}")


def bench_all(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option(help="Small sizes: about 6 minutes instead of 27.")] = False,
    only: Annotated[str, typer.Option(help="Comma-separated scenarios to run (default all): "
                                           "ceiling,ledger,latency,latency_load,batcher,e2e,"
                                           "sustained,reconcile,memory")] = "",
    rate: Annotated[float, typer.Option(min=0, help="Latency runs' load, events/s; 0 = half the "
                                                    "ledger's measured maximum.")] = 0,
    memory_events: Annotated[Optional[int], typer.Option(  # noqa: UP045 - typer needs Optional
        help="Backlog of the memory run.")] = None,
    memory_max_s: Annotated[Optional[float], typer.Option(  # noqa: UP045
        help="Longest memory run, s.")] = None,
    recon_entries: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help="Entries to reconcile.")] = None,
    out_dir: Annotated[Path, typer.Option(help="JSON, plots and worker logs go here.")] = OUT,
) -> None:
    """Every scenario in one run on this machine: the raw Kafka and Cassandra ceiling, the
    ledger in exactly-once vs at-least-once mode (1 and 2 workers, 100 ms and 1 s commit
    intervals), latency at half the maximum load and exactly-once latency against load
    (10-40 % of the maximum), the batcher, end to end to pacs.008,
    reconciliation of 1,000,000 entries and a worker's memory under a 1,000,000-event
    backlog. Prints one summary table (with the targets), writes OUT_DIR/bench.json and
    draws PNG plots in OUT_DIR.

    Example: settlement bench all --quick
    """
    from settlement.bench_suite import FULL, QUICK, SCENARIOS, SuiteRun, run_suite, with_overrides
    from settlement.cli.bench import produce_quietly

    chosen = tuple(x.strip() for x in only.split(",") if x.strip()) or SCENARIOS
    if unknown := set(chosen) - set(SCENARIOS):
        fail(f"unknown scenario(s): {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    sizes = with_overrides(QUICK if quick else FULL, memory_events=memory_events,
                           memory_max_s=memory_max_s, recon_entries=recon_entries)
    s = _settings(ctx)
    suite = run_suite(SuiteRun(s, sizes, out_dir, console.print, produce_quietly, chosen, rate))
    meta = suite["meta"]
    render(summarize(suite), f"settlement bench all{' --quick' if quick else ''}, "
           f"{meta['when']}, {meta['cpus']} cores, load {meta['load_before']} -> "
           f"{meta['load_after']}, {_commitlog(meta)}", suite["errors"])
    write_json(out_dir / "bench.json", suite)
    _draw(suite, out_dir)
    if suite["errors"]:
        raise typer.Exit(1)


def bench_report(
    path: Annotated[Path, typer.Argument(help="A bench.json written by `settlement bench all`.",
                                         exists=True, dir_okay=False)] = OUT / "bench.json",
    plots: Annotated[bool, typer.Option(help="Redraw the PNG plots next to the file.")] = True,
) -> None:
    """Print the summary table of an earlier run (and redraw its plots), no stack needed.

    Example: settlement bench report bench-out/bench.json
    """
    suite = json.loads(path.read_text())
    meta = suite.get("meta", {})
    render(summarize(suite), f"{path}: {meta.get('when', '?')}, load {meta.get('load_before', '?')}"
           f", {_commitlog(meta)}", suite.get("errors"))
    if plots:
        _draw(suite, path.parent)


def bench_ceiling(
    ctx: typer.Context,
    kafka_records: Annotated[int, typer.Option(min=1000, help="Records consumed and produced.")]
    = 100_000,
    insert_rows: Annotated[int, typer.Option(min=1000, help="Plain INSERTs.")] = 40_000,
    lwt_rows: Annotated[int, typer.Option(min=1000, help="INSERT ... IF NOT EXISTS.")] = 20_000,
    clients: Annotated[int, typer.Option(min=1, max=8, help="Cassandra client processes.")] = 2,
    commit_interval: Annotated[int, typer.Option(min=1, help="Kafka commit interval, ms.")] = 100,
    out: Annotated[Path, typer.Option(help="JSON results.")] = OUT / "ceiling.json",
) -> None:
    """The raw ceiling of this machine: confluent-kafka consume->produce (plain and
    transactional) and cassandra-driver writes of ledger rows (plain and LWT), without
    any settlement code, with the client's and the servers' CPU.

    Example: settlement bench ceiling --kafka-records 50000 --lwt-rows 10000 --clients 2
    """
    from settlement.bench_ceiling import run_ceiling

    s = _settings(ctx)
    res = run(lambda: run_ceiling(s, _tag(), kafka_records, insert_rows, lwt_rows, clients,
                                  commit_interval))
    render(summarize({"ceiling": res}), "raw ceiling on this machine")
    save_result(out, {"ceiling": res})


def bench_latency(
    ctx: typer.Context,
    rate: Annotated[float, typer.Option(min=0, help="Events/s; 0 = half the maximum, measured "
                                                    "first with a short backlog run.")] = 0,
    commit_intervals: Annotated[str, typer.Option(help="Commit intervals in ms.")] = "100,1000",
    duration_s: Annotated[float, typer.Option(min=2, help="Measured seconds per run.")] = 25,
    warmup_s: Annotated[float, typer.Option(min=0, help="Seconds left out at the start.")] = 3,
    workers: Annotated[str, typer.Option(help="Ledger worker process counts.")] = "1,2",
    load_fractions: Annotated[str, typer.Option(
        help="Also latency against load: exactly-once at the first commit interval, at "
             "these fractions of the measured maximum, e.g. 0.1,0.2,0.3,0.4 (needs --rate 0; "
             "default none).")] = "",
    out: Annotated[Path, typer.Option(help="JSON results.")] = OUT / "latency.json",
) -> None:
    """p50/p99/max from a payment produced to its item visible read_committed on
    settlement.items, at a fixed load, per worker count and commit interval, EOS and ALOS;
    with --load-fractions, also exactly-once p50/p99 against load.

    Example: settlement bench latency --rate 600 --commit-intervals 100,1000 --workers 1 --duration-s 30

    Example: settlement bench latency --commit-intervals 100 --load-fractions 0.1,0.2,0.3,0.4
    """
    from dataclasses import asdict, replace

    from settlement import bench, loadgen
    from settlement.bench_suite import FULL, SuiteRun, latency_load_runs, latency_runs
    from settlement.cli.bench import fraction_list, int_list, produce_quietly

    intervals = int_list(commit_intervals, "--commit-intervals", 1, 600_000)
    counts = int_list(workers, "--workers", 1, 8)
    fractions = fraction_list(load_fractions, "--load-fractions") if load_fractions else []
    if fractions and rate:
        raise typer.BadParameter("fractions of the maximum need it measured: leave --rate at 0",
                                 param_hint="--load-fractions")
    s = _settings(ctx)
    tag = _tag()
    ledger: list[dict[str, Any]] = []
    if not rate:
        console.print("measuring the maximum first: 20,000-event backlog, exactly-once, "
                      "per worker count and commit interval")
        ccys = ["EUR", "USD"]
        records = list(loadgen.generate(20_000, merchants_n=200, currencies=ccys, seed=11))
        for ci in intervals:
            for w in counts:
                r = run(lambda ci=ci, w=w: bench.run_scenario(  # type: ignore[misc]
                    s, bench.Scenario("exactly-once", w, ci), records,
                    loadgen.merchants(200, 3, ccys, 11), f"bench-{tag}-max{w}{ci}", OUT / "logs",
                    produce_quietly))
                ledger.append(asdict(r))
    sizes = replace(FULL, workers=tuple(counts), commit_intervals=tuple(intervals),
                    latency_s=duration_s, latency_warmup_s=warmup_s,
                    load_fractions=tuple(fractions), load_s=duration_s)
    suite_run = SuiteRun(s, sizes, OUT, console.print, produce_quietly, rate=rate, tag=tag)
    results = run(lambda: latency_runs(suite_run, ledger))
    load = run(lambda: latency_load_runs(suite_run, ledger)) if fractions else []
    render(summarize({"latency": results, "latency_load": load}),
           "latency, produced -> visible read_committed")
    save_result(out, {"ledger": ledger, "latency": results, "latency_load": load})


def bench_e2e(
    ctx: typer.Context,
    payments: Annotated[int, typer.Option(min=100, help="Payments before the cutoff.")] = 10_000,
    workers: Annotated[int, typer.Option(min=1, max=8, help="Ledger processes.")] = 2,
    batchers: Annotated[int, typer.Option(min=1, max=8, help="Batcher processes.")] = 2,
    commit_interval: Annotated[int, typer.Option(min=1, help="Commit interval, ms.")] = 100,
    ledger_rate: Annotated[float, typer.Option(min=0, help="The ledger's events/s if known (e.g. "
                                                           "from bench ledger): batchers start "
                                                           "first; 0 = from its pace.")] = 0,
    out: Annotated[Path, typer.Option(help="JSON results.")] = OUT / "e2e.json",
) -> None:
    """End to end: payments.succeeded -> ledger -> batcher -> pacs.008 readable on
    bank.outbound; payments/s, and the seal: from its due time to the last pacs.008.

    Example: settlement bench e2e --payments 10000 --workers 2
    """
    from dataclasses import asdict

    from settlement.bench_e2e import run_e2e

    s = _settings(ctx)
    res = run(lambda: run_e2e(s, payments=payments, ledger_workers=workers, batchers=batchers,
                              commit_interval_ms=commit_interval, prefix=f"benche-{_tag()}",
                              log_dir=OUT / "logs", say=console.print,
                              expected_rate=ledger_rate or None))
    render(summarize({"e2e": asdict(res)}), "end to end, payments.succeeded -> pacs.008")
    console.print(f"ledger {res.ledger_s:.1f} s, then {res.seal_wait_s:.1f} s to the planned seal, "
                  f"then {res.seal_to_pacs008_s:.2f} s to the last pacs.008; {res.pacs008} pacs.008, "
                  f"{res.payments_in_window:,} payments in the window, {res.late} late")
    save_result(out, {"e2e": asdict(res)})


def bench_sustained(
    ctx: typer.Context,
    rate: Annotated[float, typer.Option(min=100, help="Payments/s offered.")] = 3_300,
    duration_s: Annotated[float, typer.Option(
        min=10, max=600, help="Seconds of payments (75: one cutoff mid-run, one at the end).")] = 75,
    workers: Annotated[int, typer.Option(min=1, max=8, help="Ledger processes.")] = 2,
    batchers: Annotated[int, typer.Option(min=1, max=8, help="Batcher processes.")] = 2,
    commit_interval: Annotated[int, typer.Option(min=1, help="Commit interval, ms.")] = 100,
    out: Annotated[Path, typer.Option(help="JSON results.")] = OUT / "sustained.json",
) -> None:
    """End to end, sustained: payments offered at a fixed rate across minute cutoffs;
    payments/s carried into batches, the backlog, and each window's seal (cutoff + grace
    -> its last pacs.008 readable) while payments keep coming.

    The workers start first, and production ends just before a minute cutoff:
    a run takes up to a minute more than --duration-s.
    The default rate is the 3,000/s target and 10 %: a pipeline that falls behind shows its capacity.

    Example: settlement bench sustained --rate 2000 --duration-s 75
    """
    from dataclasses import asdict

    from settlement.bench_kit import describe_cassandra
    from settlement.bench_sustained import run_sustained

    s = _settings(ctx)
    res = run(lambda: run_sustained(s, rate=rate, duration_s=duration_s, ledger_workers=workers,
                                    batchers=batchers, commit_interval_ms=commit_interval,
                                    prefix=f"benchs-{_tag()}", log_dir=OUT / "logs",
                                    say=console.print))
    render(summarize({"sustained": asdict(res)}), "end to end, sustained")
    console.print(f"  {describe_cassandra(res.cassandra)}", highlight=False)
    save_result(out, {"sustained": asdict(res)})


def bench_memory(
    ctx: typer.Context,
    events: Annotated[int, typer.Option(min=1000, help="Backlog produced first.")] = 1_000_000,
    max_s: Annotated[float, typer.Option(min=10, help="Stop sampling after this long.")] = 900,
    out: Annotated[Path, typer.Option(help="JSON results.")] = OUT / "memory.json",
) -> None:
    """One ledger worker's RSS, sampled every second, while it works through a backlog
    produced before it started: steady RSS, peak, and the slope over the second half.

    Example: settlement bench memory --events 200000 --max-s 120
    """
    from dataclasses import asdict

    from settlement.bench_memory import run_memory

    s = _settings(ctx)
    console.print(f"producing a {events:,}-event backlog first ...")
    res = run(lambda: run_memory(s, events=events, max_s=max_s, prefix=f"benchm-{_tag()}",
                                 log_dir=OUT / "logs", say=console.print))
    suite = {"memory": asdict(res)}
    render(summarize(suite), "worker memory under backlog")
    save_result(out, suite)
    _draw(suite, out.parent)
