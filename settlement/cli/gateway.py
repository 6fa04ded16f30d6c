"""`settlement deliveries list`: the gateway's delivery queue, for watching a bank outage."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

import typer
from rich.table import Table

from settlement import bootstrap
from settlement.cli.context import console, run, state

deliveries_app = typer.Typer(help="The gateway's pacs.008 delivery queue.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(deliveries_app, name="deliveries")


@deliveries_app.command("list")
def deliveries_list(
    ctx: typer.Context,
    bank: Annotated[str | None, typer.Option(help="Only this bank BIC.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include delivered messages.")] = False,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 50,
) -> None:
    """Messages the gateway still owes a bank: attempts, next try, last error.

    A pending delivery is retried with growing backoff (gateway.retry_backoff_max_s) while the
    bank's breaker lets calls through; it needs no operator.

    Example: settlement deliveries list --bank MOCKDEFFXXX
    """
    s = state(ctx).settings()

    def _go() -> list[Any]:
        session = bootstrap.cassandra(s)
        try:
            return list(session.execute(
                "SELECT bank_bic, msg_id, batch_id, status, attempts, next_attempt_at, "
                "last_error, delivered_at FROM deliveries"))
        finally:
            session.cluster.shutdown()

    rows = [r for r in run(_go) if (bank is None or r.bank_bic == bank)]
    per_bank = Counter((r.bank_bic, r.status) for r in rows)
    shown = [r for r in rows if all_ or r.status != "delivered"]
    shown.sort(key=lambda r: (r.bank_bic, str(r.next_attempt_at)))
    table = Table("bank", "msg id", "batch", "status", "attempts", "next attempt", "last error")
    for r in shown[:limit]:
        table.add_row(r.bank_bic, r.msg_id, r.batch_id or "", r.status, str(r.attempts or 0),
                      str(r.next_attempt_at or ""), (r.last_error or "")[:60])
    console.print(table)
    for b in sorted({b for b, _ in per_bank}):
        console.print(f"{b}: {per_bank[(b, 'pending')]} pending, "
                      f"{per_bank[(b, 'delivered')]} delivered")
