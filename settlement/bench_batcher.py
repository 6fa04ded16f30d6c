"""Batcher benchmarks: payments/s into batches, and cutoff -> pacs.008 for one big batch.

`run_batcher_bench`: one bank and currency, per-payment merchants, so N payments make
N payouts in one batch. Items are pre-produced to settlement.items (the ledger is not
part of this measurement); one batcher process places them, then the window's cutoff
passes and we time the seal: from the moment sealing is due (cutoff + grace) to the
pacs.008 being visible read_committed on bank.outbound.

`run_placement_bench`: placement alone, with the items spread over several banks and
currencies, so over several items partitions, as in production; no seal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cassandra.cluster import Session
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from settlement.bench_kit import cassandra_facts
from settlement.bench_stats import rate_after_first_commit
from settlement.config import Settings, load_settings
from settlement.domain.merchant import MerchantAccount
from settlement.domain.payment import SettlementItem
from settlement.iso20022.pacs008 import parse_pacs008_summary
from settlement.kafka.admin import ensure_topics, topic_specs
from settlement.kafka.reader import end_offsets, pending_records
from settlement.runtime.local import Fleet, child_env
from settlement.store.merchants import CassandraMerchantRegistry
from settlement.store.migrate import migrate
from settlement.store.session import connect

BIC = "MOCKDEFFXXX"
# Three banks x two currencies: the partition keys of the placement benchmark.
SPREAD = [(bic, ccy) for bic in ("MOCKDEFFXXX", "MOCKFRPPXXX", "MOCKNL2AXXX") for ccy in ("EUR", "USD")]


@dataclass
class BatcherResult:
    payouts: int
    placement_s: float | None  # from the first commit seen; None: placed before it
    payments_per_s: float | None  # items placed after that commit / placement_s
    cutoff_to_pacs008_s: float
    nb_of_txs: int
    xml_bytes: int
    # the batch's payout rows, written after the commit that published the pacs.008
    cutoff_to_payouts_s: float | None = None
    cassandra: dict[str, str] = field(default_factory=dict)  # bench_kit.cassandra_facts


def _env(prefix: str, grace_s: float) -> dict[str, str]:
    bank = {"bic": "DEFAULT", "timezone": "UTC", "holiday_calendar": "none", "weekend": [],
            "cutoffs": [f"{h:02d}:{m:02d}" for h in range(24) for m in range(60)]}
    return {
        "SETTLEMENT_CASSANDRA__KEYSPACE": prefix.replace("-", "_"),
        "SETTLEMENT_WORKER__GROUP_PREFIX": prefix,
        "SETTLEMENT_BATCHER__DEFAULT_BANK": json.dumps(bank),
        "SETTLEMENT_BATCHER__SEAL_GRACE_S": str(grace_s),
        "SETTLEMENT_BATCHER__SEAL_CHECK_INTERVAL_S": "0.2",
        **{f"SETTLEMENT_TOPICS__{k.upper()}": f"{prefix}.{k}" for k in (
            "payments", "payments_dlq", "items", "items_dlq", "bank_outbound", "bank_inbound",
            "events")},
    }


def namespace_settings(base: Settings, env: dict[str, str], prefix: str) -> Settings:
    """`base` with the benchmark's own keyspace, topics and consumer groups."""
    return load_settings(
        cassandra={**base.cassandra.model_dump(), "keyspace": env["SETTLEMENT_CASSANDRA__KEYSPACE"]},
        topics={**base.topics.model_dump(), **{k.split("__")[1].lower(): v for k, v in env.items()
                                                if k.startswith("SETTLEMENT_TOPICS__")}},
        kafka=base.kafka.model_dump(), worker={"group_prefix": prefix})


def next_cutoff(at_least_s: float) -> datetime:
    """The next minute cutoff at least `at_least_s` away."""
    now = datetime.now(UTC)
    cutoff = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return cutoff + timedelta(minutes=1) if (cutoff - now).total_seconds() < at_least_s else cutoff


