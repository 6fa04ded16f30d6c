"""Positions in a topic as an operator writes them, resolved to offset ranges per partition.

A position is an offset number, an ISO 8601 timestamp with a UTC offset (the first
record whose Kafka timestamp is at or after it, as `offsets_for_times` finds it),
`earliest` or `latest`. `latest` is the last stable offset: what read_committed
consumers can see, so an open transaction's records are never in a range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from settlement.domain.errors import ConfigError

Kind = Literal["offset", "timestamp", "earliest", "latest"]


@dataclass(frozen=True)
class Position:
    kind: Kind
    value: int = 0  # the offset, or the timestamp in epoch milliseconds
    text: str = ""

    def __str__(self) -> str:
        return self.text or self.kind


@dataclass(frozen=True)
class PartitionRange:
    """Offsets [start, end) of one partition."""

    partition: int
    start: int
    end: int


@dataclass(frozen=True)
class Bounds:
    """One partition's offsets: earliest kept, last stable (committed end), high watermark."""

    low: int
    stable: int
    high: int


class OffsetSource(Protocol):
    def partitions(self, topic: str) -> list[int]:
        """All partitions of `topic`; ConfigError when the topic does not exist."""
        ...

    def bounds(self, topic: str, partitions: Sequence[int]) -> dict[int, Bounds]: ...

    def offsets_for_time(self, topic: str, partitions: Sequence[int], ms: int) -> dict[int, int | None]:
        """Per partition the first offset with a timestamp >= ms, None when there is none."""
        ...


def parse_position(text: str) -> Position:
    """`earliest`, `latest`, an offset (`1200`) or a timestamp (`2026-03-02T09:30:00Z`)."""
    raw = text.strip()
    word = raw.lower()
    if word in ("earliest", "latest"):
        return Position("earliest" if word == "earliest" else "latest", text=word)
    if raw.isascii() and raw.isdigit():
        return Position("offset", int(raw), raw)
    if raw.startswith("-") and raw[1:].isdigit():
        raise ConfigError(f"position {text!r}: offsets are >= 0 (relative offsets are not supported)")
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"position {text!r} is not an offset, an ISO timestamp (e.g. 2026-03-02T09:30:00Z), "
            "'earliest' or 'latest'") from None
    if when.tzinfo is None:
        raise ConfigError(f"timestamp {text!r} has no UTC offset; write e.g. {raw}Z or {raw}+01:00")
    return Position("timestamp", int(when.timestamp() * 1000), raw)


def plan_ranges(
    source: OffsetSource,
    topic: str,
    start: Position,
    stop: Position,
    partitions: Sequence[int] | None = None,
) -> list[PartitionRange]:
    """Resolve [start, stop) on each selected partition (default: all of them)."""
    have = source.partitions(topic)
    if partitions:
        unknown = sorted(set(partitions) - set(have))
        if unknown:
            raise ConfigError(f"topic {topic} has no partition {', '.join(map(str, unknown))} "
                              f"(it has 0..{max(have)})")
        chosen = sorted(set(partitions))
    else:
        chosen = sorted(have)
    bounds = source.bounds(topic, chosen)
    starts = _resolve(source, topic, chosen, bounds, start, "--from")
    ends = _resolve(source, topic, chosen, bounds, stop, "--to")
    if start.kind == stop.kind and start.kind in ("offset", "timestamp") and start.value > stop.value:
        raise ConfigError(f"--from {start} is after --to {stop}")
    ranges = []
    for p in chosen:
        if starts[p] > ends[p]:
            raise ConfigError(f"partition {p}: --from {start} is offset {starts[p]}, "
                              f"after --to {stop} at offset {ends[p]}")
        ranges.append(PartitionRange(p, starts[p], ends[p]))
    return ranges


def _resolve(
    source: OffsetSource, topic: str, partitions: list[int], bounds: dict[int, Bounds],
    pos: Position, flag: str,
) -> dict[int, int]:
    if pos.kind == "earliest":
        return {p: bounds[p].low for p in partitions}
    if pos.kind == "latest":
        return {p: bounds[p].stable for p in partitions}
    if pos.kind == "timestamp":
        found = source.offsets_for_time(topic, partitions, pos.value)
        return {p: _clamp(found.get(p), bounds[p]) for p in partitions}
    for p in partitions:
        b = bounds[p]
        if not b.low <= pos.value <= b.stable:
            raise ConfigError(
                f"{flag} {pos.value} is outside partition {p} of {topic}: it holds offsets "
                f"{b.low}..{b.stable} (earliest..latest committed)")
    return dict.fromkeys(partitions, pos.value)


def _clamp(offset: int | None, b: Bounds) -> int:
    # No record that late: the end. A record of an open transaction can match a timestamp;
    # never reach past the stable end.
    return b.stable if offset is None else max(b.low, min(offset, b.stable))


def skipped_ranges(
    ranges: Sequence[PartitionRange], committed: dict[int, int | None], bounds: dict[int, Bounds],
) -> list[PartitionRange]:
    """What a reset to each range's start would jump over: [group position, start) where the
    start lies ahead of the group (a group without a position starts at the earliest)."""
    out = []
    for r in ranges:
        at = committed.get(r.partition)
        base = bounds[r.partition].low if at is None else max(at, bounds[r.partition].low)
        if r.start > base:
            out.append(PartitionRange(r.partition, base, r.start))
    return out
