"""Rows written once, by single-partition conditional batches of `INSERT ... IF NOT EXISTS`.

One Paxos round per batch instead of one per row. If any row of a conditional
batch already exists, Cassandra applies none of it and returns the existing
rows: those are settled (the caller compares them with its own), the rest are
issued again. A batch that fails (timeout: unknown outcome) is issued again as
the same conditional batch, which either applies now or returns the rows that
won — never a blind write. One batch per partition at a time: concurrent CAS
on one partition only contend.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from cassandra.cluster import Session
from cassandra.query import BatchStatement, BatchType, PreparedStatement
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from settlement.domain.errors import RetryableError
from settlement.store.session import wrap_error

log = structlog.get_logger(__name__)

# Rows per conditional batch: a ledger row is ~0.3 KB, so 100 stay well under
# Cassandra's batch_size_fail_threshold (50 KiB).
CHUNK = 100


@dataclass(frozen=True, slots=True)
class NewRow:
    partition: Hashable  # rows of one batch share it
    key: Hashable  # names the row in what a failed batch returns
    params: tuple[Any, ...]


class Pending(Protocol):
    def result(self) -> Any: ...


Submit = Callable[[Sequence[NewRow]], Pending]


def batch_submitter(session: Session, stmt: PreparedStatement) -> Submit:
    """`rows` as one conditional batch of `stmt`, sent asynchronously."""
    def submit(rows: Sequence[NewRow]) -> Pending:
        b = BatchStatement(batch_type=BatchType.LOGGED)
        for r in rows:
            b.add(stmt, r.params)
        fut: Pending = session.execute_async(b)
        return fut
    return submit


def insert_new(submit: Submit, rows: Sequence[NewRow], key_of: Callable[[Any], Hashable],
               what: str, attempts: int = 5, chunk: int = CHUNK) -> dict[Hashable, Any]:
    """Write each row unless its key exists; return key -> None (written by this call)
    or the existing row as Cassandra returned it. The first row of a repeated key wins."""
    pending: dict[Hashable, NewRow] = {}
    for r in rows:
        pending.setdefault(r.key, r)
    found: dict[Hashable, Any] = {}

    @retry(
        retry=retry_if_exception_type(RetryableError),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.05, max=2.0),
        reraise=True,
    )
    def settle() -> None:
        while pending:
            _round(submit, pending, found, key_of, what, chunk)

    if pending:
        settle()
    return found


def _round(submit: Submit, pending: dict[Hashable, NewRow], found: dict[Hashable, Any],
           key_of: Callable[[Any], Hashable], what: str, chunk: int) -> None:
    """One batch per partition, all partitions at once; settle what each batch tells."""
    by_partition: dict[Hashable, list[NewRow]] = {}
    for r in pending.values():
        group = by_partition.setdefault(r.partition, [])
        if len(group) < chunk:
            group.append(r)
    failed: list[BaseException] = []
    sent: list[tuple[list[NewRow], Pending]] = []
    for group in by_partition.values():
        try:
            sent.append((group, submit(group)))
        except Exception as exc:  # refused before it was sent
            failed.append(exc)
    for group, fut in sent:
        try:
            rs = list(fut.result())
        except Exception as exc:  # unknown outcome: the same batch goes again
            failed.append(exc)
            continue
        if rs and rs[0].applied:
            for r in group:
                found[r.key] = None
                del pending[r.key]
            continue
        keys = {r.key for r in group}
        won = [row for row in rs if key_of(row) in keys]
        if not won:
            failed.append(RetryableError(f"{what}: conditional batch not applied, no row returned"))
        for row in won:
            found[key_of(row)] = row
            del pending[key_of(row)]
    if failed:
        log.warning("store.cas_batch_retry", what=what, failed=len(failed), error=repr(failed[0]))
        raise wrap_error(failed[0], f"{what} ({len(failed)} of {len(by_partition)} batches failed)")
