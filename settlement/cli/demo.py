"""`settlement demo`: ledger and batcher end to end on the local stack, with a checked summary."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent_with_args
from rich.table import Table

from settlement import bootstrap, loadgen
from settlement.cli.context import console, fail, run, state
from settlement.cli.sample import _progress, produce
from settlement.config import Settings
from settlement.domain.money import format_minor
from settlement.kafka.admin import ensure_topics
from settlement.kafka.reader import (
    end_offsets,
    group_lag,
    headers_dict,
    pending_records,
    position,
    read_all,
)
from settlement.runtime.local import Fleet, child_env
from settlement.runtime.stack import ensure_stack
from settlement.store.migrate import migrate
from settlement.store.session import connect


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    ctx: typer.Context,
    payments: Annotated[int, typer.Option(min=100, help="Sample payments to produce.")] = 10_000,
    workers: Annotated[int, typer.Option(min=1, max=8, help="Ledger worker processes.")] = 2,
    batchers: Annotated[int, typer.Option(min=0, max=8, help="Batcher processes (0: ledger only).")] = 2,
    invalid_ratio: Annotated[float, typer.Option(help="Share of bad records.")] = 0.01,
    seed: Annotated[int, typer.Option(help="Sample data seed.")] = 42,
    log_dir: Annotated[Path, typer.Option(help="Worker logs.")] = Path(".demo/logs"),
    timeout_s: Annotated[float, typer.Option(help="Give up after this long.")] = 300,
) -> None:
    """Run the pipeline end to end: start the stack if needed, provision, produce sample
    payments (with bad records and redeliveries), run ledger and batcher processes, and
    print what was recorded, dead-lettered, skipped and paid out in pacs.008 batches,
    checked against what was sent.

    The demo's batchers use a calendar with a cutoff every minute (UTC, every day a
    business day) and the payments are captured in the window open now, so the demo
    ends a little after the next minute's cutoff (about 30 to 90 seconds).

    Example: settlement demo --payments 20000 --workers 2
    """
    s = state(ctx).settings()
    run(lambda: ensure_stack(s))
    run(lambda: ensure_topics(s.kafka, s.topics))

    def _migrate() -> None:
        session = connect(s.cassandra)
        try:
            migrate(session, s.cassandra)
        finally:
            session.cluster.shutdown()

    run(_migrate)
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    ccys = ["EUR", "USD"]
    prefix = f"demo{run_id}-"
    accounts = loadgen.merchants(100, 3, ccys, seed, id_prefix=prefix)
    # Capture the payments in the window that is open now, so they are all placed before
    # its cutoff passes and the batchers seal it (if it closes too soon, use the next one).
    now = datetime.now(UTC)
    boundary = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = now - timedelta(seconds=5) if (boundary - now).total_seconds() >= 25 else (
        boundary + timedelta(seconds=1))
    span = timedelta(seconds=5)
    manifest = list(loadgen.generate(payments, merchants_n=100, currencies=ccys, seed=seed,
                                     invalid_ratio=invalid_ratio, duplicate_ratio=0.005,
                                     id_prefix=prefix, start=start, span=span))
    session = run(lambda: bootstrap.cassandra(s))
    try:
        bootstrap.merchant_registry(s, session).upsert(accounts)
        dlq_start = run(lambda: end_offsets(s.kafka, s.topics.payments_dlq))
        group = f"{s.worker.group_prefix}-ledger"
        env = child_env({"SETTLEMENT_BATCHER__DEFAULT_BANK": json.dumps(DEMO_BANK),
                         "SETTLEMENT_BATCHER__SEAL_GRACE_S": "1",
                         "SETTLEMENT_BATCHER__SEAL_CHECK_INTERVAL_S": "0.5"})
        fleet = Fleet.of("ledger", workers, env=env, log_dir=log_dir, prefix="demo-")
        fleet.workers += Fleet.of("batcher", batchers, env=env, log_dir=log_dir,
                                  prefix="demo-").workers
        console.print(f"[bold]demo run {run_id}[/bold]: {payments} records, {workers} ledger "
                      f"and {batchers} batcher process(es) (exactly-once), logs in {log_dir}/")
        fleet.start()
        t0 = time.monotonic()
        try:
            produce(s, [r for r in manifest], rate=0)
            _wait_drained(s, group, len(manifest), timeout_s)
            elapsed = time.monotonic() - t0
            if batchers:
                _wait_batches(s, session, start, timeout_s)
            batch_s = time.monotonic() - t0
        finally:
            codes = fleet.stop()
        if any(c != 0 for c in codes):
            fail(f"a worker did not exit cleanly: exit codes {codes}; see {log_dir}/")
        ok = _summary(s, session, manifest, dlq_start, elapsed)
        if batchers:
            ok = _batches_summary(session, manifest, start, batch_s, prefix) and ok
        console.print("[green]exactly once: OK[/green]" if ok else "[red]MISMATCH: see above[/red]")
        if not ok:
            raise typer.Exit(1)
    finally:
        session.cluster.shutdown()


DEMO_BANK = {"bic": "DEFAULT", "timezone": "UTC", "holiday_calendar": "none", "weekend": [],
             "cutoffs": [f"{h:02d}:{m:02d}" for h in range(24) for m in range(60)]}


def _run_batches(session: Session, start: datetime) -> list[Any]:
    first = start.strftime("%Y%m%dT%H%M")
    rows = session.execute(
        "SELECT batch_id, bank_bic, currency, window_id, status, nb_of_txs, ctrl_sum, payments, "
        "late_payments FROM batch_index")
    return [r for r in rows if r.window_id > first]


def _wait_batches(s: Settings, session: Session, start: datetime, timeout_s: float) -> None:
    group = f"{s.worker.group_prefix}-batcher"
    deadline = time.monotonic() + timeout_s
    with console.status("batchers sealing the windows' batches ...") as status:
        while True:
            rows = _run_batches(session, start)
            still = sum(1 for r in rows if r.status == "open")
            status.update(f"batchers: {len(rows) - still}/{len(rows)} batches sealed")
            if rows and not still and pending_records(s.kafka, group, s.topics.items) == 0:
                return
            if time.monotonic() > deadline:
                fail(f"{still} batch(es) still open after {timeout_s:.0f}s")
            time.sleep(0.5)


def _batches_summary(session: Session, manifest: list[loadgen.SampleRecord], start: datetime,
                     elapsed: float, prefix: str) -> bool:
    """Per bank and currency, this run's payments and payouts; money checked per currency."""
    ex = session.execute
    rows_q = session.prepare(
        "SELECT payout_id, payment_id, late FROM batches WHERE batch_id = ?")
    payout_q = session.prepare(
        "SELECT amount_minor, status, batch_id FROM payouts WHERE payout_id = ?")
    placed: Counter[str] = Counter()
    agg: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    sent: Counter[str] = Counter()
    for b in _run_batches(session, start):
        mine = [r for r in ex(rows_q, (b.batch_id,))
                if r.payment_id and r.payment_id.startswith(prefix)]
        if not mine:
            continue
        a = agg[(b.bank_bic, b.currency)]
        a[0] += 1
        a[2] += len(mine)
        a[3] += sum(1 for r in mine if r.late)
        placed.update(r.payment_id for r in mine)
        for pid in {r.payout_id for r in mine}:
            po = ex(payout_q, (pid,)).one()
            if po is not None and po.status == "sent":
                a[1] += 1
                a[4] += po.amount_minor
                sent[b.currency] += po.amount_minor
    table = Table("bank", "currency", "pacs.008 batches", "payouts sent", "payments", "late",
                  "total sent", title="paid out (pacs.008 on bank.outbound)")
    for (bank, ccy), (n, txs, pays, late, total) in sorted(agg.items()):
        table.add_row(bank, ccy, str(n), f"{txs:,}", f"{pays:,}", str(late),
                      format_minor(total, ccy))
    console.print(table)
    valid = [r for r in manifest if r.expect == "ledger"]
    net: Counter[str] = Counter()
    for r in valid:
        net[r.currency] += r.amount_minor - r.fee_minor
    once = len(placed) == len(valid) and all(n == 1 for n in placed.values())
    console.print(f"{len(placed):,}/{len(valid):,} payments in exactly one payout; sent "
                  + ", ".join(f"{format_minor(sent[c], c)} {c} (ledger net "
                              f"{format_minor(net[c], c)})" for c in sorted(net))
                  + f"; all sealed {elapsed:.1f}s after start")
    return once and all(sent[c] == net[c] for c in net)


