"""`settlement replay` (reset a stage's group, or republish a range) and `settlement dlq replay`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from settlement import bootstrap
from settlement.cli.admin import topics_app
from settlement.cli.context import console, err_console, fail, run, state
from settlement.cli.ledger import dlq_app
from settlement.config import Settings
from settlement.domain.errors import ConfigError
from settlement.kafka import replay as kreplay
from settlement.kafka.positions import (
    PartitionRange,
    Position,
    parse_position,
    plan_ranges,
    skipped_ranges,
)
from settlement.service.replay import NEVER_REPLAYED, plan_dead_letter_replay

Mode = Literal["reset", "republish"]


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
    dlq_app.command("replay")(dlq_replay)
    topics_app.command("offsets")(topics_offsets)


@contextmanager
def _progress(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (stays quiet when stderr is not a terminal)."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def check_options(mode: str, to: str | None, target: str | None, group: str | None,
                  force: bool) -> Mode:
    """Options that do not fit the mode are errors, not silently ignored."""
    if mode not in ("reset", "republish"):
        raise ConfigError(f"--mode {mode!r}: use reset or republish")
    if mode == "reset":
        if to is not None:
            raise ConfigError("--to applies to --mode republish; a reset re-reads from --from "
                              "to the end of the topic")
        if target is not None:
            raise ConfigError("--target applies to --mode republish")
        return "reset"
    if group is not None or force:
        raise ConfigError("--group and --force apply to --mode reset (republish needs no group)")
    return "republish"


def replay(
    ctx: typer.Context,
    topic: Annotated[str, typer.Option(help="Topic to replay, e.g. payments.succeeded.")],
    from_: Annotated[str, typer.Option(
        "--from", help="Start: an offset, an ISO timestamp with offset (2026-03-02T09:30:00Z), "
                       "earliest or latest.")],
    to: Annotated[str | None, typer.Option(
        help="Republish only: end, exclusive (same forms as --from; default latest).")] = None,
    partition: Annotated[list[int] | None, typer.Option(
        "--partition", "-p", help="Only this partition (repeat for more; default all).")] = None,
    group: Annotated[str | None, typer.Option(
        help="Reset only: the consumer group (default: the group of the stage reading --topic, "
             "<group_prefix>-<role>).")] = None,
    mode: Annotated[str, typer.Option(
        help="reset: move the stage's group back to --from (workers stopped). "
             "republish: copy [--from, --to) to the end of the topic (or --target), live.")
    ] = "reset",
    target: Annotated[str | None, typer.Option(
        help="Republish only: write the copies here instead of --topic.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan (per partition: from, to, records) and stop.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Reset only: skip the live-member check and retry while Kafka refuses "
                        "(members of killed workers that have not timed out yet).")] = False,
    wait: Annotated[float, typer.Option(
        help="Reset with --force: how long to keep retrying, in seconds.")] = 30.0,
) -> None:
    """Process a range of a topic again (docs/runbook.md).

    Every stage is idempotent: a replay changes nothing that was done and
    completes what was not.

    reset (default): the stage's consumer group moves back to --from on each
    partition; its workers re-read from there when they start. Refused while
    the group has live members: stop the workers first.

    republish: the committed records of [--from, --to) are copied, with keys,
    bytes and headers (plus a replayed-from header), into the same partition
    at the end of --topic (or --target), in Kafka transactions. Workers may
    keep running.

    Examples:
      settlement replay --topic payments.succeeded --from 2026-03-02T09:00:00Z
      settlement replay --topic settlement.items --from 1200 -p 3 --dry-run
      settlement replay --topic payments.succeeded --mode republish \\
          --from 100 --to 200
    """
    with _errors():
        chosen = check_options(mode, to, target, group, force)
        start = parse_position(from_)
        stop = parse_position(to) if to is not None else Position("latest", text="latest")
    s = state(ctx).settings()
    admin = run(lambda: kreplay.KafkaAdmin(s.kafka))
    ranges = run(lambda: plan_ranges(admin, topic, start, stop, partition))
    if chosen == "reset":
        group = group or bootstrap.group_for_topic(s, topic)
        if group is None:
            fail(f"no stage consumes {topic}; name the consumer group with --group")
    reader = f"{s.worker.group_prefix}-replay-reader"
    total_span = sum(r.end - r.start for r in ranges)
    with _progress(f"counting {topic}", total_span or None) as tick:
        counts = run(lambda: kreplay.count_records(s.kafka, topic, ranges, reader, tick))
    records = sum(counts.values())
    if chosen == "reset":
        assert group is not None
        committed = run(lambda: admin.committed(group, topic, [r.partition for r in ranges]))
        _print_table(f"reset {group} on {topic}", ranges, counts, committed)
        console.print(f"{records} record(s) to read again: group {group} moves to 'from' on "
                      "each partition ('to' is the end of the topic now)")
        bounds = run(lambda: admin.bounds(topic, [r.partition for r in ranges]))
        ahead = skipped_ranges(ranges, committed, bounds)
        skipped = run(lambda: kreplay.count_records(s.kafka, topic, ahead, reader))
        if any(skipped.values()):
            fail(f"--from {start} is ahead of group {group} on partition(s) "
                 f"{', '.join(str(p) for p, n in sorted(skipped.items()) if n)}: the group would "
                 f"skip {sum(skipped.values())} record(s) it has not processed. A replay only "
                 "moves a group back")
        if topic == s.topics.items:
            err_console.print(
                "[yellow]note:[/yellow] seal commands in this range are re-read as the same "
                "commands, so their stored pacs.008 is sent to the bank again (same MsgId, "
                "refused as a duplicate); --mode republish sends nothing twice")
        members = run(lambda: admin.members(group))
        if dry_run:
            if members:
                err_console.print(f"[yellow]note:[/yellow] group {group} has {len(members)} live "
                                  "member(s); a real run refuses until its workers are stopped")
            console.print("dry run: nothing changed")
            return
        run(lambda: admin.reset(group, topic, ranges, force=force, wait_s=wait))
        console.print(f"reset group {group} on {topic}: {records} record(s) on {len(ranges)} "
                      "partition(s) will be read again when its workers start")
        return
    dest = target or topic
    _print_table(f"republish {topic} -> {dest}", ranges, counts)
    console.print(f"{records} record(s) to copy to {dest}")
    if dry_run:
        console.print("dry run: nothing changed")
        return
    if records == 0:
        console.print("nothing to replay")
        return
    with _progress(f"copying to {dest}", records) as tick:
        n = run(lambda: kreplay.republish(
            s.kafka, admin, topic, ranges, dest, _txn_id(s, dest), reader, tick))
    console.print(f"republished {n} record(s) from {topic} to {dest}")


def _txn_id(s: Settings, target: str) -> str:
    return f"{s.worker.group_prefix}-replay-{target}"


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except ConfigError as exc:
        fail(str(exc))


def _print_table(title: str, ranges: list[PartitionRange], counts: dict[int, int],
                 committed: dict[int, int | None] | None = None) -> None:
    console.print(title)
    table = Table("partition", *(("committed",) if committed is not None else ()), "from", "to",
                  "records")
    for r in ranges:
        extra: tuple[str, ...] = ()
        if committed is not None:
            c = committed.get(r.partition)
            extra = ("-" if c is None else str(c),)
        table.add_row(str(r.partition), *extra, str(r.start), str(r.end), str(counts[r.partition]))
    console.print(table)


def dlq_replay(
    ctx: typer.Context,
    topic: Annotated[str | None, typer.Option(
        help="Dead-letter topic (default: the payments DLQ).")] = None,
    reason: Annotated[list[str] | None, typer.Option(
        help="Only dead letters with this dlq.reason (repeat for more; default all but "
             + ", ".join(sorted(NEVER_REPLAYED)) + ").")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and stop.")] = False,
) -> None:
    """Send dead letters back to where they came from, after a fix.

    Each dead letter's original key, bytes and headers go to the topic and
    partition named by its dlq.source.* headers. Fix the cause first (a
    deploy, a setting). The ledger records a payment once however often it
    arrives, so running this again settles nothing twice. A record that is
    still bad is dead-lettered again; per original record only its latest
    dead letter is sent.

    Example: settlement dlq replay --reason oversized --dry-run
    """
    s = state(ctx).settings()
    name = topic or s.topics.payments_dlq
    letters = run(lambda: kreplay.read_topic(s.kafka, name))
    plan = plan_dead_letter_replay(letters, reason)
    table = Table("reason", "back to", "records", title=f"replay {name}")
    for (why, dest), n in sorted(plan.by_reason.items()):
        table.add_row(why, dest, str(n))
    console.print(table)
    skipped = [f"{n} {why} (never replayed by default; --reason {why} to force)"
               for why, n in sorted(plan.not_replayable.items())]
    skipped += [f"{n} {why} (not selected)" for why, n in sorted(plan.filtered.items())]
    if plan.superseded:
        skipped.append(f"{plan.superseded} older dead letter(s) of a record replayed before")
    if plan.without_source:
        skipped.append(f"{plan.without_source} without dlq.source headers")
    for line in skipped:
        console.print(f"skipped: {line}")
    console.print(f"{len(plan.records)} dead letter(s) of {len(letters)} to send back")
    if dry_run:
        console.print("dry run: nothing changed")
        return
    if not plan.records:
        return
    with _progress("replaying dead letters", len(plan.records)) as tick:
        admin = run(lambda: kreplay.KafkaAdmin(s.kafka))
        n = run(lambda: kreplay.write_all(s.kafka, admin, plan.records, _txn_id(s, name), tick))
    console.print(f"sent {n} dead letter(s) back to their source topic")


def topics_offsets(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="Topic name.")],
    group: Annotated[str | None, typer.Option(
        help="Consumer group to compare (default: the stage's group for this topic).")] = None,
) -> None:
    """Offsets per partition, a consumer group's position and its live members.

    'earliest' is the first offset kept; 'stable' the last stable offset, the
    end read_committed consumers see; 'high' the high watermark. 'open' is
    high - stable: records of transactions still open. 'open' above 0 for
    longer than kafka.transaction_timeout_ms is a hanging transaction
    (docs/runbook.md).

    Example: settlement topics offsets payments.succeeded
    """
    s = state(ctx).settings()
    group = group or bootstrap.group_for_topic(s, topic)
    admin = run(lambda: kreplay.KafkaAdmin(s.kafka))
    parts = run(lambda: admin.partitions(topic))
    bounds = run(lambda: admin.bounds(topic, parts))
    committed = run(lambda: admin.committed(group, topic, parts)) if group else {}
    console.print(f"{topic}" + (f" (group {group})" if group else ""))
    table = Table("partition", "earliest", "stable", "high", "open", "committed", "behind")
    for p in parts:
        b, c = bounds[p], committed.get(p)
        table.add_row(str(p), str(b.low), str(b.stable), str(b.high), str(b.high - b.stable),
                      "-" if c is None else str(c),
                      "-" if c is None else str(max(b.stable - c, 0)))
    console.print(table)
    console.print("'behind' counts offsets, transaction markers included: an upper bound")
    if group:
        members = run(lambda: admin.members(group))
        console.print(f"group {group}: {len(members)} live member(s)"
                      + "".join(f"\n  {m}" for m in members))