def produce_items(s: Settings, items: Iterable[SettlementItem]) -> None:
    producer = Producer({**s.kafka.client_config(), "enable.idempotence": True, "linger.ms": 20})
    for item in items:
        while True:
            try:
                producer.produce(s.topics.items, key=item.partition_key.encode(),
                                 value=item.model_dump_json().encode())
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


@dataclass
class PlacementResult:
    payments: int
    batchers: int
    keys: int  # bank/currency pairs: the items' partition keys
    partitions: int  # items partitions that hold items
    placement_s: float | None  # from the first commit seen; None: placed before it
    payments_per_s: float | None  # items placed after that commit / placement_s
    cassandra: dict[str, str] = field(default_factory=dict)


def drop_namespace(s: Settings, session: Session) -> None:
    session.execute(f"DROP KEYSPACE IF EXISTS {s.cassandra.keyspace}", timeout=120)
    admin = AdminClient(s.kafka.client_config())  # keep it alive until the futures resolve
    for f in admin.delete_topics([t.name for t in topic_specs(s.topics)]).values():
        f.result(30)


@contextmanager
def _bench_namespace(base: Settings, prefix: str, grace_s: float
                     ) -> Iterator[tuple[dict[str, str], Settings, Session, dict[str, str]]]:
    """The run's own topics and migrated keyspace, dropped at the end: (the workers'
    environment, its settings, a session, the Cassandra node's facts)."""
    env = _env(prefix, grace_s)
    s = namespace_settings(base, env, prefix)
    ensure_topics(s.kafka, s.topics)
    session = connect(s.cassandra)
    try:
        facts = cassandra_facts(session)
        migrate(session, s.cassandra)
        yield env, s, session, facts
    finally:
        drop_namespace(s, session)
        session.cluster.shutdown()


def run_batcher_bench(base: Settings, payouts: int, log_dir: Path, tag: str,
                      lead_s: float = 45) -> BatcherResult:
    """`lead_s`: the window closes at least this long after the items are produced, so
    the placement is over before the seal is due (the seal is timed alone)."""
    prefix, grace = f"benchb-{tag}", 1.0
    with _bench_namespace(base, prefix, grace) as (env, s, session, facts):
        cutoff = next_cutoff(lead_s)
        accounts = [MerchantAccount(
            merchant_id=f"bm-{i:05d}", currency="EUR", creditor_name=f"Bench Merchant {i}",
            account_id="DE89370400440532013000", bank_bic=BIC, payout_mode="payment")
            for i in range(payouts)]
        CassandraMerchantRegistry(session).upsert(accounts)
        produce_items(s, (SettlementItem(
            payment_id=f"bp-{tag}-{i:06d}", event_id=f"be-{i}", merchant_id=f"bm-{i:05d}",
            amount_minor=1000 + i, fee_minor=30, currency="EUR",
            captured_at=cutoff - timedelta(seconds=30), bank_bic=BIC, payout_mode="payment")
            for i in range(payouts)))
        fleet = Fleet.of("batcher", 1, env=child_env(env), log_dir=log_dir, prefix=f"{prefix}-")
        fleet.start()
        try:
            placement, left0 = _time_placement(s, prefix, payouts, fleet)
            due = cutoff + timedelta(seconds=grace)
            xml, seen = _wait_message(s, timeout_s=(due - datetime.now(UTC)).total_seconds() + 120)
            lag = (seen - due).total_seconds()
            written = (_wait_payouts(session, s.cassandra.keyspace, payouts, 120) - due
                       ).total_seconds()
        finally:
            fleet.stop()
        summary = parse_pacs008_summary(xml)
        return BatcherResult(payouts, None if placement is None else round(placement, 2),
                             rate_after_first_commit(payouts, left0, placement),
                             round(lag, 3), summary.nb_of_txs, len(xml), round(written, 3), facts)


