"""A sealed batch's payouts written as unlogged batches of rows sharing replicas, on the
real Cassandra: every row lands once with the seal's write timestamp, a replay rewrites
the same rows, and one-by-one writes (write_batch_rows = 1) give the same table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cassandra.cluster import Session

from settlement.store.batches import CassandraBatchStore

SEALED_AT = datetime(2026, 11, 2, 10, 0, 1, tzinfo=UTC)
RESEALED_AT = datetime(2026, 11, 2, 11, 0, 1, tzinfo=UTC)  # the retry's own batch


def payouts(prefix: str, n: int) -> list[tuple[Any, ...]]:
    return [(f"PO{prefix}{i:05d}", "B-1", f"m-{i}", "EUR", "W-1", 1000 + i, 1030 + i, 30, 1, 0,
             1, f"E{prefix}{i:05d}-1", f"I{prefix}{i:05d}-1", f"uetr-{i}", "sent", SEALED_AT)
            for i in range(n)]


def table(session: Session, prefix: str) -> dict[str, tuple[Any, ...]]:
    return {r.payout_id: (r.amount_minor, r.gross_minor, r.end_to_end_id, r.status, r.wt)
            for r in session.execute(
                "SELECT payout_id, amount_minor, gross_minor, end_to_end_id, status, "
                "WRITETIME(status) AS wt FROM payouts")
            if r.payout_id.startswith(f"PO{prefix}")}


def test_payouts_in_batches_land_once_each_with_the_seal_timestamp(session: Session) -> None:
    stamp = int(SEALED_AT.timestamp() * 1_000_000)
    store = CassandraBatchStore(session, batch_rows=32)
    store.save_payouts(payouts("A", 1000))  # 32 rows a batch: 31 full batches and a tail
    got = table(session, "A")
    assert len(got) == 1000
    assert got["POA00007"] == (1007, 1037, "EA00007-1", "sent", stamp)
    assert {v[4] for v in got.values()} == {stamp}

    store.save_payouts(payouts("A", 1000))  # a replayed seal: the same writes
    assert table(session, "A") == got

    CassandraBatchStore(session, batch_rows=1).save_payouts(payouts("B", 1000))
    one_by_one = table(session, "B")
    assert {k[3:]: v[:1] + v[3:] for k, v in one_by_one.items()} == {
        k[3:]: v[:1] + v[3:] for k, v in got.items()}


def test_retried_payouts_in_batches_move_to_their_new_attempt(session: Session) -> None:
    store = CassandraBatchStore(session, batch_rows=16)
    store.save_payouts(payouts("C", 100))
    retried = [(*p[:10], 2, p[11].replace("-1", "-2"), p[12], p[13], "sent", RESEALED_AT)
               for p in payouts("C", 100)]
    store.save_retried(retried)
    got = {r.payout_id: (r.attempt, r.end_to_end_id) for r in session.execute(
        "SELECT payout_id, attempt, end_to_end_id FROM payouts") if r.payout_id.startswith("POC")}
    assert len(got) == 100 and all(a == 2 and e.endswith("-2") for a, e in got.values())


def test_unsent_payouts_stay_unsent_when_a_seal_is_replayed(session: Session) -> None:
    """A pacs.008 too large to send: its payouts, written as sent at the seal's timestamp,
    are marked unsent one microsecond later, so a replayed seal's same write cannot undo it."""
    store = CassandraBatchStore(session, batch_rows=32)
    store.save_payouts(payouts("D", 100))
    store.mark_unsent([f"POD{i:05d}" for i in range(60)], SEALED_AT)
    store.save_payouts(payouts("D", 100))  # the replayed seal
    got = table(session, "D")
    assert sorted(v[3] for v in got.values()) == ["sent"] * 40 + ["unsent"] * 60
    assert got["POD00007"][3] == "unsent" and got["POD00077"][3] == "sent"
