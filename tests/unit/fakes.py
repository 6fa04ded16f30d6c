"""Small in-memory fakes of the ledger's and reconciliation's ports (unit tests only)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date

from settlement.domain.merchant import MerchantAccount
from settlement.domain.reconciliation import ExpectedChunk, ReconResult, RunRecord
from settlement.service.ports import LedgerEntry, ParkedPayment, StoredLedgerRow


class FakeLedgerStore:
    def __init__(self) -> None:
        self.rows: dict[str, StoredLedgerRow] = {}
        self.amounts: dict[str, int] = {}
        self.parked_rows: dict[str, tuple[ParkedPayment, str]] = {}

    def record(self, entries: Sequence[LedgerEntry]) -> list[StoredLedgerRow]:
        out = []
        for e in entries:
            pid = e.event.payment_id
            if pid in self.rows:
                r = self.rows[pid]
                out.append(StoredLedgerRow(r.event_id, r.fingerprint, r.source, False))
            else:
                row = StoredLedgerRow(e.event.event_id, e.fingerprint, e.source, True)
                self.rows[pid] = row
                self.amounts[pid] = e.event.amount_minor
                out.append(row)
        return out

    def park(self, parked: Sequence[ParkedPayment]) -> None:
        for p in parked:
            self.parked_rows.setdefault(p.payment_id, (p, "parked"))

    def parked(self, topic: str, partition: int) -> list[ParkedPayment]:
        return [p for p, status in self.parked_rows.values()
                if status == "parked" and (p.source.topic, p.source.partition) == (topic, partition)]

    def mark_released(self, parked: Sequence[ParkedPayment]) -> None:
        for p in parked:
            self.parked_rows[p.payment_id] = (p, "released")


class FakeMerchants:
    def __init__(self, accounts: list[MerchantAccount] | None = None) -> None:
        self.accounts = {(a.merchant_id, a.currency): a for a in accounts or []}
        self.warmed = 0  # how often warm() was called

    def lookup(self, merchant_id: str, currency: str) -> MerchantAccount | None:
        return self.accounts.get((merchant_id, currency))

    def warm(self) -> None:
        self.warmed += 1


class FakeReconStore:
    """Reconciliation's store with nothing expected and nothing received: for statement files."""

    def __init__(self) -> None:
        self.saved: list[RunRecord] = []

    def banks(self, day: date) -> list[str]:
        return []

    def expected(self, bank: str, day: date) -> Iterator[ExpectedChunk]:
        return iter(())

    def statements_of(self, day: date) -> list[tuple[str, str, str]]:
        return []

    def statement_body(self, bank: str, account: str, day: date, statement_id: str) -> bytes:
        raise AssertionError("no statement is stored")

    def previous_statement(self, bank: str, account: str, before: date) -> bytes | None:
        return None

    def payout_statuses(self, end_to_end_ids: Sequence[str]) -> dict[str, str]:
        return {}

    def save_run(self, run: RunRecord, result: ReconResult,
                 matched: dict[str, list[tuple[int, bytes]]]) -> None:
        self.saved.append(run)
