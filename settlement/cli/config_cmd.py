"""`settlement config show|docs`: the effective settings, and their reference page."""

from __future__ import annotations

import json
from typing import Any

import typer
from pydantic import BaseModel, SecretStr

from settlement.cli.context import console, state
from settlement.config import Settings

config_app = typer.Typer(help="Settings: what is in effect, and the reference.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective settings as JSON (secrets shown as **********)."""
    s = state(ctx).settings()

    def _plain(v: Any) -> Any:
        if isinstance(v, SecretStr):
            return str(v)
        if isinstance(v, dict):
            return {k: _plain(x) for k, x in v.items()}
        return v

    console.print_json(json.dumps(_plain(dict(s.model_dump())), default=str))


def reference() -> str:
    lines = ["# Configuration reference", "",
             "Generated from `settlement.config.Settings` by `settlement config docs`.",
             "Environment: `SETTLEMENT_<SECTION>__<NAME>`; TOML: `[section]` then `name = ...`.",
             ""]
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            lines += [f"## `{section}`", "", "| env | default | notes |", "|---|---|---|"]
            lines += _rows(model, lambda name, s=section: f"`SETTLEMENT_{s.upper()}__{name.upper()}`")
        else:  # list[BankSettings]: TOML [[banks]] tables, or JSON in SETTLEMENT_BANKS
            (item,) = getattr(model, "__args__", (None,))
            assert isinstance(item, type) and issubclass(item, BaseModel)
            lines += [f"## `[[{section}]]`", "",
                      f"A list: one `[[{section}]]` table per entry in the TOML file, or a JSON "
                      f"array in `SETTLEMENT_{section.upper()}`.", "",
                      "| key | default | notes |", "|---|---|---|"]
            lines += _rows(item, lambda name: f"`{name}`", required_ok=True)
        lines.append("")
    return "\n".join(lines)


def _rows(model: type[BaseModel], key: Any, required_ok: bool = False) -> list[str]:
    out = []
    for name, f in model.model_fields.items():
        if f.is_required():
            shown = "(required)"
        else:
            default = f.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                default = default.model_dump()
            shown = "(hostname)" if name == "instance_id" else (
                "(unset)" if default is None else f"`{json.dumps(default, default=str)}`")
        out.append(f"| {key(name)} | {shown} | {(f.description or '').replace('|', '/')} |")
    return out


@config_app.command("docs")
def config_docs() -> None:
    """Print the configuration reference (Markdown) generated from Settings."""
    print(reference(), end="")