def run_placement_bench(base: Settings, payments: int, batchers: int, log_dir: Path,
                        tag: str) -> PlacementResult:
    """`payments` items over SPREAD's banks and currencies (500 window merchants), placed by
    `batchers` processes; timed from the first commit seen to none pending. The window
    closes at least 100 s later and the batchers stop before it: no seal."""
    prefix = f"benchp-{tag}"
    with _bench_namespace(base, prefix, 1.0) as (env, s, _session, facts):
        captured = next_cutoff(100) - timedelta(seconds=30)
        produce_items(s, (SettlementItem(
            payment_id=f"pp-{tag}-{i:06d}", event_id=f"pe-{i}", merchant_id=f"pm-{i % 500:03d}",
            amount_minor=1000 + i, fee_minor=30, currency=SPREAD[i % len(SPREAD)][1],
            captured_at=captured, bank_bic=SPREAD[i % len(SPREAD)][0], payout_mode="window")
            for i in range(payments)))
        partitions = sum(1 for high in end_offsets(s.kafka, s.topics.items).values() if high > 0)
        fleet = Fleet.of("batcher", batchers, env=child_env(env), log_dir=log_dir,
                         prefix=f"{prefix}-")
        fleet.start()
        try:
            placement, left0 = _time_placement(s, prefix, payments, fleet)
        finally:
            fleet.stop()
        return PlacementResult(payments, batchers, len(SPREAD), partitions,
                               None if placement is None else round(placement, 2),
                               rate_after_first_commit(payments, left0, placement), facts)


def _time_placement(s: Settings, prefix: str, items: int,
                    fleet: Fleet) -> tuple[float | None, int]:
    """(seconds from the batchers' first commit seen to no item pending, items pending at
    that commit); (None, 0) when everything was placed before a commit could be seen.
    Raises if every batcher has exited (it would wait for good otherwise)."""
    t0, left0 = None, 0
    while (left := pending_records(s.kafka, f"{prefix}-batcher", s.topics.items,
                                   cap=items + 1)) > 0:
        if not any(w.alive for w in fleet.workers):
            w = fleet.workers[0]
            code = None if w.proc is None else w.proc.returncode
            raise RuntimeError(f"the batcher exited (code {code}) with {left:,} items still to "
                               f"place: see {w.log_path}")
        if t0 is None and left < items:
            t0, left0 = time.monotonic(), left  # first commit seen: start-up is over
        time.sleep(0.1)
    return (None if t0 is None else time.monotonic() - t0), left0


def _wait_payouts(session: Session, keyspace: str, payouts: int, timeout_s: float) -> datetime:
    """The wall time the batch's pending marker was gone (polled every 50 ms, so up to that
    much late): its payout rows are written before it goes, as counted then. Called once
    the pacs.008 is seen, so the marker was written before."""
    deadline = time.monotonic() + timeout_s
    while session.execute(f'SELECT batch_id FROM "{keyspace}".payouts_pending').one() is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the batch's payout rows were not written in {timeout_s:.0f} s")
        time.sleep(0.05)
    done = datetime.now(UTC)
    # counted by reading them: COUNT(*) across partitions makes Cassandra warn
    written = sum(1 for _ in session.execute(f'SELECT payout_id FROM "{keyspace}".payouts'))
    if written != payouts:
        raise RuntimeError(f"{written:,} payout rows written, {payouts:,} expected")
    return done


def _wait_message(s: Settings, timeout_s: float) -> tuple[bytes, datetime]:
    """First committed record on bank.outbound, and the wall time we could read it."""
    c = Consumer({**s.kafka.client_config(), "group.id": "bench-reader",
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        parts = c.list_topics(s.topics.bank_outbound, timeout=10).topics[
            s.topics.bank_outbound].partitions
        c.assign([TopicPartition(s.topics.bank_outbound, p, 0) for p in parts])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = c.poll(0.05)
            if msg is not None and msg.error() is None:
                return msg.value() or b"", datetime.now(UTC)
        raise TimeoutError("no pacs.008 on bank.outbound")
    finally:
        c.close()
