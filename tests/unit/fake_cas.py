"""An in-memory table with Cassandra's conditional-batch semantics, for store.cas_batch."""

from __future__ import annotations

from collections import Counter, namedtuple
from collections.abc import Hashable, Sequence
from typing import Any

from cassandra import WriteTimeout

from settlement.store.cas_batch import NewRow


class _Done:
    def __init__(self, table: FakeCasTable, partition: Hashable, rows: list[Any] | None = None,
                 exc: BaseException | None = None) -> None:
        self._table, self._partition, self._rows, self._exc = table, partition, rows, exc

    def result(self) -> list[Any]:
        self._table.in_flight[self._partition] -= 1
        if self._exc is not None:
            raise self._exc
        assert self._rows is not None
        return self._rows


class FakeCasTable:
    """Rows by key; a batch applies whole or not at all, and then returns the rows
    that exist (all columns, `applied` False). `faults` scripts the next batches:
    "lost" times out unapplied, "late" applies and then times out, None is normal."""

    def __init__(self, columns: Sequence[str], faults: Sequence[str | None] = ()) -> None:
        self.row_type = namedtuple("Row", ["applied", *columns])  # type: ignore[misc]  # dynamic row
        self.rows: dict[Hashable, tuple[Any, ...]] = {}
        self.faults = list(faults)
        self.batches: list[list[Hashable]] = []
        self.in_flight: Counter[Hashable] = Counter()

    def submit(self, rows: Sequence[NewRow]) -> _Done:
        partition = rows[0].partition
        assert all(r.partition == partition for r in rows), "a batch spans one partition"
        assert len(rows) <= 100, "batch too large"
        assert not self.in_flight[partition], "two batches in flight on one partition"
        self.in_flight[partition] += 1
        self.batches.append([r.key for r in rows])
        fault = self.faults.pop(0) if self.faults else None
        if fault == "lost":
            return _Done(self, partition, exc=WriteTimeout("CAS timed out", write_type=5))
        existing = [self.row_type(False, *self.rows[r.key]) for r in rows if r.key in self.rows]
        if existing:
            return _Done(self, partition, existing)
        for r in rows:
            self.rows[r.key] = r.params
        if fault == "late":
            return _Done(self, partition, exc=WriteTimeout("CAS timed out", write_type=5))
        return _Done(self, partition, [self.row_type(True, *[None] * (len(self.row_type._fields) - 1))])
