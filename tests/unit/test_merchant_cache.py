"""The merchant registry's cache: loaded once in line, then re-read in the background
while lookups are served from the last copy (a fake session; unit tests only)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

from cassandra.cluster import NoHostAvailable

from settlement.store.merchants import CassandraMerchantRegistry


def row(merchant: str, name: str) -> SimpleNamespace:
    return SimpleNamespace(merchant_id=merchant, currency="EUR", creditor_name=name,
                           account_id="DE89370400440532013000", account_scheme="IBAN",
                           bank_bic="MOCKDEFFXXX", payout_mode="window")


class FakeSession:
    """`SELECT ... FROM merchant_accounts` returns `table`; a scan can be held or fail."""

    def __init__(self) -> None:
        self.table = [row("m-1", "Old Name")]
        self.scans = 0
        self.hold = threading.Event()
        self.hold.set()
        self.down = False

    def prepare(self, cql: str) -> str:
        return cql

    def execute(self, stmt: str, params: tuple[Any, ...] | None = None) -> Any:
        if params is not None:  # read-through of one account
            found = [r for r in self.table if (r.merchant_id, r.currency) == params]
            return SimpleNamespace(one=lambda: found[0] if found else None)
        self.scans += 1
        self.hold.wait(5)
        if self.down:
            raise NoHostAvailable("Unable to connect to any servers", {})
        return list(self.table)


def wait_for(cond: Any) -> None:
    deadline = time.monotonic() + 5
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_first_lookup_loads_in_line_then_the_copy_serves() -> None:
    s = FakeSession()
    reg = CassandraMerchantRegistry(s, cache_ttl_s=60)  # type: ignore[arg-type]
    assert reg.lookup("m-1", "EUR").creditor_name == "Old Name"  # type: ignore[union-attr]
    assert reg.lookup("m-1", "EUR") is not None and s.scans == 1


def test_a_stale_copy_serves_at_once_while_the_re_read_runs_in_the_background() -> None:
    s = FakeSession()
    reg = CassandraMerchantRegistry(s, cache_ttl_s=0.05)  # type: ignore[arg-type]
    reg.lookup("m-1", "EUR")
    s.table = [row("m-1", "New Name")]
    s.hold.clear()  # the next scan hangs until released
    time.sleep(0.06)
    started = time.monotonic()
    found = reg.lookup("m-1", "EUR")
    assert time.monotonic() - started < 1, "the lookup waited for the re-read"
    assert found is not None and found.creditor_name == "Old Name"
    reg.lookup("m-1", "EUR")  # one re-read at a time
    assert s.scans == 2
    s.hold.set()
    wait_for(lambda: reg.lookup("m-1", "EUR").creditor_name == "New Name")  # type: ignore[union-attr]


def test_a_failed_re_read_keeps_the_copy_and_is_tried_again_a_ttl_later() -> None:
    s = FakeSession()
    reg = CassandraMerchantRegistry(s, cache_ttl_s=0.3)  # type: ignore[arg-type]
    reg.lookup("m-1", "EUR")
    s.down = True
    time.sleep(0.31)
    assert reg.lookup("m-1", "EUR") is not None  # served from the copy
    wait_for(lambda: not reg._refreshing.locked())
    for _ in range(50):
        assert reg.lookup("m-1", "EUR") is not None
    assert s.scans == 2, "a failed re-read was retried on every lookup"


def test_a_new_merchant_is_read_through_and_ttl_zero_re_reads_in_line() -> None:
    s = FakeSession()
    reg = CassandraMerchantRegistry(s, cache_ttl_s=60)  # type: ignore[arg-type]
    reg.lookup("m-1", "EUR")
    s.table.append(row("m-2", "Brand New"))
    assert reg.lookup("m-2", "EUR") is not None and s.scans == 1
    eager = CassandraMerchantRegistry(s, cache_ttl_s=0)  # type: ignore[arg-type]
    eager.lookup("m-1", "EUR")
    s.table = [row("m-1", "Renamed")]
    time.sleep(0.001)
    assert eager.lookup("m-1", "EUR").creditor_name == "Renamed"  # type: ignore[union-attr]
