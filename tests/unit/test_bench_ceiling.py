"""The ceiling's client processes report their errors instead of going silent."""

from __future__ import annotations

import queue

import pytest

from settlement.bench_ceiling import _BUCKET_INSERT, _ROW_INSERT, _reply


def test_a_failed_client_is_reported_with_its_error() -> None:
    out: queue.Queue[tuple[object, ...]] = queue.Queue()
    out.put(("failed", "WriteTimeout: CAS operation timed out"))
    with pytest.raises(RuntimeError, match="a Cassandra client failed: WriteTimeout: CAS"):
        _reply(out, 1, "ready")


def test_a_silent_client_is_a_timeout_that_says_what_it_waited_for() -> None:
    with pytest.raises(RuntimeError, match="no Cassandra client reported done within 0 s"):
        _reply(queue.Queue(), 0.01, "done")


def test_a_report_is_passed_on() -> None:
    out: queue.Queue[tuple[object, ...]] = queue.Queue()
    out.put(("done", 1.5, 0.7))
    assert _reply(out, 1, "done") == ("done", 1.5, 0.7)


def test_single_row_writes_go_to_a_partition_per_payment_and_batches_to_buckets() -> None:
    """One LWT per row on 30 shared bucket partitions, 128 in flight, only measured
    Paxos contention (and timed out); per payment is how the ledger wrote them."""
    assert _ROW_INSERT.startswith("INSERT INTO ledger (payment_id,") and _ROW_INSERT.count("?") == 13
    assert _BUCKET_INSERT.startswith("INSERT INTO ledger_buckets (bucket, payment_id,")
    assert _BUCKET_INSERT.count("?") == 14 and _BUCKET_INSERT.endswith("IF NOT EXISTS")
