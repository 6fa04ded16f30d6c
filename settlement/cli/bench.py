"""`settlement bench`: measured figures, printed as a table and written as JSON."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from settlement import bench, loadgen
from settlement.cli.context import console, run, state
from settlement.cli.sample import produce
from settlement.config import Settings
from settlement.runtime.stack import ensure_stack

bench_app = typer.Typer(help="Benchmarks on the local stack (figures, not pass/fail).",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    from settlement.cli import bench_suite

    bench_suite.register(bench_app)
    app.add_typer(bench_app, name="bench")


def produce_quietly(settings: Settings, records: list[loadgen.SampleRecord]) -> None:
    produce(settings, records, rate=0, show_progress=False)


def write_json(path: Path, data: Mapping[str, object]) -> None:
    """`data` as JSON at `path` (its folder made if need be), and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    console.print(f"wrote {path}")


def save_result(out: Path, result: Mapping[str, object]) -> None:
    """One scenario's result as JSON at `out`, stamped with when it was written."""
    write_json(out, {"when": datetime.now(UTC).isoformat(), **result})


N = TypeVar("N", int, float)


def _number_list(text: str, option: str, parse: Callable[[str], N], ok: Callable[[N], bool],
                 expected: str) -> list[N]:
    """A comma-separated option, each value parsed and `ok`, or a usage error."""
    try:
        values = [parse(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or not all(ok(v) for v in values):
        raise typer.BadParameter(f"comma-separated {expected} (got {text!r})", param_hint=option)
    return values


def int_list(text: str, option: str, lo: int, hi: int) -> list[int]:
    """A comma-separated option like "1,2", each value within lo..hi, or a usage error."""
    return _number_list(text, option, int, lambda v: lo <= v <= hi,
                        f"whole numbers from {lo:,} to {hi:,}")


def fraction_list(text: str, option: str) -> list[float]:
    """A comma-separated option like "0.1,0.2", each value above 0 and at most 1, or a usage
    error."""
    return _number_list(text, option, float, lambda v: 0 < v <= 1,
                        "fractions above 0 and at most 1")


@bench_app.command("ledger")
def bench_ledger(
    ctx: typer.Context,
    events: Annotated[int, typer.Option(min=1000, help="Backlog per scenario.")] = 30_000,
    workers: Annotated[str, typer.Option(help="Worker process counts.")] = "1,2",
    commit_intervals: Annotated[str, typer.Option(help="Commit intervals in ms.")] = "100,1000",
    out: Annotated[Path, typer.Option(help="JSON results.")] = Path("bench-out/ledger.json"),
    seed: Annotated[int, typer.Option(help="Sample data seed.")] = 11,
    repeats: Annotated[int, typer.Option(
        min=1, max=10, help="Runs of each EOS/ALOS pair, the order alternating (EOS ALOS, "
                            "ALOS EOS, ...); each figure is the mean of its runs.")] = 1,
) -> None:
    """Ledger throughput in exactly-once vs at-least-once mode (same work), for each
    worker count and commit interval, run side by side; prints ratios.

    Example: settlement bench ledger --events 50000 --workers 1,2 --commit-intervals 100,1000
    --repeats 2
    """
    counts = int_list(workers, "--workers", 1, 8)
    intervals = int_list(commit_intervals, "--commit-intervals", 1, 600_000)
    s = state(ctx).settings()
    run(lambda: ensure_stack(s))
    ccys = ["EUR", "USD"]
    accounts = loadgen.merchants(200, 3, ccys, seed)
    records = list(loadgen.generate(events, merchants_n=200, currencies=ccys, seed=seed))
    tag = datetime.now(UTC).strftime("%H%M%S")
    results = run(partial(bench.run_matrix, s, records, accounts, counts, intervals,
                          tag, Path("bench-out/logs"), produce_quietly,
                          console.print, repeats=repeats))
    table = Table("mode", "workers", "commit ms", "events/s", "EOS/ALOS", "worker CPU (cores)",
                  "peak RSS MB", title=f"ledger stage, {events:,} events backlog"
                  + (f", mean of {repeats} runs each" if repeats > 1 else ""))
    base = {(r.workers, r.commit_interval_ms): r.events_per_s for r in results
            if r.mode == "at-least-once"}
    for r in results:
        ratio = r.events_per_s / base[(r.workers, r.commit_interval_ms)]
        table.add_row(r.mode, str(r.workers), str(r.commit_interval_ms), f"{r.events_per_s:,.0f}",
                      f"{ratio:.2f}" if r.mode == "exactly-once" else "1.00",
                      f"{r.worker_cpu_cores:.2f}", f"{r.peak_rss_mb:.0f}")
    console.print(table)
    bench.write_json(results, out, {"when": datetime.now(UTC).isoformat(), "events": events,
                                    "repeats": repeats,
                                    "cpus": os.cpu_count(), "machine": platform.platform()})
    console.print(f"wrote {out}")


@bench_app.command("batcher")
def bench_batcher(
    ctx: typer.Context,
    payouts: Annotated[int, typer.Option(
        min=100, max=10_000, help="Payments = payouts in the one batch (one pacs.008 holds "
                                  "~10,200 at most: docs/architecture.md).")] = 10_000,
    out: Annotated[Path, typer.Option(help="JSON results.")] = Path("bench-out/batcher.json"),
) -> None:
    """Batcher: payments/s placed into payouts and batches, and the time from a cutoff
    (plus grace) to the batch's pacs.008 on bank.outbound, for one big batch, and to
    its payout rows, which are written after the pacs.008 is published.

    Example: settlement bench batcher --payouts 10000
    """
    from dataclasses import asdict

    from settlement.bench_batcher import run_batcher_bench
    from settlement.bench_kit import describe_cassandra

    s = state(ctx).settings()
    run(lambda: ensure_stack(s))
    console.print(f"placing {payouts:,} per-payment payouts into one batch, then waiting for "
                  "its cutoff (up to 2 minutes) ...")
    tag = datetime.now(UTC).strftime("%H%M%S")
    r = run(lambda: run_batcher_bench(s, payouts, Path("bench-out/logs"), tag))
    table = Table("payouts", "placement s", "payments/s", "cutoff+grace -> pacs.008 s",
                  "-> payout rows written s", "NbOfTxs", "pacs.008 bytes", title="batcher")
    table.add_row(f"{r.payouts:,}", f"{r.placement_s or '-'}",
                  "-" if r.payments_per_s is None else f"{r.payments_per_s:,.0f}",
                  f"{r.cutoff_to_pacs008_s:.3f}",
                  "-" if r.cutoff_to_payouts_s is None else f"{r.cutoff_to_payouts_s:.3f}",
                  f"{r.nb_of_txs:,}", f"{r.xml_bytes:,}")
    console.print(table)
    console.print(f"  {describe_cassandra(r.cassandra)}", highlight=False)
    save_result(out, asdict(r))


@bench_app.command("placement")
def bench_placement(
    ctx: typer.Context,
    payments: Annotated[int, typer.Option(min=1_000, max=1_000_000,
                                          help="Payments, pre-produced as items.")] = 30_000,
    batchers: Annotated[int, typer.Option(min=1, max=8, help="Batcher processes.")] = 1,
    out: Annotated[Path, typer.Option(help="JSON results.")] = Path("bench-out/placement.json"),
) -> None:
    """Batcher placement alone: payments/s placed into batches when the items are spread
    over 3 banks x 2 currencies, so over several items partitions as in production
    (bench batcher has one bank and currency, one partition). No seal.

    Example: settlement bench placement --payments 30000 --batchers 2
    """
    from dataclasses import asdict

    from settlement.bench_batcher import SPREAD, run_placement_bench
    from settlement.bench_kit import describe_cassandra

    s = state(ctx).settings()
    run(lambda: ensure_stack(s))
    console.print(f"placing {payments:,} payments of {len(SPREAD)} banks and currencies with "
                  f"{batchers} batcher{'' if batchers == 1 else 's'} ...")
    tag = datetime.now(UTC).strftime("%H%M%S")
    r = run(lambda: run_placement_bench(s, payments, batchers, Path("bench-out/logs"), tag))
    table = Table("payments", "batchers", "items partitions", "placement s", "payments/s",
                  title="batcher placement")
    table.add_row(f"{r.payments:,}", str(r.batchers), f"{r.partitions} ({r.keys} keys)",
                  f"{r.placement_s or '-'}",
                  "-" if r.payments_per_s is None else f"{r.payments_per_s:,.0f}")
    console.print(table)
    console.print(f"  {describe_cassandra(r.cassandra)}", highlight=False)
    save_result(out, asdict(r))


@bench_app.command("gateway")
def bench_gateway(
    ctx: typer.Context,
    shards: Annotated[int, typer.Option(min=1, max=64, help="Batches per bank.")] = 20,
    txs: Annotated[int, typer.Option(min=1, help="Transactions per batch.")] = 50,
    out: Annotated[Path, typer.Option(help="JSON results.")] = Path("bench-out/gateway.json"),
) -> None:
    """Gateway + inbound against a real mock bank: batches/s and transactions/s delivered,
    and p50/p99 from a pacs.008 on bank.outbound to its pacs.002 applied to the payouts.

    Example: settlement bench gateway --shards 20 --txs 50   (3 banks x 20 = 60 batches)
    """
    from dataclasses import asdict

    from settlement.bench_gateway import run_gateway_bench

    s = state(ctx).settings()
    run(lambda: ensure_stack(s))
    console.print(f"{3 * shards} batches x {txs} transactions through gateway and inbound, "
                  "sealed at the next cutoff (up to 2 minutes) ...")
    tag = datetime.now(UTC).strftime("%H%M%S")
    r = run(lambda: run_gateway_bench(s, shards, txs, Path("bench-out/logs"), tag))
    table = Table("batches", "transactions", "burst s", "batches/s", "txs/s",
                  "p50 s", "p99 s", "max s", title="pacs.008 on bank.outbound -> pacs.002 applied")
    table.add_row(str(r.batches), f"{r.transactions:,}", str(r.burst_s), f"{r.batches_per_s}",
                  f"{r.txs_per_s:,}", f"{r.p50_s}", f"{r.p99_s}", f"{r.max_s}")
    console.print(table)
    save_result(out, asdict(r))


@bench_app.command("reconcile")
def bench_reconcile(
    ctx: typer.Context,
    entries: Annotated[int, typer.Option(min=1000, help="Statement entries = expected payouts.")] = 1_000_000,
    breaks: Annotated[int, typer.Option(min=0, help="Injected breaks of each kind.")] = 50,
    workdir: Annotated[Path, typer.Option(help="Where the statement file goes.")] = Path("bench-out/recon"),
    out: Annotated[Path, typer.Option(help="JSON results.")] = Path("bench-out/reconcile.json"),
) -> None:
    """Reconcile N camt.053 entries against N expected payouts (one day, one bank), with a
    few injected breaks of each kind; prints wall time, entries/s and the child's peak RSS.

    Example: settlement bench reconcile --entries 1000000
    """
    from dataclasses import asdict

    from settlement.bench_recon import run_recon_bench

    s = state(ctx).settings()
    run(lambda: ensure_stack(s))
    tag = datetime.now(UTC).strftime("%H%M%S")
    r = run(lambda: run_recon_bench(s, entries, breaks, workdir, tag, console.print))
    table = Table("entries", "expected", "file MB", "wall s", "entries/s", "peak RSS MB",
                  "matched", "breaks found = injected", title="reconcile (target: 1M vs 1M "
                  "in <= 60 s, <= 500 MB)")
    table.add_row(f"{r.entries:,}", f"{r.expected:,}", f"{r.file_mb:,}", f"{r.wall_s}",
                  f"{r.entries_per_s:,}", f"{r.peak_rss_mb}", f"{r.matched:,}",
                  "yes" if r.found_breaks == {k: v for k, v in r.injected_breaks.items() if v}
                  else f"NO: {r.found_breaks} vs {r.injected_breaks}")
    console.print(table)
    save_result(out, {"cpus": os.cpu_count(), "python": platform.python_version(), **asdict(r)})
