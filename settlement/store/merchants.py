"""Merchant payout account registry in Cassandra, with a read-through cache refreshed ahead."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import structlog
from cassandra.cluster import Session

from settlement.domain.errors import SettlementError
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
    """Reads and writes accounts; `lookup` serves the ledger and batcher from a cache.

    The whole registry is cached and re-read every `cache_ttl_s`. Only the first load
    (and the one after an upsert) is waited for; later ones run on a background thread
    while lookups are served from the previous copy, because a re-read costs ~0.3 s per
    10,000 accounts, which otherwise lands on whichever record or seal comes next (the
    seal of a 10,000-payout batch waited for it). A merchant missing from the copy is
    read through at once. `cache_ttl_s` = 0 re-reads in line on every lookup.
    """

    _COLS = "merchant_id, currency, creditor_name, account_id, account_scheme, bank_bic, payout_mode"

    def __init__(self, session: Session, cache_ttl_s: float = 5.0) -> None:
        self._s = session
        self._ttl = cache_ttl_s
        self._cache: dict[tuple[str, str], MerchantAccount] = {}
        self._loaded_at = float("-inf")
        self._generation = 0  # bumped by upsert: a re-read started before it is not fresh
        self._refreshing = threading.Lock()  # held while a background re-read runs
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
        self._generation += 1
        self._loaded_at = float("-inf")
        return n

    def _reload(self) -> None:
        generation, started = self._generation, time.monotonic()
        cache = {(a.merchant_id, a.currency): a for a in self.all()}
        self._cache = cache
        if generation == self._generation:  # after an upsert here, the next lookup re-reads
            self._loaded_at = started

    def _refresh_ahead(self) -> None:
        if not self._refreshing.acquire(blocking=False):
            return  # one re-read at a time
        generation = self._generation

        def run() -> None:
            try:
                self._reload()
            except SettlementError as exc:
                # Cassandra down: serve the last copy, try again a TTL later (not on every
                # lookup, which would start a thread per record).
                log.warning("merchants.refresh_failed", error=str(exc)[:300])
                if generation == self._generation:
                    self._loaded_at = time.monotonic()
            finally:
                self._refreshing.release()

        threading.Thread(target=run, name="merchant-refresh", daemon=True).start()

    def all(self) -> Iterator[MerchantAccount]:
        try:
            for r in self._s.execute(f"SELECT {self._COLS} FROM merchant_accounts"):
                yield _account(r)
        except Exception as exc:
            raise wrap_error(exc, "list merchant accounts") from exc

    def lookup(self, merchant_id: str, currency: str) -> MerchantAccount | None:
        age = time.monotonic() - self._loaded_at
        if age > self._ttl:
            if self._ttl == 0 or self._loaded_at == float("-inf"):
                self._reload()
            else:
                self._refresh_ahead()
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
