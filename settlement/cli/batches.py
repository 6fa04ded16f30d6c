"""`settlement batches list|show` and `settlement payouts show`."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Optional

import typer
from cassandra import ConsistencyLevel
from cassandra.query import SimpleStatement
from confluent_kafka import Producer
from rich.table import Table

from settlement import bootstrap
from settlement.cli.context import console, fail, run, state
from settlement.config import Settings
from settlement.domain.money import format_minor

batches_app = typer.Typer(help="Settlement batches (one pacs.008 each).", no_args_is_help=True)
payouts_app = typer.Typer(help="Merchant payouts.", no_args_is_help=True)
RETRY_CONCURRENCY = 32  # `payouts retry --batch`: payouts read and guarded at once


def register(app: typer.Typer) -> None:
    app.add_typer(batches_app, name="batches")
    app.add_typer(payouts_app, name="payouts")


def _query(ctx: typer.Context, cql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    s = state(ctx).settings()

    def _go() -> list[Any]:
        session = bootstrap.cassandra(s)
        try:
            return list(session.execute(cql, params))
        finally:
            session.cluster.shutdown()

    return run(_go)


@batches_app.command("list")
def batches_list(
    ctx: typer.Context,
    bank: Annotated[str | None, typer.Option(help="Only this bank BIC.")] = None,
    date: Annotated[str | None, typer.Option(help="Only windows on this date (YYYY-MM-DD).")] = None,
    status: Annotated[str | None, typer.Option(help="open, sent, empty or oversized.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 100,
) -> None:
    """List batches with their totals, newest window first.

    Example: settlement batches list --bank MOCKDEFFXXX --date 2026-11-02 --status sent
    """
    rows = _query(ctx, "SELECT batch_id, bank_bic, currency, window_id, status, nb_of_txs, "
                       "ctrl_sum, payments, late_payments, msg_id FROM batch_index")
    day = date.replace("-", "") if date else None
    rows = [r for r in rows if (bank is None or r.bank_bic == bank)
            and (day is None or r.window_id.startswith(day))
            and (status is None or r.status == status)]
    rows.sort(key=lambda r: (r.window_id, r.batch_id), reverse=True)
    table = Table()
    table.add_column("batch", no_wrap=True)
    for name in ("status", "txs", "payments", "late", "total"):
        table.add_column(name, no_wrap=True)
    for r in rows[:limit]:
        total = format_minor(r.ctrl_sum, r.currency) if r.ctrl_sum is not None else "-"
        table.add_row(r.batch_id, r.status, str(r.nb_of_txs or 0), str(r.payments or 0),
                      str(r.late_payments or 0), f"{total} {r.currency}")
    console.print(table)
    console.print(f"{len(rows)} batch(es)")


@batches_app.command("show")
def batches_show(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="Batch id (see `batches list`).")],
    xml: Annotated[bool, typer.Option("--xml", help="Print the pacs.008 as sent.")] = False,
) -> None:
    """One batch: its payouts, or with --xml the exact pacs.008 sent to the bank."""
    if xml:
        rows = _query(ctx, "SELECT xml FROM batch_messages WHERE batch_id = %s", (batch_id,))
        if not rows:
            fail(f"no pacs.008 stored for batch {batch_id} (open, empty or unknown)")
        print(bytes(rows[0].xml).decode("utf-8"))
        return
    rows = _query(ctx, "SELECT payout_id, payment_id, merchant_id, amount_minor, fee_minor, "
                       "late, status, currency, window_id FROM batches WHERE batch_id = %s",
                  (batch_id,))
    pay = [r for r in rows if r.payment_id is not None]
    if not rows:
        fail(f"no batch {batch_id}")
    head = rows[0]
    console.print(f"batch {batch_id}: {head.status}, window {head.window_id}, "
                  f"{len(pay)} payment(s)")
    per: dict[str, list[Any]] = {}
    for r in pay:
        per.setdefault(r.payout_id, []).append(r)
    table = Table("payout", "merchant", "payments", "late", "net")
    for pid, group in sorted(per.items()):
        net = sum(r.amount_minor - r.fee_minor for r in group)
        table.add_row(pid, group[0].merchant_id, str(len(group)), str(sum(r.late for r in group)),
                      f"{format_minor(net, head.currency)} {head.currency}")
    console.print(table)


@payouts_app.command("show")
def payouts_show(
    ctx: typer.Context,
    payout_id: Annotated[str, typer.Argument(help="Payout id (see `batches show`).")],
) -> None:
    """One payout: status, transaction ids, and the payments it nets."""
    po = _query(ctx, "SELECT * FROM payouts WHERE payout_id = %s", (payout_id,))
    if not po:
        fail(f"no payout {payout_id} (not sealed yet, or unknown)")
    p = po[0]
    console.print(f"payout {p.payout_id}: {p.status}, merchant {p.merchant_id}, batch {p.batch_id}")
    console.print(f"  EndToEndId {p.end_to_end_id}  UETR {p.uetr}  InstrId {p.instr_id}")
    console.print(f"  gross {format_minor(p.gross_minor, p.currency)} - fees "
                  f"{format_minor(p.fee_minor, p.currency)} = net "
                  f"{format_minor(p.amount_minor, p.currency)} {p.currency}")
    rows = _query(ctx, "SELECT payment_id, amount_minor, fee_minor, captured_at, late FROM batches "
                       "WHERE batch_id = %s AND payout_id = %s", (p.batch_id, payout_id))
    table = Table("payment", "captured at", "amount", "fee", "late")
    for r in rows:
        table.add_row(r.payment_id, str(r.captured_at), format_minor(r.amount_minor, p.currency),
                      format_minor(r.fee_minor, p.currency), "yes" if r.late else "")
    console.print(table)


@payouts_app.command("retry")
def payouts_retry(
    ctx: typer.Context,
    payout_id: Annotated[Optional[str], typer.Argument(  # noqa: UP045 - typer needs Optional
        help="A rejected or unsent payout (see `payouts show`).")] = None,
    batch: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Instead: every rejected or unsent payout of this batch (see `batches show`).")
    ] = None,
) -> None:
    """Send a rejected payout again, as a new attempt (new EndToEndId and UETR) in the next
    batch of the merchant's current bank. Fix the merchant's account first
    (`settlement merchants upsert`). A payout never has two live attempts: only a rejected
    payout can be retried, and only once per rejection. An unsent payout (its batch's
    pacs.008 was too large to send: raise the bank's `shards` first) is retried the same way;
    `--batch` retries all of a batch's at once.

    Example: settlement payouts retry PO0A1B2C...   or   settlement payouts retry --batch B-1
    """
    if payout_id is None and batch is None:
        raise typer.BadParameter("Missing argument 'payout_id' (or --batch BATCH_ID).",
                                 param_hint="PAYOUT_ID")
    if payout_id is not None and batch is not None:
        raise typer.BadParameter("name a payout or --batch, not both", param_hint="PAYOUT_ID")
    s = state(ctx).settings()

    def _go() -> str:
        session = bootstrap.cassandra(s)
        producer = Producer({**s.kafka.client_config(), "enable.idempotence": True})
        registry = bootstrap.merchant_registry(s, session)
        try:
            if payout_id is not None:
                queued, why = _retry(session, registry, producer, s, payout_id)
                if not queued:
                    fail(why)
                _flush(producer)
                return why
            ids = sorted({r.payout_id for r in session.execute(
                "SELECT payout_id FROM batches WHERE batch_id = %s", (batch,))
                if r.payout_id is not None})
            if not ids:
                fail(f"no batch {batch}, or it has no payouts")
            done, skipped = 0, []
            # Each payout is its own read and LWT (Paxos rounds): RETRY_CONCURRENCY at once.
            with ThreadPoolExecutor(RETRY_CONCURRENCY, thread_name_prefix="retry") as pool:
                outcomes = pool.map(lambda pid: _retry(session, registry, producer, s, pid,
                                                       only_failed=True), ids)
                for n, (queued, why) in enumerate(outcomes, 1):
                    if queued:
                        done += 1
                    elif why:
                        skipped.append(why)
                    if n % 1000 == 0:
                        console.print(f"  {n:,} of {len(ids):,} payouts looked at, {done:,} queued")
            _flush(producer)
            for why in skipped[:10]:
                console.print(f"  skipped: {why}", highlight=False)
            return (f"batch {batch}: {done:,} of {len(ids):,} payouts queued for a new attempt"
                    + (f", {len(skipped):,} skipped" if skipped else ""))
        finally:
            session.cluster.shutdown()

    console.print(run(_go))


def _flush(producer: Producer) -> None:
    if producer.flush(30):
        fail("Kafka did not acknowledge the retry; run the command again")


def _retry(session: Any, registry: Any, producer: Producer, s: Settings, payout_id: str,
           only_failed: bool = False) -> tuple[bool, str]:
    """Queue one payout's new attempt: (queued, what happened). With `only_failed`, a
    payout that is neither rejected, unsent nor retrying is passed over without a word."""
    stmt = SimpleStatement(
        "SELECT payout_id, status, attempt, merchant_id, currency, amount_minor "
        "FROM payouts WHERE payout_id = %s", consistency_level=ConsistencyLevel.SERIAL)
    p = session.execute(stmt, (payout_id,)).one()
    if p is None:
        return False, f"no payout {payout_id}"
    if p.status not in ("rejected", "unsent", "retrying"):
        return False, ("" if only_failed else
                       f"payout {payout_id} is {p.status}; only a rejected or unsent payout "
                       "can be retried")
    account = registry.lookup(p.merchant_id, p.currency)
    if account is None:
        return False, f"merchant {p.merchant_id} has no {p.currency} payout account; add one first"
    attempt = (p.attempt or 1) + (0 if p.status == "retrying" else 1)
    if p.status != "retrying":
        # The one guard against two live attempts: a single LWT wins.
        won = session.execute(
            "UPDATE payouts SET status = 'retrying', attempt = %s, updated_at = "
            "toTimestamp(now()) WHERE payout_id = %s IF status = %s "
            "AND attempt = %s", (attempt, payout_id, p.status, p.attempt or 1)).one()
        # Lost the race to another operator's retry of the same attempt: that is the
        # same request, so carry on and (re)send it; anything else is a real change.
        if not won.applied and not (won.status == "retrying"
                                    and (won.attempt or 1) == attempt):
            return False, f"payout {payout_id} changed meanwhile (now {won.status}); not retried"
    # Re-running for a payout already 'retrying' re-sends the same command: the
    # batcher places (payout, attempt) once.
    cmd = {"payout_id": payout_id, "attempt": attempt, "merchant_id": p.merchant_id,
           "currency": p.currency, "bank_bic": account.bank_bic,
           "amount_minor": p.amount_minor}
    while True:
        try:
            producer.produce(s.topics.items, key=f"{account.bank_bic}:{p.currency}".encode(),
                             value=json.dumps(cmd).encode(),
                             headers=[("kind", b"retry"), ("payout_id", payout_id.encode())])
            break
        except BufferError:
            producer.poll(0.1)
    producer.poll(0)
    return True, f"payout {payout_id}: attempt {attempt} queued for {account.bank_bic}"
