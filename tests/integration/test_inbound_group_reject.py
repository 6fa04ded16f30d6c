"""A bank's group reject (pacs.002 RJCT for the whole message, no transactions) finds every
payout of the batch it names, on the real Cassandra: read together, each one as written
by LWT (SERIAL), the payouts with nothing to pay left out."""

from __future__ import annotations

from datetime import UTC, datetime

from cassandra.cluster import Session

from settlement.service.ports import BatchHeader, BatchRow
from settlement.store.batches import CassandraBatchStore
from settlement.store.inbound import READ_CONCURRENCY, CassandraInboundStore
from tests.conftest import Namespace

AT = datetime(2026, 11, 2, 9, 59, tzinfo=UTC)
SEALED = datetime(2026, 11, 2, 10, 0, 3, tzinfo=UTC)
N = 3 * READ_CONCURRENCY + 7  # more than one round of reads in flight


def test_a_group_reject_finds_every_payout_of_the_batch_but_those_with_nothing_to_pay(
        ns: Namespace, session: Session) -> None:
    batches = CassandraBatchStore(session)
    batches.create([BatchHeader("B-GRP", "MOCKDEFFXXX", "EUR", "20261102T1000", AT, AT.date(), 0,
                                ns.settings.topics.items, 0)], 1)
    ids = [f"POGRP{i:04d}" for i in range(N)]
    batches.add({"B-GRP": [BatchRow(pid, f"pay-{pid}", f"m-{i}", "payment", 1000 + i, 0, AT,
                                    False) for i, pid in enumerate(ids)]}, 1)
    status = {pid: "nothing_to_pay" if i % 50 == 7 else "sent" for i, pid in enumerate(ids)}
    batches.save_payouts([(pid, "B-GRP", f"m-{i}", "EUR", "20261102T1000", 1000 + i, 1000 + i, 0,
                           1, 0, 1, f"E{pid[2:]}-1", f"I{pid[2:]}-1", "u", status[pid], SEALED)
                          for i, pid in enumerate(ids)])
    batches.save_message(("B-GRP", "MSG-GRP", "MOCKDEFFXXX", "EUR", AT.date(), N, 0, b"<x/>",
                          SEALED))

    found = CassandraInboundStore(session).payouts_of_msg("MSG-GRP")

    assert [(p.payout_id, p.batch_id, p.status) for p in found] == [
        (pid, "B-GRP", "sent") for pid in ids if status[pid] == "sent"]
    assert {p.payout_id: p.amount_minor for p in found} == {
        pid: 1000 + i for i, pid in enumerate(ids) if status[pid] == "sent"}
    assert CassandraInboundStore(session).payouts_of_msg("MSG-NEVER-SENT") == []
