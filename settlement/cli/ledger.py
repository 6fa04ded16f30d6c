"""Worker and ledger-stage commands: worker, ledger summary, parked, dlq."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Annotated, Any

import structlog
import typer
from confluent_kafka import Producer
from rich.table import Table

from settlement import bootstrap
from settlement.cli.context import console, fail, run, state
from settlement.config import Settings
from settlement.domain.money import format_minor
from settlement.kafka.reader import headers_dict, read_all
from settlement.runtime import startup

ledger_app = typer.Typer(help="The ledger: what was recorded.", no_args_is_help=True)
parked_app = typer.Typer(help="Payments held back with a reason.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead-letter topics.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(parked_app, name="parked")
    app.add_typer(dlq_app, name="dlq")


def worker(
    ctx: typer.Context,
    role: Annotated[str, typer.Option(help="Stage to run: " + ", ".join(bootstrap.ROLES))],
    processing_guarantee: Annotated[str | None, typer.Option(
        help="exactly-once (default) or at-least-once (benchmark baseline).")] = None,
    instance_id: Annotated[str | None, typer.Option(
        help="Stable replica id; names the transactional.id (default: hostname).")] = None,
    commit_interval_ms: Annotated[int | None, typer.Option(
        help="Transaction/commit interval in ms (default 100).")] = None,
    health_port: Annotated[int | None, typer.Option(
        help="Port of /healthz, /readyz and /metrics (default 8080; 0 disables).")] = None,
) -> None:
    """Run one worker process until SIGTERM/SIGINT, then drain and exit 0.

    Example: settlement worker --role ledger --instance-id ledger-0
    """
    overrides: dict[str, object] = {}
    if processing_guarantee:
        overrides["processing_guarantee"] = processing_guarantee
    if instance_id:
        overrides["instance_id"] = instance_id
    if commit_interval_ms is not None:
        overrides["commit_interval_ms"] = commit_interval_ms
    if health_port is not None:
        overrides["health_port"] = health_port
    settings = state(ctx).settings(worker=overrides) if overrides else state(ctx).settings()

    def _go() -> None:
        try:
            built = bootstrap.build_worker(settings, role)
        except startup.StoppedWhileStarting as stop:  # nothing consumed yet: a clean stop
            structlog.get_logger(__name__).info("worker.stopped_while_starting", role=role,
                                                signal=str(stop))
            return
        built.run()

    run(_go)


@ledger_app.command("summary")
def ledger_summary(ctx: typer.Context) -> None:
    """Payments recorded, per currency: count, gross, fees, net."""
    s = state(ctx).settings()

    def _go() -> dict[str, list[int]]:
        session = bootstrap.cassandra(s)
        try:
            agg: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
            for r in session.execute("SELECT currency, amount_minor, fee_minor FROM ledger_buckets"):
                a = agg[r.currency]
                a[0] += 1
                a[1] += r.amount_minor
                a[2] += r.fee_minor
            return agg
        finally:
            session.cluster.shutdown()

    agg = run(_go)
    table = Table("currency", "payments", "gross", "fees", "net", title="ledger")
    for ccy in sorted(agg):
        n, gross, fee = agg[ccy]
        table.add_row(ccy, str(n), format_minor(gross, ccy), format_minor(fee, ccy),
                      format_minor(gross - fee, ccy))
    console.print(table)
    console.print(f"{sum(v[0] for v in agg.values())} payment(s) recorded")


@parked_app.command("list")
def parked_list(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include released/retried ones.")] = False,
) -> None:
    """What is held back with a reason: payments that cannot be routed yet (e.g. no payout
    account) and bank messages that could not be applied (unknown payout, out of order)."""
    s = state(ctx).settings()

    def _go() -> list[tuple[str, ...]]:
        session = bootstrap.cassandra(s)
        try:
            rows = session.execute(
                "SELECT payment_id, merchant_id, currency, reason, status, parked_at "
                "FROM parked_payments")
            return [(r.payment_id, r.merchant_id, r.currency, r.reason, r.status,
                     str(r.parked_at)) for r in rows if all_ or r.status == "parked"]
        finally:
            session.cluster.shutdown()

    rows = run(_go)
    table = Table("payment", "merchant", "currency", "reason", "status", "parked at",
                  title="parked payments")
    for r in rows[:200]:
        table.add_row(*r)
    console.print(table)
    msgs = [m for m in _bank_parked(s) if all_ or m.status == "parked"]
    mtable = Table("id", "bank", "type", "bank msg id", "reason", "status",
                   title="parked bank messages")
    for m in msgs[:200]:
        mtable.add_row(str(m.parked_id), m.bank_bic, m.msg_type, m.msg_id, m.reason, m.status)
    console.print(mtable)
    console.print(f"{len(rows)} parked payment(s), {len(msgs)} parked bank message(s)")


def _bank_parked(s: Settings) -> list[Any]:
    def _go() -> list[Any]:
        session = bootstrap.cassandra(s)
        try:
            return list(session.execute(
                "SELECT bank_bic, parked_id, msg_id, msg_type, reason, detail, body, src, status "
                "FROM parked_bank_messages"))
        finally:
            session.cluster.shutdown()

    return run(_go)


def _find_parked(s: Settings, parked_id: str) -> Any:
    found = [m for m in _bank_parked(s) if str(m.parked_id) == parked_id]
    if not found:
        fail(f"no parked bank message {parked_id} (see `settlement parked list`)")
    return found[0]


@parked_app.command("show")
def parked_show(
    ctx: typer.Context,
    parked_id: Annotated[str, typer.Argument(help="Id from `settlement parked list`.")],
) -> None:
    """One parked bank message: why it was parked, where it came from, and its body."""
    m = _find_parked(state(ctx).settings(), parked_id)
    console.print(f"{m.msg_type} {m.msg_id} from {m.bank_bic}: [bold]{m.reason}[/bold] ({m.status})")
    console.print(f"  {m.detail}")
    console.print(f"  source record: {m.src.split('#')[0]}")
    print(bytes(m.body).decode("utf-8", "replace"))


@parked_app.command("retry")
def parked_retry(
    ctx: typer.Context,
    parked_id: Annotated[str, typer.Argument(help="Id from `settlement parked list`.")],
) -> None:
    """Put a parked bank message back on bank.inbound (after fixing what blocked it).
    Parts of it that were applied before stay applied; the rest is tried again."""
    s = state(ctx).settings()
    m = _find_parked(s, parked_id)
    if m.status != "parked":
        fail(f"bank message {parked_id} is {m.status}, not parked")

    def _go() -> None:
        p = Producer({**s.kafka.client_config(), "enable.idempotence": True})
        p.produce(s.topics.bank_inbound, value=bytes(m.body), key=m.bank_bic.encode(),
                  headers=[("bank_bic", m.bank_bic.encode()), ("via", b"retry")])
        if p.flush(30):
            fail("Kafka did not acknowledge the retried message")
        session = bootstrap.cassandra(s)
        try:
            session.execute("UPDATE parked_bank_messages SET status = 'retried' "
                            "WHERE bank_bic = %s AND parked_id = %s", (m.bank_bic, m.parked_id))
        finally:
            session.cluster.shutdown()

    run(_go)
    console.print(f"re-published {m.msg_type} {m.msg_id} to {s.topics.bank_inbound}")


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    topic: Annotated[str | None, typer.Option(help="DLQ topic (default: payments DLQ).")] = None,
    show: Annotated[int, typer.Option(help="Show the last N records.")] = 20,
) -> None:
    """Count dead letters by reason and show the latest ones with their headers."""
    s = state(ctx).settings()
    name = topic or s.topics.payments_dlq
    reasons: Counter[str] = Counter()
    last: list[tuple[str, ...]] = []
    for msg in run(lambda: list(read_all(s.kafka, name))):
        h = headers_dict(msg)
        reasons[h.get("dlq.reason", "?")] += 1
        last.append((f"{msg.partition()}@{msg.offset()}", h.get("dlq.reason", "?"),
                     f"{h.get('dlq.source.topic')}/{h.get('dlq.source.partition')}"
                     f"@{h.get('dlq.source.offset')}", h.get("dlq.detail", "")[:80]))
    summary = Table("reason", "count", title=name)
    for reason, n in reasons.most_common():
        summary.add_row(reason, str(n))
    console.print(summary)
    detail = Table("at", "reason", "source", "detail")
    for row in last[-show:]:
        detail.add_row(*row)
    console.print(detail)
