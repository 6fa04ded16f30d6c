"""`settlement reconcile`: bank statements (camt.053) against what we sent, into report tables."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from prometheus_client import write_to_textfile
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from settlement import bootstrap, metrics
from settlement.cli.context import console, err_console, fail, run, state
from settlement.domain.money import format_minor
from settlement.domain.reconciliation import Break, RunRecord, Tolerance
from settlement.recon.parse import peak_rss_kb
from settlement.recon.run import Reconciliation, ReconRequest

EXIT_CLEAN, EXIT_BREAKS = 0, 1

reconcile_app = typer.Typer(invoke_without_command=True)


def register(app: typer.Typer) -> None:
    app.add_typer(reconcile_app, name="reconcile")


def parse_day(text: str) -> date:
    today = datetime.now(UTC).date()
    if text == "today":
        return today
    if text == "yesterday":
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not YYYY-MM-DD, today or yesterday") from None


def _amount(minor: int | None, currency: str) -> str:
    if minor is None:
        return ""
    try:
        return format_minor(minor, currency)
    except ValueError:
        return str(minor)


def _break_dict(b: Break) -> dict[str, Any]:
    return {"type": b.type.value, "bank_bic": b.bank_bic, "currency": b.currency,
            "account_id": b.account_id, "end_to_end_id": b.end_to_end_id,
            "acct_svcr_ref": b.acct_svcr_ref, "msg_id": b.msg_id, "statement_id": b.statement_id,
            "expected_minor": b.expected_minor, "booked_minor": b.booked_minor,
            "difference_minor": b.difference_minor if b.expected_minor is not None
            and b.booked_minor is not None else None,
            "expected_date": b.expected_date.isoformat() if b.expected_date else None,
            "booked_date": b.booked_date.isoformat() if b.booked_date else None,
            "detail": b.detail}


def _run_dict(r: RunRecord) -> dict[str, Any]:
    return {"run_id": r.run_id, "run_date": r.run_date.isoformat(), "status": r.status,
            "banks": r.banks, "accounts": r.accounts, "inputs": r.inputs,
            "tolerance": r.tolerance, "expected": r.expected_count, "entries": r.entries_count,
            "matched": r.matched_count, "breaks": r.breaks_count, "break_counts": r.break_counts,
            "totals": r.totals, "digest": r.digest, "started_at": r.started_at.isoformat(),
            "duration_ms": r.duration_ms, "code_version": r.code_version}


def _print(record: RunRecord, fmt: str, max_breaks: int, dry_run: bool = False,
           resources: dict[str, float] | None = None) -> None:
    if fmt == "json":
        sys.stdout.write(json.dumps({"run": _run_dict(record), "dry_run": dry_run,
                                     "resources": resources or {},
                                     "breaks": [_break_dict(b) for b in record.breaks]},
                                    indent=2) + "\n")
        return
    if fmt == "csv":
        out = io.StringIO()
        fields = list(_break_dict(record.breaks[0]).keys()) if record.breaks else ["type"]
        writer = csv.DictWriter(out, fieldnames=["run_id", *fields])
        writer.writeheader()
        for b in record.breaks:
            writer.writerow({"run_id": record.run_id, **_break_dict(b)})
        sys.stdout.write(out.getvalue())
        return
    totals = Table(title=f"reconciliation {record.run_date} — run {record.run_id}"
                   + (" (dry run: nothing stored)" if dry_run else ""))
    for col in ("bank/currency", "expected", "expected amount", "booked", "booked net",
                "matched", "matched amount"):
        totals.add_column(col, justify="left" if col == "bank/currency" else "right")
    for key, t in record.totals.items():
        ccy = key.rsplit("/", 1)[-1]
        totals.add_row(key, f"{t['expected_count']:,}", _amount(t["expected_minor"], ccy),
                       f"{t['booked_count']:,}", _amount(t["booked_minor"], ccy),
                       f"{t['matched_count']:,}", _amount(t["matched_minor"], ccy))
    console.print(totals)
    if record.breaks:
        table = Table(title=f"{record.breaks_count} break(s): "
                      + ", ".join(f"{k} {v}" for k, v in record.break_counts.items()))
        for col in ("type", "bank", "EndToEndId / ref", "expected", "booked", "dates", "detail"):
            table.add_column(col, overflow="fold")
        for b in record.breaks[:max_breaks]:
            dates = " → ".join(d.isoformat() for d in (b.expected_date, b.booked_date) if d)
            table.add_row(b.type.value, b.bank_bic,
                          b.end_to_end_id or b.acct_svcr_ref or b.statement_id,
                          _amount(b.expected_minor, b.currency), _amount(b.booked_minor, b.currency),
                          dates, b.detail)
        console.print(table)
        if len(record.breaks) > max_breaks:
            console.print(f"… and {len(record.breaks) - max_breaks} more: "
                          f"settlement reconcile show {record.run_id} --format csv")
    console.print(f"{record.status.upper()}: {record.expected_count:,} expected, "
                  f"{record.entries_count:,} statement entries, {record.matched_count:,} matched, "
                  f"{record.breaks_count:,} break(s) in {record.duration_ms / 1000:.1f} s")


@reconcile_app.callback()
def reconcile(
    ctx: typer.Context,
    day: Annotated[str | None, typer.Option(
        "--date", help="Day to reconcile: YYYY-MM-DD, today or yesterday.")] = None,
    bank: Annotated[list[str] | None, typer.Option(help="Only this bank BIC (repeatable).")] = None,
    account: Annotated[list[str] | None, typer.Option(
        help="Only this account (IBAN or id, repeatable).")] = None,
    statement: Annotated[list[Path] | None, typer.Option(
        help="camt.053 file(s) (.001.02 to .10) instead of the statements received through "
        "the gateway (repeatable; neighbouring days' files help tell timing from missing).",
        dir_okay=False)] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    dry_run: Annotated[bool, typer.Option(help="Match and print, store nothing.")] = False,
    amount_tolerance: Annotated[int | None, typer.Option(
        help="Minor units a booking may differ by (default: recon.amount_tolerance_minor, 0).")] = None,
    value_date_days: Annotated[int | None, typer.Option(
        help="Days a booking may be off its settlement date (default 0).")] = None,
    window_days: Annotated[int | None, typer.Option(
        help="Days either side to look for bookings made on another day (default 3).")] = None,
    max_breaks: Annotated[int, typer.Option(help="Breaks to list in the table.")] = 50,
    metrics_textfile: Annotated[Path | None, typer.Option(
        help="Also write settlement_reconciliation_breaks_total{type} here, in Prometheus text "
        "format (for node_exporter's textfile collector: a CronJob is never scraped).",
        dir_okay=False)] = None,
) -> None:
    """Reconcile one day: every payout sent and every return received against the banks'
    camt.053 statements, into report tables (runs, breaks, matched items, daily summary,
    merchant settlement report). Money is compared exactly, in integer minor units.

    Exit code: 0 clean, 1 breaks found, 2 error (bad input, unreachable Cassandra): made
    for a CronJob's alerting. A refused statement stores nothing.

    Examples:

      settlement reconcile --date 2026-11-20

      settlement reconcile --date yesterday --bank MOCKDEFFXXX --format json

      settlement reconcile --date 2026-11-20 --statement stmt-1120.xml --statement stmt-1123.xml --dry-run

      settlement reconcile runs --date 2026-11-20

      settlement reconcile diff 20261120-060001-a1b2c3 20261120-093000-d4e5f6
    """
    if ctx.invoked_subcommand is not None:
        return
    if day is None:
        console.print(ctx.get_help())
        fail("--date is required (YYYY-MM-DD, today or yesterday)")
    if fmt not in ("table", "json", "csv"):
        fail(f"--format must be table, json or csv, not {fmt!r}")
    if min(amount_tolerance or 0, value_date_days or 0, window_days or 0) < 0:
        fail("tolerances must be >= 0")  # before Tolerance(), which raises ValueError on them
    settings = state(ctx).settings()
    rs = settings.recon
    request = ReconRequest(
        day=parse_day(day),
        tolerance=Tolerance(
            amount_minor=rs.amount_tolerance_minor if amount_tolerance is None else amount_tolerance,
            value_date_days=rs.value_date_tolerance_days if value_date_days is None else value_date_days,
            window_days=rs.window_days if window_days is None else window_days),
        banks=tuple(bank or ()), accounts=tuple(account or ()), files=tuple(statement or ()),
        dry_run=dry_run, max_statement_bytes=rs.max_statement_bytes)

    def _go() -> RunRecord:
        session = bootstrap.cassandra(settings)
        progress = Progress(TextColumn("reconciling {task.fields[day]}"), BarColumn(),
                            DownloadColumn(), TimeElapsedColumn(), console=err_console,
                            transient=True, disable=not err_console.is_terminal)
        try:
            with progress:
                task = progress.add_task("read", total=None, day=request.day.isoformat())

                def advance(done: int, total: int) -> None:
                    if done % (1 << 20) < 65536 or done == total:
                        progress.update(task, completed=done, total=total or None)

                recon = Reconciliation(bootstrap.recon_store(settings, session), request, advance)
                outcome = recon.run()
                parsers.extend(recon.parser_rss_kb)
                return outcome.record
        finally:
            session.cluster.shutdown()

    parsers: list[int] = []
    record = run(_go)  # a refused statement (ReconInputError) exits 2, nothing stored
    resources = {"peak_rss_mb": round(peak_rss_kb() / 1024, 1),
                 "parser_peak_rss_mb": round(max(parsers, default=0) / 1024, 1)}
    for type_, n in record.break_counts.items():
        metrics.record_breaks(type_, n)
    if metrics_textfile is not None:
        write_to_textfile(str(metrics_textfile), metrics.REGISTRY)
    _print(record, fmt, max_breaks, dry_run, resources)
    raise typer.Exit(EXIT_BREAKS if record.breaks else EXIT_CLEAN)


def _load(ctx: typer.Context, run_id: str) -> RunRecord:
    settings = state(ctx).settings()

    def _go() -> RunRecord | None:
        session = bootstrap.cassandra(settings)
        try:
            return bootstrap.recon_store(settings, session).run(run_id)
        finally:
            session.cluster.shutdown()

    record = run(_go)
    if record is None:
        fail(f"no reconciliation run {run_id!r} (see: settlement reconcile runs --date …)")
    return record


@reconcile_app.command("runs")
def runs(
    ctx: typer.Context,
    day: Annotated[str, typer.Option("--date", help="YYYY-MM-DD, today or yesterday.")],
) -> None:
    """List a day's runs, newest first (the newest supersedes the others, which stay).

    Example: settlement reconcile runs --date 2026-11-20
    """
    settings = state(ctx).settings()

    def _go() -> list[dict[str, Any]]:
        session = bootstrap.cassandra(settings)
        try:
            return bootstrap.recon_store(settings, session).runs_of(parse_day(day))
        finally:
            session.cluster.shutdown()

    rows = run(_go)
    table = Table()
    for col in ("run", "started", "banks", "status", "breaks"):
        table.add_column(col, no_wrap=col == "run")
    for i, r in enumerate(rows):
        table.add_row(r["run_id"] + (" (current)" if i == 0 else ""), r["started_at"].isoformat(),
                      r["scope"], r["status"], str(r["breaks"]))
    console.print(table if rows else f"no runs for {day}")


@reconcile_app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id (see `settlement reconcile runs`).")],
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    max_breaks: Annotated[int, typer.Option(help="Breaks to list in the table.")] = 200,
) -> None:
    """Show a stored run: its figures and breaks.

    Example: settlement reconcile show 20261120-060001-a1b2c3 --format csv > breaks.csv
    """
    _print(_load(ctx, run_id), fmt, max_breaks)


def break_key(b: Break) -> tuple[str, ...]:
    return (b.type.value, b.bank_bic, b.currency, b.account_id, b.end_to_end_id, b.acct_svcr_ref,
            b.statement_id)


@reconcile_app.command("diff")
def diff(
    ctx: typer.Context,
    run_a: Annotated[str, typer.Argument(help="The older run.")],
    run_b: Annotated[str, typer.Argument(help="The newer run.")],
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """What changed between two runs: breaks gone, new and changed, and the figures.

    Exit code 0 when both found the same, 1 when they differ.

    Example: settlement reconcile diff 20261120-060001-a1b2c3 20261120-093000-d4e5f6
    """
    a, b = _load(ctx, run_a), _load(ctx, run_b)
    before = {break_key(x): x for x in a.breaks}
    after = {break_key(x): x for x in b.breaks}
    gone = [before[k] for k in sorted(before.keys() - after.keys())]
    new = [after[k] for k in sorted(after.keys() - before.keys())]
    changed = [(before[k], after[k]) for k in sorted(before.keys() & after.keys())
               if (before[k].expected_minor, before[k].booked_minor, before[k].detail)
               != (after[k].expected_minor, after[k].booked_minor, after[k].detail)]
    figures = {name: (getattr(a, attr), getattr(b, attr)) for name, attr in (
        ("expected", "expected_count"), ("entries", "entries_count"),
        ("matched", "matched_count"), ("breaks", "breaks_count"))}
    same = not (gone or new or changed) and a.digest == b.digest
    if fmt == "json":
        sys.stdout.write(json.dumps({
            "run_a": a.run_id, "run_b": b.run_id, "same": same,
            "figures": {k: {"a": v[0], "b": v[1]} for k, v in figures.items()},
            "gone": [_break_dict(x) for x in gone], "new": [_break_dict(x) for x in new],
            "changed": [{"a": _break_dict(x), "b": _break_dict(y)} for x, y in changed]},
            indent=2) + "\n")
    else:
        table = Table(title=f"{a.run_id} → {b.run_id}")
        for col in ("", "a", "b"):
            table.add_column(col, justify="right" if col else "left")
        for k, (va, vb) in figures.items():
            table.add_row(k, f"{va:,}", f"{vb:,}")
        console.print(table)
        for label, items in (("gone", gone), ("new", new)):
            for x in items:
                console.print(f"{label:>7}: {x.type.value} {x.bank_bic} "
                              f"{x.end_to_end_id or x.acct_svcr_ref or x.statement_id} "
                              f"expected {_amount(x.expected_minor, x.currency)} "
                              f"booked {_amount(x.booked_minor, x.currency)} {x.detail}")
        for x, y in changed:
            console.print(f"changed: {x.type.value} {x.end_to_end_id or x.statement_id}: "
                          f"booked {_amount(x.booked_minor, x.currency)} → "
                          f"{_amount(y.booked_minor, y.currency)}")
        console.print("same result" if same else
                      f"{len(gone)} gone, {len(new)} new, {len(changed)} changed")
    raise typer.Exit(EXIT_CLEAN if same else EXIT_BREAKS)

