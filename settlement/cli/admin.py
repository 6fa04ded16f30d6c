"""Provisioning and registry commands: topics, db, merchants, schema."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from settlement import bootstrap
from settlement.cli.context import console, err_console, fail, run, state
from settlement.domain.merchant import MerchantAccount, mask_account
from settlement.domain.payment import PaymentSucceeded
from settlement.kafka.admin import ensure_topics
from settlement.store.migrate import migrate
from settlement.store.session import connect

topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
db_app = typer.Typer(help="Cassandra schema.", no_args_is_help=True)
merchants_app = typer.Typer(help="Merchant payout accounts (the registry).", no_args_is_help=True)
schema_app = typer.Typer(help="The payment-succeeded event contract.", no_args_is_help=True)

SCHEMA_FILE = "payment_succeeded.v1.json"


def register(app: typer.Typer) -> None:
    app.add_typer(topics_app, name="topics")
    app.add_typer(db_app, name="db")
    app.add_typer(merchants_app, name="merchants")
    app.add_typer(schema_app, name="schema")


@topics_app.command("ensure")
def topics_ensure(
    ctx: typer.Context,
    timeout_s: Annotated[float, typer.Option(
        "--timeout", min=0.1, help="Seconds to wait for a Kafka broker before exit 2.")] = 30.0,
) -> None:
    """Create every topic with its configured partitions; safe to re-run."""
    s = state(ctx).settings()
    reports = run(lambda: ensure_topics(s.kafka, s.topics, timeout_s))
    table = Table("topic", "action", "partitions", "note")
    for r in reports:
        table.add_row(r.name, r.action, str(r.partitions), r.note)
    console.print(table)


@db_app.command("migrate")
def db_migrate(ctx: typer.Context) -> None:
    """Create the keyspace and apply pending CQL migrations; safe to re-run."""
    s = state(ctx).settings()

    def _go() -> None:
        session = connect(s.cassandra)
        try:
            applied = migrate(session, s.cassandra)
        finally:
            session.cluster.shutdown()
        if applied:
            for m in applied:
                console.print(f"applied {m.version:04d}_{m.name}")
        else:
            console.print(f"keyspace {s.cassandra.keyspace} is up to date")

    run(_go)


@merchants_app.command("upsert")
def merchants_upsert(
    ctx: typer.Context,
    merchant_id: Annotated[str, typer.Option(help="Merchant id, as in payment events.")],
    currency: Annotated[str, typer.Option(help="Payout currency (ISO 4217).")],
    creditor_name: Annotated[str, typer.Option(help="Account holder name for the bank file.")],
    account_id: Annotated[str, typer.Option(help="IBAN, or another account id with --scheme OTHER.")],
    bank_bic: Annotated[str, typer.Option(help="BIC of the merchant's bank.")],
    scheme: Annotated[str, typer.Option(help="IBAN or OTHER.")] = "IBAN",
    payout_mode: Annotated[str, typer.Option(help="window (net per cutoff) or payment.")] = "window",
) -> None:
    """Add or change one payout account. Parked payments for it are released shortly."""
    try:
        # model_validate: scheme and payout_mode are plain str options, checked by the model
        acct = MerchantAccount.model_validate({
            "merchant_id": merchant_id, "currency": currency, "creditor_name": creditor_name,
            "account_id": account_id, "account_scheme": scheme,
            "bank_bic": bank_bic, "payout_mode": payout_mode,
        })
    except (ValidationError, ValueError) as exc:
        fail(f"invalid merchant account: {exc}")
    s = state(ctx).settings()
    run(lambda: _upsert(s, [acct]))
    console.print(f"upserted {acct.merchant_id}/{acct.currency} -> {acct.bank_bic} "
                  f"{mask_account(acct.account_id)}")


def _upsert(settings: Any, accounts: list[MerchantAccount]) -> int:
    session = bootstrap.cassandra(settings)
    try:
        return bootstrap.merchant_registry(settings, session).upsert(accounts)
    finally:
        session.cluster.shutdown()


def _read_accounts(path: Path) -> tuple[list[MerchantAccount], list[str]]:
    rows: list[Any]  # a .json or .jsonl row may be any JSON value; each is validated below
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    elif path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    elif path.suffix.lower() == ".json":
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise ValueError(f"a .json file must hold a list of accounts, got {type(rows).__name__}")
    else:
        raise ValueError(f"{path}: use .csv, .json or .jsonl")
    good, errors = [], []
    for n, row in enumerate(rows, start=1):
        if isinstance(row, dict) and None in row:  # csv.DictReader's key for surplus values
            errors.append(f"row {n}: {len(row[None])} more value(s) than the header has columns")
            continue
        try:
            good.append(MerchantAccount.model_validate(row))
        except (ValidationError, ValueError) as exc:
            first = str(exc).splitlines()
            errors.append(f"row {n}: {' '.join(first[:3])}")
    return good, errors


@merchants_app.command("import")
def merchants_import(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                         help="CSV (header row) or JSON/JSONL file.")],
    allow_partial: Annotated[bool, typer.Option(
        help="Import the valid rows even if some are invalid.")] = False,
) -> None:
    """Import accounts from a file. All rows are validated first; any bad row aborts
    the import unless --allow-partial is given."""
    try:
        good, errors = _read_accounts(path)
    except (ValueError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}")
    for e in errors:
        err_console.print(f"[yellow]invalid[/yellow] {escape(e)}")
    if errors and not allow_partial:
        fail(f"{len(errors)} invalid row(s); nothing imported (use --allow-partial to skip them)")
    s = state(ctx).settings()
    n = run(lambda: _upsert(s, good))
    console.print(f"imported {n} account(s), skipped {len(errors)}")


@merchants_app.command("list")
def merchants_list(
    ctx: typer.Context,
    merchant_id: Annotated[str | None, typer.Option(help="Only this merchant.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 50,
) -> None:
    """Show payout accounts (account numbers masked)."""
    s = state(ctx).settings()

    def _go() -> list[MerchantAccount]:
        session = bootstrap.cassandra(s)
        try:
            reg = bootstrap.merchant_registry(s, session)
            return [a for a in reg.all() if merchant_id in (None, a.merchant_id)]
        finally:
            session.cluster.shutdown()

    accounts = sorted(run(_go), key=lambda a: (a.merchant_id, a.currency))
    table = Table("merchant", "currency", "creditor", "account", "bank", "payout")
    for a in accounts[:limit]:
        table.add_row(a.merchant_id, a.currency, a.creditor_name, mask_account(a.account_id),
                      a.bank_bic, a.payout_mode)
    console.print(table)
    console.print(f"{len(accounts)} account(s)")


def _schema_json() -> str:
    schema = PaymentSucceeded.model_json_schema()
    schema["$id"] = f"https://settlement.dev/schemas/{SCHEMA_FILE}"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


@schema_app.command("export")
def schema_export(
    out: Annotated[Path, typer.Option(help="Where to write it.")] = Path("schemas") / SCHEMA_FILE,
) -> None:
    """Write the JSON Schema generated from the pydantic event model."""
    out.write_text(_schema_json(), encoding="utf-8")
    console.print(f"wrote {out}")


@schema_app.command("check")
def schema_check(
    path: Annotated[Path, typer.Option(help="Committed schema.")] = Path("schemas") / SCHEMA_FILE,
) -> None:
    """Exit 1 when the committed schema differs from the model (run `schema export`)."""
    if not path.is_file() or path.read_text(encoding="utf-8") != _schema_json():
        fail(f"{path} is out of date with PaymentSucceeded; run `settlement schema export`", 1)
    console.print(f"{path} matches the model")


