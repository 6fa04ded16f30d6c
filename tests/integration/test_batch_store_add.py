"""Payments placed into open batches on the real Cassandra: conditional batches of up to
CHUNK rows, every row landing once, also when a poll is replayed; a sealed, fenced or
missing batch refuses its rows and says which it is (the batcher re-places a sealed
batch's rows one window on, and stops as a zombie on a fenced one)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from cassandra.cluster import Session

from settlement.service.ports import AddOutcome, BatchHeader, BatchRow
from settlement.store.batches import CHUNK, CassandraBatchStore

CUTOFF = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
AT = datetime(2026, 11, 2, 9, 59, 30, tzinfo=UTC)


def header(batch_id: str) -> BatchHeader:
    return BatchHeader(batch_id, "MOCKDEFFXXX", "EUR", "20261102T1000", CUTOFF, date(2026, 11, 2),
                       0, "items", 0)


def rows(prefix: str, n: int) -> list[BatchRow]:
    return [BatchRow(f"PO{prefix}{i:05d}", f"pay-{prefix}-{i}", f"m-{i % 7}", "window", 1000 + i,
                     30, AT, False) for i in range(n)]


def in_batch(session: Session, batch_id: str) -> set[str]:
    return {r.payment_id for r in session.execute(
        "SELECT payment_id FROM batches WHERE batch_id = %s", (batch_id,))
        if r.payment_id is not None}


def test_every_row_lands_once_in_its_batch_also_when_replayed(session: Session) -> None:
    store = CassandraBatchStore(session)
    store.create([header("B-A"), header("B-B")], 1)
    big, small = rows("A", 2 * CHUNK + 50), rows("B", 30)  # 3 chunks and 1
    assert store.add({"B-A": big, "B-B": small}, 1) == {
        "B-A": AddOutcome.APPLIED, "B-B": AddOutcome.APPLIED}
    assert in_batch(session, "B-A") == {r.payment_id for r in big}
    assert in_batch(session, "B-B") == {r.payment_id for r in small}

    assert store.add({"B-A": big}, 1) == {"B-A": AddOutcome.APPLIED}  # a replayed poll
    assert len(in_batch(session, "B-A")) == len(big)


def test_a_sealed_fenced_or_missing_batch_refuses_its_rows(session: Session) -> None:
    store = CassandraBatchStore(session)
    store.create([header("B-S"), header("B-O")], 1)
    store.create([header("B-F")], 2)  # a newer owner's
    assert store.seal("B-S", 1, "items/0@7", CUTOFF, "MSG-S").applied
    out = store.add({"B-S": rows("S", 2 * CHUNK), "B-F": rows("F", 2 * CHUNK),
                     "B-O": rows("O", 2 * CHUNK), "B-M": rows("M", 10)}, 1)
    assert out == {"B-S": AddOutcome.SEALED, "B-F": AddOutcome.FENCED,
                   "B-O": AddOutcome.APPLIED, "B-M": AddOutcome.MISSING}
    assert in_batch(session, "B-S") == set() and in_batch(session, "B-F") == set()
    assert len(in_batch(session, "B-O")) == 2 * CHUNK
    assert store.present([("B-O", "POO00003", "pay-O-3"), ("B-S", "POS00003", "pay-S-3")]) == {
        ("B-O", "POO00003", "pay-O-3")}


def test_batches_of_several_partitions_are_added_each_under_its_own_epoch(session: Session) -> None:
    # The batcher places a poll over several items partitions in one round: each batch is
    # guarded by the epoch of the partition it belongs to, not by one epoch for all.
    store = CassandraBatchStore(session)
    store.create([header("B-P0")], 1)
    store.create([header("B-P1"), header("B-P1-OLD")], 3)
    epochs = {"B-P0": 1, "B-P1": 3, "B-P1-OLD": 2}  # the last as a zombie owner of that partition
    out = store.add({"B-P0": rows("P", 2 * CHUNK), "B-P1": rows("Q", 20),
                     "B-P1-OLD": rows("R", 20)}, epochs)
    assert out == {"B-P0": AddOutcome.APPLIED, "B-P1": AddOutcome.APPLIED,
                   "B-P1-OLD": AddOutcome.FENCED}
    assert len(in_batch(session, "B-P0")) == 2 * CHUNK and len(in_batch(session, "B-P1")) == 20
    assert in_batch(session, "B-P1-OLD") == set()
    owner = {r.batch_id: r.owner_epoch for r in session.execute(
        "SELECT batch_id, owner_epoch FROM batches WHERE batch_id IN ('B-P0', 'B-P1')")}
    assert owner == {"B-P0": 1, "B-P1": 3}
