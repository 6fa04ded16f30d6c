"""Shared builders for the mock bank tests (no tests here): configs, pacs.008 files, clients."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from settlement.bank.mockbank.app import create_app
from settlement.bank.mockbank.config import MockBankConfig, parse
from settlement.domain.batch import Party, PayoutTx, SealedBatch, deterministic_uetr, short_id
from settlement.iso20022.pacs008 import render_pacs008

BIC = "MOCKDEFFXXX"
TOKEN = "test-token"
PROCESSOR_EUR = "DE89370400440532013000"
PROCESSOR_USD = "DE02370400440532013001"
OPEN = "DE41370400440000000001"
OPEN_2 = "DE41370400440000000002"
CLOSED = "DE41370400440000000003"
BLOCKED = "DE41370400440000000004"
UNKNOWN = "DE41370400440000009999"
OPEN_USD = "DE41370400440000000005"
MONDAY = date(2026, 11, 2)
# 08:00 in Berlin (CET, UTC+1) on Monday: before the 09:00 booking time.
START = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)
DEBTOR = Party(name="Settlement Demo Processor GmbH", account_id=PROCESSOR_EUR, bic=BIC)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def config_dict(state_dir: Path, **faults: Any) -> dict[str, Any]:
    return {
        "state_dir": str(state_dir),
        "clock": {"start": START.isoformat(), "follow_real_time": False},
        "banks": [{
            "bic": BIC, "name": "Mock Bank Deutschland", "token": "${MOCKBANK_TEST_TOKEN:-test-token}",
            "timezone": "Europe/Berlin",
            "processor_accounts": [
                {"id": PROCESSOR_EUR, "currency": "EUR", "balance_minor": 1_000_000},
                {"id": PROCESSOR_USD, "currency": "USD", "balance_minor": 1_000_000}],
            "accounts": [
                {"id": OPEN, "currency": "EUR"}, {"id": OPEN_2, "currency": "EUR"},
                {"id": CLOSED, "currency": "EUR", "closed": True},
                {"id": BLOCKED, "currency": "EUR", "blocked": True},
                {"id": OPEN_USD, "currency": "USD"}],
            "faults": {"seed": 7, **faults},
        }],
    }


def make_config(state_dir: Path, **faults: Any) -> MockBankConfig:
    return parse(config_dict(state_dir, **faults), env={})


def client(state_dir: Path, **faults: Any) -> TestClient:
    return TestClient(create_app(make_config(state_dir, **faults)))


def pacs008(txs: list[tuple[str, int]], *, msg: str = "1", settlement_date: date = MONDAY,
            creditor_bic: str = BIC, currency: str = "EUR", e2e_prefix: str | None = None) -> bytes:
    """A pacs.008 with one transaction per (creditor account, amount)."""
    prefix = e2e_prefix or msg
    payouts = tuple(
        PayoutTx(payout_id=f"po-{i}", instr_id=short_id("I", prefix, str(i)),
                 end_to_end_id=short_id("E", prefix, str(i)), uetr=deterministic_uetr(prefix, str(i)),
                 amount_minor=amount, currency=currency,
                 creditor=Party(name=f"Merchant {i}", account_id=account, bic=creditor_bic),
                 remittance="payout", payments=1)
        for i, (account, amount) in enumerate(txs))
    batch = SealedBatch(batch_id=f"b-{msg}", msg_id=short_id("M", msg), created_at=START,
                        settlement_date=settlement_date, currency=currency, bank_bic=creditor_bic,
                        transactions=payouts)
    return render_pacs008(batch, DEBTOR)


def send(c: TestClient, body: bytes) -> Any:
    return c.post(f"/banks/{BIC}/pacs008", content=body, headers=AUTH)


def outbox(c: TestClient, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    r = c.get(f"/banks/{BIC}/messages", params={"after": after, "limit": limit}, headers=AUTH)
    assert r.status_code == 200, r.text
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages


def advance(c: TestClient, **body: Any) -> list[dict[str, Any]]:
    r = c.post("/admin/clock", json=body)
    assert r.status_code == 200, r.text
    emitted: list[dict[str, Any]] = r.json()["emitted"]
    return emitted


def of_type(messages: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"].startswith(prefix)]


def parsed(message: dict[str, Any]) -> Any:
    """An outbox message parsed back (XSD-validated again) with the project's own parsers."""
    import importlib

    family = message["type"][:8].replace(".", "")  # "pacs.002.001.10" -> "pacs002"
    module = importlib.import_module(f"settlement.iso20022.{family}")
    return getattr(module, f"parse_{family}")(message["xml"].encode(), validate_schema=True)


def statement_sum(stmt: Any) -> int:
    return sum(e.amount_minor if e.credit_debit == "CRDT" else -e.amount_minor for e in stmt.entries)
