"""The ledger's conditional batches on the real Cassandra: a batch that meets existing
rows is refused whole, and the store settles it row by row — duplicates detected,
conflicts reported, nothing lost, nothing doubled."""

from __future__ import annotations

from datetime import UTC, datetime

from cassandra.cluster import Session
from confluent_kafka import Producer

from settlement.domain.payment import PaymentSucceeded
from settlement.kafka.reader import read_all
from settlement.service.ledger import classify
from settlement.service.ports import LedgerEntry, ParkedPayment, RecordStatus, SourceRef
from settlement.store.buckets import kafka_partition, ledger_bucket
from settlement.store.ledger import CassandraLedgerStore
from tests.conftest import Namespace

TOPIC = "payments.succeeded"


def entry(pid: str, offset: int, amount: int = 1000, partition: int = 0) -> LedgerEntry:
    ev = PaymentSucceeded(schema_version=1, event_id=f"evt-{pid}-{amount}", payment_id=pid,
                          merchant_id="m-1", amount_minor=amount, fee_minor=30, currency="EUR",
                          captured_at=datetime(2026, 11, 2, 8, tzinfo=UTC))
    return LedgerEntry(ev, ev.fingerprint(), SourceRef(TOPIC, partition, offset))


def one_bucket(n: int) -> list[str]:
    out, i = [], 0
    while len(out) < n:
        if ledger_bucket(pid := f"pay-{i}") == 5:
            out.append(pid)
        i += 1
    return out


def rows(session: Session) -> dict[str, tuple[int, str, int]]:
    found = list(session.execute(
        "SELECT bucket, payment_id, amount_minor, src_offset FROM ledger_buckets"))
    assert all(r.bucket == ledger_bucket(r.payment_id) for r in found)
    return {r.payment_id: (r.amount_minor, r.src_offset) for r in found}


def test_a_batch_meeting_existing_rows_settles_each_row_once(session: Session) -> None:
    store = CassandraLedgerStore(session)
    pids = one_bucket(150)  # two batches' worth in one bucket: both meet existing rows
    first = [entry(p, i) for i, p in enumerate(pids[:40])] + [entry(pids[100], 100, amount=777)]
    assert all(r.applied for r in store.record(first))

    # the next poll: every payment again at its old offset (a replay after an abort),
    # pids[100] with another payload, and pids[3] redelivered at other offsets, twice
    again = [entry(p, i) for i, p in enumerate(pids)]
    again += [entry(pids[3], 1000), entry(pids[3], 1001, partition=2)]
    got = store.record(again)
    status = [classify(e, r) for e, r in zip(again, got, strict=True)]
    assert status[:40] == [RecordStatus.REPLAYED] * 40
    assert status[40:100] == [RecordStatus.NEW] * 60
    assert status[100] is RecordStatus.CONFLICT and got[100].event_id == f"evt-{pids[100]}-777"
    assert status[101:150] == [RecordStatus.NEW] * 49
    assert status[150:] == [RecordStatus.DUPLICATE] * 2

    held = rows(session)
    assert set(held) == set(pids)                       # nothing lost
    assert held[pids[100]] == (777, 100)                # the first payload wins
    assert all(held[p] == (1000, i) for i, p in enumerate(pids) if i != 100)  # nothing doubled


def test_a_redelivery_in_the_same_poll_is_written_once(session: Session) -> None:
    store = CassandraLedgerStore(session)
    pid = one_bucket(1)[0]
    poll = [entry(pid, 7), entry("pay-other", 8), entry(pid, 9, partition=4), entry(pid, 10, 5000)]
    got = store.record(poll)
    assert [classify(e, r) for e, r in zip(poll, got, strict=True)] == [
        RecordStatus.NEW, RecordStatus.NEW, RecordStatus.DUPLICATE, RecordStatus.CONFLICT]
    assert rows(session) == {pid: (1000, 7), "pay-other": (1000, 8)}


def test_parking_again_keeps_a_released_payment_released(session: Session) -> None:
    store = CassandraLedgerStore(session)

    def parked(pid: str) -> ParkedPayment:
        return ParkedPayment(pid, "m-1", "EUR", "merchant_without_payout_account", "{}",
                             SourceRef(TOPIC, 1, -1))

    store.park([parked("a"), parked("b")])
    store.mark_released([parked("a")])
    store.park([parked("a"), parked("b"), parked("c")])  # a replayed poll meets all three cases
    assert sorted(p.payment_id for p in store.parked(TOPIC, 1)) == ["b", "c"]


def test_payments_keyed_by_payment_id_land_on_their_buckets_partition(ns: Namespace) -> None:
    # The bucket layout assumes producers partition like Java's (murmur2): check librdkafka's.
    s = ns.settings
    p = Producer({**s.kafka.client_config(), "partitioner": "murmur2_random"})
    keys = [f"pay-{i:05d}" for i in range(200)]
    for k in keys:
        p.produce(s.topics.payments, key=k.encode(), value=b"{}")
    assert p.flush(30) == 0
    landed = {m.key().decode(): m.partition() for m in read_all(s.kafka, s.topics.payments)}
    parts = s.topics.partitions
    assert landed == {k: kafka_partition(k.encode(), parts) for k in keys}
    assert all(landed[k] == ledger_bucket(k) % parts for k in keys)
