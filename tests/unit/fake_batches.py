"""In-memory BatchStore with the Cassandra store's conditional semantics (unit tests only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from settlement.domain.reconciliation import ExpectedBooking
from settlement.service.ports import AddOutcome, BatchHeader, BatchRow, SealState


@dataclass
class _Batch:
    head: BatchHeader
    epoch: int
    status: str = "open"
    rows: dict[tuple[str, str], BatchRow] = field(default_factory=dict)
    sealed_by: str | None = None
    sealed_at: datetime | None = None
    msg_id: str | None = None


class FakeBatchStore:
    def __init__(self) -> None:
        self.epochs: dict[int, int] = {}
        self.batches: dict[str, _Batch] = {}
        self.messages: dict[str, bytes] = {}
        self.payouts: dict[str, tuple[Any, ...]] = {}
        self.expected: dict[str, list[ExpectedBooking]] = {}
        self.index: dict[str, tuple[Any, ...]] = {}  # batch id -> its mark_index params
        self.pending: dict[str, tuple[str, int]] = {}  # batch id -> its items (topic, partition)
        self.add_calls = 0  # rounds of conditional batches

    def claim(self, topic: str, partition: int, owner: str) -> int:
        self.epochs[partition] = self.epochs.get(partition, 0) + 1
        return self.epochs[partition]

    def create(self, headers: Sequence[BatchHeader], epoch: int) -> None:
        for h in headers:
            self.batches.setdefault(h.batch_id, _Batch(h, epoch))

    def add(self, groups: dict[str, list[BatchRow]],
            epoch: int | Mapping[str, int]) -> dict[str, AddOutcome]:
        self.add_calls += 1
        out = {}
        for bid, rows in groups.items():
            mine = epoch if isinstance(epoch, int) else epoch[bid]
            b = self.batches.get(bid)
            if b is None:
                out[bid] = AddOutcome.MISSING
            elif b.status != "open":
                out[bid] = AddOutcome.SEALED
            elif b.epoch > mine:
                out[bid] = AddOutcome.FENCED
            else:
                b.epoch = mine
                for r in rows:
                    b.rows[(r.payout_id, r.payment_id)] = r
                out[bid] = AddOutcome.APPLIED
        return out

    def present(self, keys: Sequence[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
        return {k for k in keys if k[0] in self.batches and (k[1], k[2]) in self.batches[k[0]].rows}

    def seal(self, batch_id: str, epoch: int, sealed_by: str, sealed_at: datetime,
             msg_id: str) -> SealState:
        b = self.batches[batch_id]
        if b.status == "open" and b.epoch <= epoch:
            b.status, b.epoch, b.sealed_by, b.sealed_at, b.msg_id = (
                "sealed", epoch, sealed_by, sealed_at, msg_id)
            return SealState(True, "sealed", sealed_by, sealed_at, msg_id, epoch)
        return SealState(False, b.status, b.sealed_by, b.sealed_at, b.msg_id, b.epoch)

    def header(self, batch_id: str) -> tuple[BatchHeader, SealState] | None:
        b = self.batches.get(batch_id)
        if b is None:
            return None
        return b.head, SealState(False, b.status, b.sealed_by, b.sealed_at, b.msg_id, b.epoch)

    def rows(self, batch_id: str) -> list[BatchRow]:
        return list(self.batches[batch_id].rows.values())

    def batches_of(self, topic: str, partition: int) -> list[tuple[str, str, datetime]]:
        return [(b.head.batch_id, b.status, b.head.cutoff_at) for b in self.batches.values()
                if b.head.items_partition == partition]

    def message(self, batch_id: str) -> bytes | None:
        return self.messages.get(batch_id)

    def save_payouts(self, params: list[tuple[Any, ...]]) -> None:
        for p in params:
            self.payouts.setdefault(p[0], p)

    def save_retried(self, params: list[tuple[Any, ...]]) -> None:
        for p in params:
            self.payouts[p[0]] = p

    def save_expected(self, batch_id: str, rows: Sequence[ExpectedBooking]) -> None:
        self.expected[batch_id] = list(rows)

    def save_message(self, params: tuple[Any, ...]) -> None:
        self.messages[params[0]] = params[7]

    def mark_index(self, params: tuple[Any, ...]) -> None:
        self.index[str(params[-1])] = params

    def mark_pending(self, batch_id: str, topic: str, partition: int, msg_id: str,
                     sealed_at: datetime) -> None:
        self.pending[batch_id] = (topic, partition)

    def pending_of(self, topic: str, partition: int) -> list[str]:
        return sorted(b for b, tp in self.pending.items() if tp == (topic, partition))

    def clear_pending(self, batch_id: str) -> None:
        self.pending.pop(batch_id, None)

    def mark_unsent(self, payout_ids: Sequence[str], sealed_at: datetime) -> None:
        for pid in payout_ids:
            p = self.payouts[pid]
            self.payouts[pid] = (*p[:14], "unsent", *p[15:])
