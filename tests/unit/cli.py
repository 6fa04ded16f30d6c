"""Run the `settlement` CLI in-process, leaving the process's logging as it found it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog
from typer.testing import CliRunner, Result

from settlement.cli.main import app


def invoke(args: Sequence[str], env: Mapping[str, str] | None = None) -> Result:
    """`settlement ARGS`; the CLI points structlog at the runner's stderr, which is closed
    afterwards, so the configuration from before is put back (else later tests' logs fail)."""
    saved = structlog.get_config()
    try:
        return CliRunner().invoke(app, list(args), env=env)
    finally:
        structlog.configure(**saved)
