"""Shared CLI plumbing: settings from the global options, error -> exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from settlement import logging as slog
from settlement.config import Settings, load_settings
from settlement.domain.errors import FatalError, RetryableError, SettlementError

# Piped output (scripts, CI logs) gets a wide fixed width instead of rich's 80 columns,
# so ids are never cut.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)
T = TypeVar("T")

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR, EXIT_USAGE = 0, 1, 2, 2


@dataclass
class AppState:
    config_file: Path | None = None
    log_format: str | None = None
    log_level: str | None = None

    def settings(self, **overrides: Any) -> Settings:
        log: dict[str, str] = {}
        if self.log_format:
            log["format"] = self.log_format
        if self.log_level:
            log["level"] = self.log_level
        if log:
            overrides.setdefault("log", log)
        with cli_errors():
            settings = load_settings(self.config_file, **overrides)
        slog.configure(settings.log.format, settings.log.level)
        return settings


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppState):
        obj = AppState()
        ctx.find_root().obj = obj
    return obj


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn expected failures into one clear line and exit code 2 (no traceback)."""
    try:
        yield
    except ValidationError as exc:
        err_console.print(f"[red]error:[/red] invalid settings or input:\n{escape(str(exc))}")
        raise typer.Exit(EXIT_ERROR) from exc
    except RetryableError as exc:
        err_console.print(f"[red]error:[/red] a dependency is unavailable: {escape(str(exc))}\n"
                          "hint: is the local stack up? run `make infra-up`")
        raise typer.Exit(EXIT_ERROR) from exc
    except (FatalError, SettlementError) as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_ERROR) from exc


def run(fn: Callable[[], T]) -> T:
    with cli_errors():
        return fn()


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}")  # [..] in it is text, not markup
    sys.stderr.flush()
    raise typer.Exit(code)