def _wait_drained(s: Settings, group: str, total: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with _progress() as progress:
        task = progress.add_task("ledger workers", total=total, rate="")
        t0 = time.monotonic()
        while True:
            lag = run(lambda: group_lag(s.kafka, group, s.topics.payments))
            done = max(total - lag, 0)
            progress.update(task, completed=done,
                            rate=f"{done / max(time.monotonic() - t0, 1e-9):,.0f}/s")
            if lag == 0:
                return
            if time.monotonic() > deadline:
                fail(f"workers still {lag} records behind after {timeout_s:.0f}s")
            time.sleep(0.5)


def _summary(s: Settings, session: Session, manifest: list[loadgen.SampleRecord],
             dlq_start: dict[int, int], elapsed: float) -> bool:
    valid = [r for r in manifest if r.expect == "ledger"]
    stmt = session.prepare(
        "SELECT payment_id, amount_minor, fee_minor, currency FROM ledger WHERE payment_id = ?")
    results = execute_concurrent_with_args(session, stmt, [(r.payment_id,) for r in valid],
                                           concurrency=100)
    agg: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    exact = 0
    by_id = {r.payment_id: r for r in valid}
    for ok, rows in results:
        row = rows.one() if ok else None
        if row is None:
            continue
        a = agg[row.currency]
        a[0] += 1
        a[1] += row.amount_minor
        a[2] += row.fee_minor
        want = by_id[row.payment_id]
        exact += (row.amount_minor, row.fee_minor) == (want.amount_minor, want.fee_minor)
    table = Table("currency", "payments", "gross", "fees", "net", title="recorded in the ledger")
    for ccy in sorted(agg):
        n, gross, fee = agg[ccy]
        table.add_row(ccy, f"{n:,}", format_minor(gross, ccy), format_minor(fee, ccy),
                      format_minor(gross - fee, ccy))
    console.print(table)
    reasons: Counter[str] = Counter()
    for msg in read_all(s.kafka, s.topics.payments_dlq):
        partition, offset = position(msg)
        if offset >= dlq_start.get(partition, 0):
            reasons[headers_dict(msg).get("dlq.reason", "?")] += 1
    dlq = Table("reason", "records", title=f"dead-lettered to {s.topics.payments_dlq}")
    for reason, n in reasons.most_common():
        dlq.add_row(reason, str(n))
    console.print(dlq)
    recorded = sum(v[0] for v in agg.values())
    sent_bad = sum(1 for r in manifest if r.expect == "dlq")
    dups = sum(1 for r in manifest if r.expect == "duplicate")
    console.print(
        f"{len(manifest):,} records in {elapsed:.1f}s ({len(manifest) / elapsed:,.0f}/s incl. "
        f"start-up): {recorded:,}/{len(valid):,} valid payments recorded with exact amounts, "
        f"{sum(reasons.values())}/{sent_bad} bad records dead-lettered, {dups} redeliveries "
        "skipped")
    return recorded == len(valid) == exact and sum(reasons.values()) == sent_bad
