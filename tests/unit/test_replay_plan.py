"""What a replay writes: copies keep key, bytes, headers and partition; dead letters go home once."""

from __future__ import annotations

from settlement.service.deadletter import dead_letter, header
from settlement.service.ports import InboundRecord, SourceRef
from settlement.service.replay import (
    H_REPLAY_ORIGIN,
    H_REPLAYED_FROM,
    copy_record,
    plan_dead_letter_replay,
)

DLQ = "payments.succeeded.dlq"


def original(offset: int, partition: int = 4, value: bytes = b'{"x": 1}') -> InboundRecord:
    return InboundRecord(SourceRef("payments.succeeded", partition, offset), b"pay-1", value,
                         [("traceparent", b"00-abc")])


def in_dlq(rec: InboundRecord, dlq_offset: int, reason: str = "oversized") -> InboundRecord:
    """`rec` as the ledger dead-letters it, then as a reader sees it on the DLQ."""
    out = dead_letter(rec, DLQ, reason, "detail", "InvalidEventError", "ledger-0")
    return InboundRecord(SourceRef(DLQ, 0, dlq_offset), out.key, out.value, out.headers)


def test_a_copy_keeps_key_bytes_headers_and_partition_and_says_where_it_came_from() -> None:
    rec = InboundRecord(SourceRef("t", 2, 17), b"k", b"v",
                        [("a", b"1"), (H_REPLAYED_FROM, b"t/2@3"), ("b", b"")])
    out = copy_record(rec, "t2")
    assert (out.topic, out.partition, out.key, out.value) == ("t2", 2, b"k", b"v")
    # a copy of a copy names the record it was copied from, once
    assert out.headers == [("a", b"1"), ("b", b""), (H_REPLAYED_FROM, b"t/2@17")]


def test_dead_letters_go_back_to_their_source_partition_with_the_original_bytes() -> None:
    plan = plan_dead_letter_replay([in_dlq(original(7), 0), in_dlq(original(9, 1, b"{}"), 1)])
    assert [(r.topic, r.partition, r.key, r.value) for r in plan.records] == [
        ("payments.succeeded", 4, b"pay-1", b'{"x": 1}'),
        ("payments.succeeded", 1, b"pay-1", b"{}"),
    ]
    first = plan.records[0].headers
    assert not [k for k, _v in first if k.startswith("dlq.")]
    assert header(first, "traceparent") == "00-abc"
    assert header(first, H_REPLAYED_FROM) == f"{DLQ}/0@0"
    assert header(first, H_REPLAY_ORIGIN) == "payments.succeeded/4@7"
    assert plan.by_reason == {("oversized", "payments.succeeded"): 2}


def test_a_record_dead_lettered_again_after_a_replay_is_sent_once_not_per_dead_letter() -> None:
    first = in_dlq(original(7), 0)
    replayed = plan_dead_letter_replay([first]).records[0]
    # the ledger reads the replayed record at offset 30 and dead-letters it again
    again = in_dlq(InboundRecord(SourceRef("payments.succeeded", 4, 30), replayed.key,
                                 replayed.value, replayed.headers), 1)
    plan = plan_dead_letter_replay([first, again])
    assert len(plan.records) == 1 and plan.superseded == 1
    headers = plan.records[0].headers
    assert header(headers, H_REPLAY_ORIGIN) == "payments.succeeded/4@7"  # the first origin
    assert header(headers, H_REPLAYED_FROM) == f"{DLQ}/0@1"                # the latest letter
    assert [k for k, _v in headers].count(H_REPLAYED_FROM) == 1


def test_conflicts_are_never_replayed_unless_asked_for_by_reason() -> None:
    letters = [in_dlq(original(1), 0, "event_conflict"), in_dlq(original(2), 1, "not_json")]
    plan = plan_dead_letter_replay(letters)
    assert plan.not_replayable == {"event_conflict": 1}
    assert [header(r.headers, H_REPLAY_ORIGIN) for r in plan.records] == ["payments.succeeded/4@2"]
    asked = plan_dead_letter_replay(letters, ["event_conflict"])
    assert len(asked.records) == 1 and asked.filtered == {"not_json": 1}


def test_a_reason_filter_selects_only_those_reasons() -> None:
    letters = [in_dlq(original(i), i, reason) for i, reason in
               enumerate(["oversized", "not_json", "oversized", "unknown_currency"])]
    plan = plan_dead_letter_replay(letters, ["oversized", "unknown_currency"])
    assert sum(plan.by_reason.values()) == 3 and plan.filtered == {"not_json": 1}


def test_a_dead_letter_without_source_headers_is_counted_not_sent() -> None:
    bare = InboundRecord(SourceRef(DLQ, 0, 0), b"k", b"v",
                         [("dlq.reason", b"not_json"), ("dlq.source.partition", b"x")])
    plan = plan_dead_letter_replay([bare])
    assert plan.records == [] and plan.without_source == 1
