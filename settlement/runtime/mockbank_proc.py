"""The mock banks as a separate server process (`settlement mock-bank`), and their admin API.

Used by the demo and the tests: write a config, start the server on a free loopback
port, wait for /healthz, move the banks' shared clock and read what the banks
recorded, then stop it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from settlement.domain.errors import RetryableError

BANK_ACCEPTED = frozenset({"ACSP", "ACCP", "ACSC"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ClockMove:
    now: datetime
    emitted: list[dict[str, Any]]  # {bic, cursor, type, msg_id} per message the move produced

    def count(self, family: str) -> int:
        """Emitted messages of one family, e.g. "camt.053"."""
        return sum(1 for m in self.emitted if str(m["type"]).startswith(family))

    def families(self) -> Counter[str]:
        return Counter(str(m["type"]).rsplit(".", 2)[0] for m in self.emitted)


class MockBankProcess:
    """One mock bank server process on 127.0.0.1, started from a config mapping."""

    def __init__(self, config: dict[str, Any], config_path: Path, log_path: Path,
                 port: int | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.log_path = log_path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(base_url=self.url, timeout=60)

    def spawn(self) -> None:
        """Start the process; `wait_ready` waits for it to answer."""
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config, indent=2))  # JSON is YAML
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "settlement", "mock-bank", "--config", str(self.config_path),
                 "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def ready(self) -> bool:
        """True once the server answers /healthz; RetryableError if the process died."""
        if self.proc is None or self.proc.poll() is not None:
            raise RetryableError(f"the mock bank is not running; see {self.log_path}")
        try:
            return self._http.get("/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if time.monotonic() > deadline:
                raise RetryableError(f"mock bank did not start in {timeout_s:.0f}s; see {self.log_path}")
            time.sleep(0.2)

    def start(self, timeout_s: float = 30) -> None:
        self.spawn()
        self.wait_ready(timeout_s)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 10) -> int | None:
        self._http.close()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self) -> MockBankProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- admin API (docs/mock-bank.md) -------------------------------------

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        try:
            response = self._http.request(method, path, **kw)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise RetryableError(f"mock bank {method} {path}: {exc}") from exc
        return response.json()

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        """Any admin API call (docs/mock-bank.md), e.g. ("POST", "/admin/banks/BIC/faults", json=...)."""
        return self._json(method, path, **kw)

    def clock(self) -> datetime:
        return datetime.fromisoformat(self._json("GET", "/admin/clock")["now"])

    def move_clock(self, *, to: datetime | None = None, advance_seconds: float = 0,
                   advance_days: int = 0) -> ClockMove:
        """Move the banks' clock; everything that falls due is booked and sent on the way."""
        body: dict[str, Any] = {"to": to.isoformat()} if to is not None else {
            "advance_seconds": advance_seconds, "advance_days": advance_days}
        answer = self._json("POST", "/admin/clock", json=body)
        return ClockMove(datetime.fromisoformat(answer["now"]), list(answer.get("emitted", [])))

    def transactions(self, bic: str) -> list[dict[str, Any]]:
        body = self._json("GET", f"/admin/banks/{bic}/transactions")
        return list(body["transactions"] if isinstance(body, dict) else body)

    def records(self) -> dict[str, dict[str, Any]]:
        """Every bank's own view: each transaction it received, by EndToEndId."""
        out: dict[str, dict[str, Any]] = {}
        for bank in self.config["banks"]:
            for tx in self.transactions(bank["bic"]):
                out[tx["end_to_end_id"]] = {**tx, "bank": bank["bic"]}
        return out


def bank_outcome(record: dict[str, Any]) -> str:
    """The payout status a bank transaction must end in: rejected, settled or returned."""
    if record["decision"] not in BANK_ACCEPTED:
        return "rejected"
    return "returned" if record.get("returned") else "settled"


def disagreements(ours: dict[str, tuple[str, str, int]],
                  theirs: dict[str, dict[str, Any]]) -> list[str]:
    """Where our payouts (EndToEndId -> status, payout id, amount) and the banks' records differ.

    Each payout must have reached its bank once, be credited at most once, carry the
    same amount and end in the status the bank's decision and bookings imply; the banks
    must hold no transfer we never sent.
    """
    problems = []
    for e2e, (status, payout_id, amount) in sorted(ours.items()):
        bank = theirs.get(e2e)
        if bank is None:
            problems.append(f"{payout_id}: the bank never received it")
            continue
        if bank["credited_count"] > 1:
            problems.append(f"{payout_id}: credited {bank['credited_count']} times")
        want = bank_outcome(bank)
        if status != want or bank["amount_minor"] != amount:
            problems.append(f"{payout_id}: ours {status} {amount}, bank {want} {bank['amount_minor']}")
    strays = sorted(set(theirs) - set(ours))
    if strays:
        problems.append(f"{len(strays)} transfer(s) at the banks that we never sent, e.g. {strays[:3]}")
    return problems
