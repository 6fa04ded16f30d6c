"""Run the mock bank as a real HTTP server process for tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from settlement.runtime.mockbank_proc import MockBankProcess

TOKEN = "it-token"  # test-only credential for the local mock bank
BANKS = [("MOCKDEFFXXX", "Europe/Berlin", "DE89370400440532013000", "DE62370400440532013001"),
         ("MOCKFRPPXXX", "Europe/Paris", "FR7630006000011234567890189", "FR7630006000011234567890190"),
         ("MOCKNL2AXXX", "Europe/Amsterdam", "NL91ABNA0417164300", "NL69ABNA0417164301")]


def config(state_dir: Path, faults: dict[str, dict[str, Any]] | None = None,
           accounts: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    banks = []
    for bic, tz, eur, usd in BANKS:
        banks.append({
            "bic": bic, "name": f"Mock {bic}", "token": TOKEN, "timezone": tz,
            "processor_accounts": [{"id": eur, "currency": "EUR", "balance_minor": 10**14},
                                   {"id": usd, "currency": "USD", "balance_minor": 10**14}],
            "accounts": (accounts or {}).get(bic, []), "accept_unknown_accounts": True,
            "faults": {"seed": 7, "reject_rate": 0.0, "return_rate": 0.0, "latency_ms": [0, 5],
                       **(faults or {}).get(bic, {})},
        })
    return {"state_dir": str(state_dir), "clock": {"follow_real_time": False}, "banks": banks}


@contextmanager
def mock_bank(tmp: Path, faults: dict[str, dict[str, Any]] | None = None,
              accounts: dict[str, list[dict[str, Any]]] | None = None) -> Iterator[str]:
    """A mock bank server process on a free port; yields its base URL."""
    with MockBankProcess(config(tmp / "state", faults, accounts), tmp / "banks.yaml",
                         tmp / "mockbank.log") as bank:
        yield bank.url


def bank_env(url: str) -> dict[str, str]:
    return {"SETTLEMENT_GATEWAY__DEFAULT_ENDPOINT": url,
            "SETTLEMENT_GATEWAY__DEFAULT_TOKEN": TOKEN,
            "SETTLEMENT_GATEWAY__POLL_INTERVAL_S": "0.5",
            "SETTLEMENT_GATEWAY__BREAKER_RESET_S": "2"}


def bank_records(url: str) -> dict[str, dict[str, Any]]:
    """The banks' own view: every transaction they received, by EndToEndId."""
    out: dict[str, dict[str, Any]] = {}
    for bic, *_ in BANKS:
        body = httpx.get(f"{url}/admin/banks/{bic}/transactions", timeout=10).json()
        rows = body["transactions"] if isinstance(body, dict) else body
        for t in rows:
            out[t["end_to_end_id"]] = {**t, "bank": bic}
    return out


def advance(url: str, **kw: int) -> Any:
    return httpx.post(f"{url}/admin/clock", json=kw, timeout=60).json()
