"""Rows from the real node come as the driver's namedtuples, one class per column set."""

from __future__ import annotations

from settlement.store.session import connect
from tests.conftest import Namespace


def test_results_reuse_one_row_class_and_keep_applied(ns: Namespace) -> None:
    session = connect(ns.settings.cassandra, keyspace=ns.settings.cassandra.keyspace)
    try:
        insert = session.prepare(
            "INSERT INTO ledger_buckets (bucket, payment_id, event_id) VALUES (?, ?, ?) IF NOT EXISTS")
        won = session.execute(insert, (1, "pay-rows-1", "ev-1")).one()
        lost = session.execute(insert, (1, "pay-rows-1", "ev-2")).one()
        again = session.execute(insert, (1, "pay-rows-2", "ev-3")).one()
    finally:
        session.cluster.shutdown()
    assert won.applied is True and again.applied is True
    assert lost.applied is False and lost.event_id == "ev-1"  # the row that won comes back
    assert type(won) is type(again)  # the same columns: the class made once
    assert type(lost) is not type(won)
