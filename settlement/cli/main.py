"""`settlement`: run workers, provision Kafka and Cassandra, manage merchants."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from settlement.cli import (
    admin,
    batches,
    bench,
    chaos,
    config_cmd,
    demo,
    gateway,
    ledger,
    mockbank,
    reconcile,
    replay,
    sample,
)
from settlement.cli.context import AppState
from settlement.runtime import startup

app = typer.Typer(
    name="settlement",
    help="Exactly-once settlement worker pool: Kafka in, Cassandra ledger, ISO 20022 out.\n\n"
    "Settings come from SETTLEMENT_* environment variables (nested with __, e.g. "
    "SETTLEMENT_KAFKA__BOOTSTRAP_SERVERS) or a TOML file given with --config.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[Optional[Path], typer.Option(  # noqa: UP045 - typer needs Optional
        "--config", "-c", help="TOML settings file (else SETTLEMENT_CONFIG_FILE).",
        exists=True, dir_okay=False)] = None,
    log_format: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="console | json | auto (json when not a terminal).")] = None,
    log_level: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="debug | info | warning | error.")] = None,
) -> None:
    ctx.obj = AppState(config, log_format, log_level)
    if ctx.invoked_subcommand != "worker":
        startup.release()  # only a worker drains on SIGTERM; the rest stop as usual


admin.register(app)
ledger.register(app)
sample.register(app)
demo.register(app)
chaos.register(app)
bench.register(app)
config_cmd.register(app)
batches.register(app)
mockbank.register(app)
reconcile.register(app)
replay.register(app)
gateway.register(app)


def main() -> None:
    app()
