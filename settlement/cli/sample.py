"""Load generation and the ledger-stage demo."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from confluent_kafka import Producer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from settlement import bootstrap, loadgen
from settlement.cli.context import console, fail, run, state
from settlement.config import Settings
from settlement.domain.money import is_known_currency


def register(app: typer.Typer) -> None:
    app.command("produce-sample")(produce_sample)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console)


def produce(settings: Settings, records: list[loadgen.SampleRecord], rate: float,
            show_progress: bool = True) -> float:
    """Produce records (idempotent producer, so no duplicates from retries); return seconds."""
    # murmur2 as Java producers do, so each worker's ledger buckets are its own
    producer = Producer({**settings.kafka.client_config(), "enable.idempotence": True,
                         "linger.ms": 20, "message.max.bytes": 8 * 1024 * 1024,
                         "partitioner": "murmur2_random"})
    topic = settings.topics.payments
    t0 = time.monotonic()
    with _progress() as progress:
        task = progress.add_task(f"producing to {topic}", total=len(records), rate="",
                                 visible=show_progress)
        for n, rec in enumerate(records, start=1):
            while True:
                try:
                    producer.produce(topic, value=rec.value, key=rec.key)
                    break
                except BufferError:
                    producer.poll(0.05)
            if rate > 0:
                ahead = n / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            if n % 1000 == 0 or n == len(records):
                producer.poll(0)
                el = time.monotonic() - t0
                progress.update(task, completed=n, rate=f"{n / max(el, 1e-9):,.0f}/s")
        left = producer.flush(60)
    if left:
        fail(f"{left} record(s) not acknowledged by Kafka")
    return time.monotonic() - t0


def produce_sample(
    ctx: typer.Context,
    count: Annotated[int, typer.Option(min=1, help="Events to produce.")] = 10_000,
    rate: Annotated[float, typer.Option(min=0, help="Events per second; 0 = as fast as possible.")] = 0,
    merchants: Annotated[int, typer.Option(min=1, help="Distinct merchants.")] = 100,
    banks: Annotated[int, typer.Option(min=1, max=len(loadgen.SAMPLE_BANKS),
                                       help="Distinct merchant banks.")] = 3,
    currencies: Annotated[str, typer.Option(help="Comma-separated ISO 4217 codes.")] = "EUR,USD",
    seed: Annotated[int, typer.Option(help="Same seed, same events.")] = 1,
    invalid_ratio: Annotated[float, typer.Option(min=0, max=1,
                                                 help="Share of bad records (to the DLQ).")] = 0.0,
    duplicate_ratio: Annotated[float, typer.Option(min=0, max=1,
                                                   help="Share of redelivered events.")] = 0.0,
    register_merchants: Annotated[bool, typer.Option(
        help="Upsert payout accounts for the sample merchants first.")] = True,
) -> None:
    """Produce deterministic sample payment-succeeded events.

    Example: settlement produce-sample --count 20000 --rate 2000 --invalid-ratio 0.01 --seed 7
    """
    ccys = [c.strip().upper() for c in currencies.split(",") if c.strip()]
    bad = [c for c in ccys if not is_known_currency(c)]
    if bad:
        fail(f"unknown currency: {', '.join(bad)}")
    s = state(ctx).settings()
    if register_merchants:
        accounts = loadgen.merchants(merchants, banks, ccys, seed)

        def _reg() -> int:
            session = bootstrap.cassandra(s)
            try:
                return bootstrap.merchant_registry(s, session).upsert(accounts)
            finally:
                session.cluster.shutdown()

        console.print(f"registered {run(_reg)} payout accounts for {merchants} merchants")
    records = list(loadgen.generate(count, merchants_n=merchants, currencies=ccys, seed=seed,
                                    invalid_ratio=invalid_ratio, duplicate_ratio=duplicate_ratio))
    secs = produce(s, records, rate)
    kinds = {k: sum(1 for r in records if r.expect == k) for k in ("ledger", "dlq", "duplicate")}
    console.print(f"produced {len(records)} records in {secs:.1f}s "
                  f"({len(records) / secs:,.0f}/s): {kinds['ledger']} valid, "
                  f"{kinds['dlq']} invalid, {kinds['duplicate']} redelivered; seed {seed}")
