"""The ledger's write path: conditional batches per bucket, against an in-memory table
with Cassandra's all-or-nothing batch semantics (tests/unit/fake_cas.py)."""

from datetime import UTC, datetime

import pytest

from settlement.domain.errors import FatalError, RetryableError
from settlement.domain.payment import PaymentSucceeded
from settlement.service.ledger import classify
from settlement.service.ports import LedgerEntry, RecordStatus, SourceRef
from settlement.store.buckets import (
    LEDGER_BUCKETS,
    kafka_partition,
    ledger_bucket,
    murmur2,
)
from settlement.store.cas_batch import NewRow, insert_new
from settlement.store.ledger import record_with
from tests.unit.fake_cas import FakeCasTable

COLUMNS = ("bucket", "payment_id", "event_id", "merchant_id", "amount_minor", "fee_minor",
           "currency", "captured_at", "schema_version", "fingerprint", "src_topic",
           "src_partition", "src_offset", "recorded_at")


def entry(pid: str, offset: int, amount: int = 1000, partition: int = 0) -> LedgerEntry:
    ev = PaymentSucceeded(schema_version=1, event_id=f"evt-{pid}-{amount}", payment_id=pid,
                          merchant_id="m-1", amount_minor=amount, fee_minor=30, currency="EUR",
                          captured_at=datetime(2026, 11, 2, 8, tzinfo=UTC))
    return LedgerEntry(ev, ev.fingerprint(), SourceRef("payments.succeeded", partition, offset))


def same_bucket(n: int, bucket: int = 7) -> list[str]:
    """n payment ids that share one bucket, so they share one conditional batch."""
    out, i = [], 0
    while len(out) < n:
        pid = f"pay-{i}"
        if ledger_bucket(pid) == bucket:
            out.append(pid)
        i += 1
    return out


def table(*faults: str | None) -> FakeCasTable:
    return FakeCasTable(COLUMNS, faults)


def test_murmur2_is_kafkas() -> None:
    # Kafka's UtilsTest.testMurmur2 vectors
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(b"abc") == 479470107


@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 5, 6, 10, 12, 30])
def test_a_bucket_lies_in_one_kafka_partition_when_the_count_divides(partitions: int) -> None:
    assert LEDGER_BUCKETS % partitions == 0
    for i in range(2000):
        pid = f"pay-{i:06d}"
        assert ledger_bucket(pid) % partitions == kafka_partition(pid.encode(), partitions)


def test_new_payments_are_one_batch_per_bucket() -> None:
    t = table()
    pids = [f"pay-{i}" for i in range(300)]
    rows = record_with(t.submit, [entry(p, i) for i, p in enumerate(pids)])
    assert all(r.applied for r in rows)
    assert len(t.rows) == 300
    assert len(t.batches) == len({ledger_bucket(p) for p in pids})


def test_a_full_bucket_is_written_in_bounded_batches_one_at_a_time() -> None:
    t = table()
    rows = record_with(t.submit, [entry(p, i) for i, p in enumerate(same_bucket(250))])
    assert all(r.applied for r in rows) and len(t.rows) == 250
    assert [len(b) for b in t.batches] == [100, 100, 50]


def test_existing_rows_are_reported_and_the_rest_written_again() -> None:
    t = table()
    pids = same_bucket(6)
    first = [entry(pids[0], 0), entry(pids[2], 2, amount=999)]
    record_with(t.submit, first)
    again = [entry(p, i) for i, p in enumerate(pids)]  # same source offsets as before
    rows = record_with(t.submit, again)
    # pids[0]: our own earlier write (replay); pids[2]: another payload won (conflict)
    assert [classify(e, r) for e, r in zip(again, rows, strict=True)] == [
        RecordStatus.REPLAYED, RecordStatus.NEW, RecordStatus.CONFLICT,
        RecordStatus.NEW, RecordStatus.NEW, RecordStatus.NEW]
    assert rows[2].fingerprint == first[1].fingerprint and rows[2].event_id == first[1].event.event_id
    assert len(t.rows) == 6  # nothing lost, nothing doubled
    assert t.batches[-2:] == [pids, [pids[1], pids[3], pids[4], pids[5]]]


def test_a_redelivery_at_another_offset_is_a_duplicate_across_and_within_polls() -> None:
    t = table()
    pid = same_bucket(1)[0]
    record_with(t.submit, [entry(pid, 0)])
    # a later poll: the same event at another offset, twice, plus a conflicting payload
    later = [entry(pid, 10), entry(pid, 11, partition=3), entry(pid, 12, amount=5000)]
    rows = record_with(t.submit, later)
    assert [classify(e, r) for e, r in zip(later, rows, strict=True)] == [
        RecordStatus.DUPLICATE, RecordStatus.DUPLICATE, RecordStatus.CONFLICT]
    # the same poll: first occurrence writes, the redelivery is judged against it
    t2 = table()
    same = [entry(pid, 0), entry(pid, 1)]
    rows = record_with(t2.submit, same)
    assert [classify(e, r) for e, r in zip(same, rows, strict=True)] == [
        RecordStatus.NEW, RecordStatus.DUPLICATE]
    assert len(t2.rows) == 1 and t2.batches == [[pid]]


def test_a_batch_lost_to_a_timeout_is_issued_again_as_the_same_conditional_batch() -> None:
    t = table("lost")
    pids = same_bucket(3)
    rows = record_with(t.submit, [entry(p, i) for i, p in enumerate(pids)])
    assert all(r.applied for r in rows)
    assert t.batches == [pids, pids]


def test_a_batch_that_applied_before_its_timeout_comes_back_as_ours() -> None:
    t = table("late")
    pids = same_bucket(3)
    entries = [entry(p, i) for i, p in enumerate(pids)]
    rows = record_with(t.submit, entries)
    # the retry finds our own rows: re-emitted (same source), never written twice
    assert [classify(e, r) for e, r in zip(entries, rows, strict=True)] == [RecordStatus.REPLAYED] * 3
    assert t.batches == [pids, pids] and len(t.rows) == 3


def test_only_the_failed_bucket_is_retried() -> None:
    t = table(None, "lost")
    a, b = same_bucket(2, bucket=1), same_bucket(2, bucket=2)
    record_with(t.submit, [entry(p, i) for i, p in enumerate(a + b)])
    assert t.batches == [a, b, b]


def test_timeouts_past_the_attempts_raise_retryable() -> None:
    t = table(*["lost"] * 5)
    with pytest.raises(RetryableError, match="ledger write"):
        record_with(t.submit, [entry("pay-1", 0)], attempts=3)
    assert len(t.batches) == 3 and not t.rows


def test_a_batch_refused_without_a_row_is_retried_not_taken_for_written() -> None:
    class Refusing(FakeCasTable):
        def submit(self, rows):  # type: ignore[no-untyped-def]  # test double
            done = super().submit(rows)
            self.rows.clear()
            done._rows = [self.row_type(False, *[None] * len(COLUMNS))]
            return done

    with pytest.raises(RetryableError, match="not applied, no row returned"):
        record_with(Refusing(COLUMNS).submit, [entry("pay-1", 0)], attempts=2)


def test_a_non_transient_error_is_fatal_at_once() -> None:
    calls = []

    def submit(rows):  # type: ignore[no-untyped-def]  # test double
        calls.append(rows)
        raise ValueError("bad statement")

    with pytest.raises(FatalError, match="bad statement"):
        insert_new(submit, [NewRow(0, "k", ())], lambda r: r.payment_id, "x")
    assert len(calls) == 1
