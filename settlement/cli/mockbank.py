"""`settlement mock-bank`: run the mock banks (docs/mock-bank.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("mock-bank")(mock_bank)


def mock_bank(
    config: Annotated[Path, typer.Option(
        "--config", help="Mock bank YAML (see examples/banks.yaml).", exists=True,
        dir_okay=False)] = Path("examples/banks.yaml"),
    host: Annotated[str, typer.Option(
        help="Interface; the admin API has no auth, keep it on loopback.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8686,
) -> None:
    """Run ISO 20022 mock banks: pacs.008 in; pacs.002, pacs.004, camt.054 and camt.053 out,
    with seeded faults, a clock that moves on request, and state that survives a restart.

    Example: settlement mock-bank --config examples/banks.yaml --port 8686
    """
    from settlement.bank.mockbank.server import serve
    from settlement.cli.context import run

    run(lambda: serve(config, host=host, port=port))  # a bad config: one line, exit 2
