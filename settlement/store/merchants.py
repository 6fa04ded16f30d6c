"""Merchant payout account registry in Cassandra, with a small read-through cache."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import structlog
from cassandra.cluster import Session

from settlement.domain.merchant import MerchantAccount
from settlement.store.session import wrap_error

log = structlog.get_logger(__name__)


def _account(r: Any) -> MerchantAccount:  # a driver row (cassandra is untyped)
    return MerchantAccount.model_construct(
        merchant_id=r.merchant_id, currency=r.currency,
        creditor_name=r.creditor_name, account_id=r.account_id,
        account_scheme=r.account_scheme, bank_bic=r.bank_bic,
        payout_mode=r.payout_mode,
    )


class CassandraMerchantRegistry:
    """Reads and writes accounts; `lookup` serves the ledger and the batcher from a TTL cache."""

    _COLS = "merchant_id, currency, creditor_name, account_id, account_scheme, bank_bic, payout_mode"

    def __init__(self, session: Session, cache_ttl_s: float = 5.0) -> None:
        self._s = session
        self._ttl = cache_ttl_s
        self._cache: dict[tuple[str, str], MerchantAccount] = {}
        self._loaded_at = float("-inf")
        self._reload = threading.Lock()
        self._upsert = session.prepare(
            f"INSERT INTO merchant_accounts ({self._COLS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._get = session.prepare(
            f"SELECT {self._COLS} FROM merchant_accounts WHERE merchant_id = ? AND currency = ?"
        )

    def upsert(self, accounts: Iterable[MerchantAccount]) -> int:
        now = datetime.now(UTC)
        n = 0
        try:
            for a in accounts:
                self._s.execute(self._upsert, (
                    a.merchant_id, a.currency, a.creditor_name, a.account_id, a.account_scheme,
                    a.bank_bic, a.payout_mode, now,
                ))
                n += 1
        except Exception as exc:
            raise wrap_error(exc, "upsert merchant accounts") from exc
        self._loaded_at = float("-inf")
        return n

    def all(self) -> Iterator[MerchantAccount]:
        try:
            for r in self._s.execute(f"SELECT {self._COLS} FROM merchant_accounts"):
                yield _account(r)
        except Exception as exc:
            raise wrap_error(exc, "list merchant accounts") from exc

    def warm(self) -> None:
        """Reload the cache now if it is stale, so that the lookups which follow hit it.

        Thread-safe: the batcher warms on a helper thread ahead of a seal; a second caller
        waits for a reload under way and finds the cache fresh. A fresh cache (every
        lookup of the ledger's but one per TTL) takes no lock.
        """
        if time.monotonic() - self._loaded_at <= self._ttl:
            return
        with self._reload:
            now = time.monotonic()
            if now - self._loaded_at > self._ttl:
                self._cache = {(a.merchant_id, a.currency): a for a in self.all()}
                self._loaded_at = now

    def lookup(self, merchant_id: str, currency: str) -> MerchantAccount | None:
        self.warm()
        found = self._cache.get((merchant_id, currency))
        if found is None:
            # A brand-new merchant must not wait a whole TTL: read through once.
            try:
                row = self._s.execute(self._get, (merchant_id, currency)).one()
            except Exception as exc:
                raise wrap_error(exc, "read merchant account") from exc
            if row is not None:
                found = _account(row)
                self._cache[(merchant_id, currency)] = found
        return found
