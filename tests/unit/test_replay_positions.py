"""Replay positions and ranges: parsing, resolution per partition, option checks, CLI errors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from settlement.cli.main import app
from settlement.cli.replay import check_options
from settlement.domain.errors import ConfigError
from settlement.kafka.positions import (
    Bounds,
    PartitionRange,
    Position,
    parse_position,
    plan_ranges,
    skipped_ranges,
)

T0 = int(datetime(2026, 3, 2, 9, 30, tzinfo=UTC).timestamp() * 1000)


class FakeOffsets:
    """Partition p holds offsets [10p, 100 + 10p); record i's timestamp is T0 + i seconds."""

    def __init__(self, partitions: int = 3, stable_gap: int = 0) -> None:
        self._n = partitions
        self._gap = stable_gap  # records of an open transaction above the stable end

    def partitions(self, topic: str) -> list[int]:
        if topic != "t":
            raise ConfigError(f"topic {topic} does not exist")
        return list(range(self._n))

    def bounds(self, topic: str, partitions: Sequence[int]) -> dict[int, Bounds]:
        return {p: Bounds(10 * p, 100 + 10 * p, 100 + 10 * p + self._gap) for p in partitions}

    def offsets_for_time(self, topic: str, partitions: Sequence[int], ms: int) -> dict[int, int | None]:
        out: dict[int, int | None] = {}
        for p in partitions:
            first = max(10 * p, -(-(ms - T0) // 1000))  # first offset whose timestamp >= ms
            out[p] = first if first < 100 + 10 * p + self._gap else None
        return out


@pytest.mark.parametrize(("text", "expected"), [
    ("earliest", Position("earliest", text="earliest")),
    ("LATEST", Position("latest", text="latest")),
    ("0", Position("offset", 0, "0")),
    (" 1200 ", Position("offset", 1200, "1200")),
    ("2026-03-02T09:30:00Z", Position("timestamp", T0, "2026-03-02T09:30:00Z")),
    ("2026-03-02T10:30:00+01:00", Position("timestamp", T0, "2026-03-02T10:30:00+01:00")),
    ("2026-03-02T09:30:00.250+00:00", Position("timestamp", T0 + 250, "2026-03-02T09:30:00.250+00:00")),
])
def test_positions_parse_offsets_timestamps_and_words(text: str, expected: Position) -> None:
    assert parse_position(text) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("-5", "offsets are >= 0"),
    ("2026-03-02T09:30:00", "no UTC offset"),
    ("2026-03-02", "no UTC offset"),
    ("yesterday", "not an offset"),
    ("", "not an offset"),
    ("١٢", "not an offset"),  # Arabic-Indic digits are not an offset
])
def test_bad_positions_are_refused_with_a_hint(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_position(text)


def test_ranges_resolve_words_per_partition() -> None:
    ranges = plan_ranges(FakeOffsets(stable_gap=5), "t", parse_position("earliest"),
                         parse_position("latest"))
    # latest is the stable end: an open transaction's records are never in a range
    assert ranges == [PartitionRange(0, 0, 100), PartitionRange(1, 10, 110),
                      PartitionRange(2, 20, 120)]


def test_ranges_resolve_offsets_and_keep_only_chosen_partitions() -> None:
    ranges = plan_ranges(FakeOffsets(), "t", parse_position("50"), parse_position("60"), [2, 1, 2])
    assert ranges == [PartitionRange(1, 50, 60), PartitionRange(2, 50, 60)]


def test_ranges_resolve_timestamps_to_the_first_record_at_or_after() -> None:
    ranges = plan_ranges(FakeOffsets(), "t", parse_position("2026-03-02T09:30:15Z"),
                         parse_position("2026-03-02T09:31:00Z"))
    assert ranges == [PartitionRange(0, 15, 60), PartitionRange(1, 15, 60), PartitionRange(2, 20, 60)]


def test_a_timestamp_after_every_record_is_the_end() -> None:
    ranges = plan_ranges(FakeOffsets(stable_gap=5), "t", parse_position("2030-01-01T00:00:00Z"),
                         parse_position("latest"), [0])
    assert ranges == [PartitionRange(0, 100, 100)]


def test_a_timestamp_inside_an_open_transaction_stops_at_the_stable_end() -> None:
    # partition 0's record 102 (timestamp T0+102s) is in an open transaction
    ranges = plan_ranges(FakeOffsets(stable_gap=5), "t", parse_position("2026-03-02T09:31:42Z"),
                         parse_position("latest"), [0])
    assert ranges == [PartitionRange(0, 100, 100)]


@pytest.mark.parametrize(("start", "stop", "partitions", "says"), [
    ("60", "50", None, "--from 60 is after --to 50"),
    ("2026-03-02T09:31:00Z", "2026-03-02T09:30:00Z", None, "is after --to"),
    ("latest", "earliest", None, "partition 0: --from latest is offset 100, after --to earliest"),
    ("5", "latest", None, "--from 5 is outside partition 1 of t: it holds offsets 10..110"),
    ("0", "500", [0], "--to 500 is outside partition 0"),
    ("0", "latest", [3, 7], "topic t has no partition 3, 7"),
])
def test_impossible_ranges_are_refused(start: str, stop: str, partitions: list[int] | None,
                                       says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        plan_ranges(FakeOffsets(), "t", parse_position(start), parse_position(stop), partitions)


def test_an_unknown_topic_is_refused() -> None:
    with pytest.raises(ConfigError, match="topic nope does not exist"):
        plan_ranges(FakeOffsets(), "nope", parse_position("0"), parse_position("latest"))


@given(st.integers(0, 130), st.integers(0, 130), st.lists(st.integers(0, 2), max_size=3))
def test_resolved_ranges_lie_within_each_partition(a: int, b: int, parts: list[int]) -> None:
    try:
        ranges = plan_ranges(FakeOffsets(), "t", parse_position(str(a)), parse_position(str(b)),
                             parts)
    except ConfigError:
        # refused exactly when the range is reversed or outside some chosen partition
        assert a > b or any(not (10 * p <= x <= 100 + 10 * p)
                            for p in (parts or [0, 1, 2]) for x in (a, b))
        return
    assert [r.partition for r in ranges] == sorted(set(parts or [0, 1, 2]))
    for r in ranges:
        assert 10 * r.partition <= r.start <= r.end <= 100 + 10 * r.partition


def test_a_reset_ahead_of_the_group_names_what_it_would_skip() -> None:
    bounds = {p: Bounds(10, 100, 100) for p in range(4)}
    ranges = [PartitionRange(p, 50, 100) for p in range(4)]
    committed: dict[int, int | None] = {0: 20, 1: 50, 2: 90, 3: None}
    # behind the group: nothing skipped; ahead: [position, start); no position: from earliest
    assert skipped_ranges(ranges, committed, bounds) == [PartitionRange(0, 20, 50),
                                                         PartitionRange(3, 10, 50)]
    # a position below the earliest kept offset (retention) counts from the earliest
    assert skipped_ranges([PartitionRange(0, 50, 100)], {0: 2}, bounds) == [PartitionRange(0, 10, 50)]


@pytest.mark.parametrize(("mode", "to", "target", "group", "force", "says"), [
    ("rewind", None, None, None, False, "use reset or republish"),
    ("reset", "10", None, None, False, "--to applies to --mode republish"),
    ("reset", None, "other", None, False, "--target applies to --mode republish"),
    ("republish", None, None, "g", False, "--group and --force apply to --mode reset"),
    ("republish", None, None, None, True, "--group and --force apply to --mode reset"),
])
def test_options_that_do_not_fit_the_mode_are_errors(
    mode: str, to: str | None, target: str | None, group: str | None, force: bool, says: str,
) -> None:
    with pytest.raises(ConfigError, match=says):
        check_options(mode, to, target, group, force)


def test_options_that_fit_the_mode_pass() -> None:
    assert check_options("reset", None, None, "g", True) == "reset"
    assert check_options("republish", "10", "other", None, False) == "republish"


@pytest.mark.parametrize(("args", "says"), [
    (["replay", "--topic", "t", "--from", "abc"], "is not an offset"),
    (["replay", "--topic", "t", "--from", "1", "--to", "2"], "--to applies to --mode republish"),
    (["replay", "--topic", "t", "--from", "1", "--mode", "x"], "use reset or republish"),
])
def test_cli_refuses_bad_arguments_with_exit_2_before_touching_kafka(
    args: list[str], says: str
) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert says in " ".join(result.output.split())
