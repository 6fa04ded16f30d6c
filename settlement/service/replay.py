"""What a replay writes: copies of records, and dead letters sent back to their source.

Pure: records in, records out. The Kafka side (reading ranges, producing in
transactions) is `settlement.kafka.replay`.

Two headers mark a replayed record. `replayed-from` names the record it was
copied from (`topic/partition@offset`), `replay.origin` the coordinates where
the payload was first consumed. Neither starts with `dlq.`, so a replayed record
that fails again keeps them in its new dead letter, and the next DLQ replay
sends one copy per origin instead of one per dead letter (no growth by doubling).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from settlement.service.deadletter import H_OFFSET as H_SOURCE_OFFSET
from settlement.service.deadletter import H_PARTITION, H_REASON, H_TOPIC, header
from settlement.service.ports import Headers, InboundRecord, OutboundRecord, SourceRef

H_REPLAYED_FROM = "replayed-from"
H_REPLAY_ORIGIN = "replay.origin"
# Replaying these can only dead-letter them again: the first event for a payment_id wins.
NEVER_REPLAYED = frozenset({"event_conflict"})


def coordinates(ref: SourceRef) -> str:
    return f"{ref.topic}/{ref.partition}@{ref.offset}"


def copy_record(rec: InboundRecord, target: str) -> OutboundRecord:
    """The same key, bytes and headers, into the same partition of `target`."""
    headers = _without(rec.headers, H_REPLAYED_FROM)
    headers.append((H_REPLAYED_FROM, coordinates(rec.source).encode()))
    return OutboundRecord(topic=target, key=rec.key, value=rec.value or b"", headers=headers,
                          partition=rec.source.partition)


@dataclass
class DeadLetterReplay:
    """The dead letters to send back, and why the others are not."""

    records: list[OutboundRecord] = field(default_factory=list)
    by_reason: Counter[tuple[str, str]] = field(default_factory=Counter)  # (reason, target) -> n
    superseded: int = 0          # older dead letters of an origin that has a newer one
    filtered: Counter[str] = field(default_factory=Counter)       # reason -> n, not selected
    not_replayable: Counter[str] = field(default_factory=Counter)  # reason -> n, skipped by default
    without_source: int = 0      # no dlq.source.* headers: nowhere to send it


def plan_dead_letter_replay(
    letters: Sequence[InboundRecord], reasons: Sequence[str] | None = None
) -> DeadLetterReplay:
    """Each selected dead letter's original key, bytes and producer headers, addressed to the
    topic and partition it was consumed from; per origin only the latest dead letter.

    `reasons`: replay only these (an explicit `event_conflict` is honoured); by default all
    but NEVER_REPLAYED.
    """
    plan = DeadLetterReplay()
    latest: dict[str, tuple[InboundRecord, str, SourceRef]] = {}
    for rec in letters:
        reason = header(rec.headers, H_REASON) or "?"
        if reasons is not None and reason not in reasons:
            plan.filtered[reason] += 1
            continue
        if reasons is None and reason in NEVER_REPLAYED:
            plan.not_replayable[reason] += 1
            continue
        source = _source(rec.headers)
        if source is None:
            plan.without_source += 1
            continue
        origin = header(rec.headers, H_REPLAY_ORIGIN) or coordinates(source)
        if origin in latest:
            plan.superseded += 1
        latest[origin] = (rec, reason, source)  # letters come in log order: the last one wins
    for origin, (rec, reason, source) in latest.items():
        headers = [(k, v) for k, v in rec.headers
                   if not k.startswith("dlq.") and k not in (H_REPLAYED_FROM, H_REPLAY_ORIGIN)]
        headers.append((H_REPLAYED_FROM, coordinates(rec.source).encode()))
        headers.append((H_REPLAY_ORIGIN, origin.encode()))
        plan.records.append(OutboundRecord(topic=source.topic, key=rec.key, value=rec.value or b"",
                                           headers=headers, partition=source.partition))
        plan.by_reason[(reason, source.topic)] += 1
    return plan


def _source(headers: Headers) -> SourceRef | None:
    topic, partition = header(headers, H_TOPIC), header(headers, H_PARTITION)
    offset = header(headers, H_SOURCE_OFFSET)
    if not topic or partition is None or offset is None:
        return None
    try:
        return SourceRef(topic, int(partition), int(offset))
    except ValueError:
        return None


def _without(headers: Headers, name: str) -> Headers:
    return [(k, v) for k, v in headers if k != name]
