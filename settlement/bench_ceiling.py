"""The raw ceiling on this machine: the clients alone, without the settlement code.

- Kafka: consume -> produce of N small records (a payment event's size), committing
  every `commit_interval_ms`, plain (flush, then commit offsets, as the
  at-least-once loop does) and transactional (offsets sent to the transaction,
  then commit, as the exactly-once loop does), one process;
- Cassandra: N ledger rows, issued concurrently as plain INSERTs and as INSERT ...
  IF NOT EXISTS (one Paxos round each) into the per-payment `ledger` table (one
  partition per payment, as the ledger wrote before its buckets: 128 single-row
  LWTs in flight on 30 bucket partitions only contend, and time out), from
  `clients` processes at once; and as the ledger writes them now: poll-sized slices
  (500 rows) of `ledger_buckets`, each one conditional batch per bucket
  (`store.cas_batch`), each client on buckets of its own as a worker owning its
  Kafka partitions is.

Each figure comes with the CPU of the client process(es) and of the co-located
Kafka and Cassandra servers over the same wall time: on two cores shared by all
of them, that says which one ran out.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import psutil
from confluent_kafka import Consumer, Producer, TopicPartition

from settlement.bench_kit import Meter, Outgoing, produce_stream, server_procs
from settlement.config import CassandraSettings, Settings
from settlement.runtime.namespace import Namespace, drop, namespace, provision
from settlement.store.buckets import ledger_bucket
from settlement.store.cas_batch import NewRow, batch_submitter, insert_new
from settlement.store.session import connect

_COLUMNS = ("payment_id, event_id, merchant_id, amount_minor, fee_minor, currency, captured_at, "
            "schema_version, fingerprint, src_topic, src_partition, src_offset, recorded_at")
_ROW_INSERT = f"INSERT INTO ledger ({_COLUMNS}) VALUES ({', '.join('?' * 13)})"
_BUCKET_INSERT = (f"INSERT INTO ledger_buckets (bucket, {_COLUMNS}) "
                  f"VALUES ({', '.join('?' * 14)}) IF NOT EXISTS")
POLL_ROWS = 500  # worker.max_batch: the most one ledger poll writes at once
Mode = Literal["insert", "lwt", "lwt_batch"]
_WHAT = {"insert": "cassandra_insert", "lwt": "cassandra_lwt", "lwt_batch": "cassandra_lwt_batch"}


@dataclass
class CeilingResult:
    what: str
    records: int
    seconds: float
    records_per_s: float
    client_cpu_cores: float
    server_cpu_cores: dict[str, float] = field(default_factory=dict)
    clients: int = 1


def _event(i: int) -> Outgoing:
    pid = f"ceil-pay-{i:08d}"
    return Outgoing(pid.encode(), orjson.dumps({
        "schema_version": 1, "event_id": f"ceil-evt-{i:08d}", "payment_id": pid,
        "merchant_id": f"m-{i % 200:04d}", "amount_minor": 1000 + i % 5000, "fee_minor": 59,
        "currency": "EUR", "captured_at": "2026-11-02T08:00:00+00:00"}))


def kafka_consume_produce(s: Settings, n: int, transactional: bool, commit_interval_ms: int,
                          group: str) -> CeilingResult:
    """Consume the n records of `payments` and produce each to `items`, committing every
    `commit_interval_ms`; timed from the first record consumed to the last commit."""
    src, dst = s.topics.payments, s.topics.items
    consumer = Consumer({**s.kafka.client_config(), "group.id": group, "enable.auto.commit": False,
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
    conf: dict[str, Any] = {**s.kafka.client_config(), "enable.idempotence": True, "linger.ms": 5,
                            "compression.type": "zstd"}
    if transactional:
        conf |= {"transactional.id": f"{group}-txn", "transaction.timeout.ms": 60_000}
    producer = Producer(conf)
    if transactional:
        producer.init_transactions(30)
    consumer.subscribe([src])
    me = psutil.Process()
    meter = Meter({"client": me, **server_procs(s.kafka, s.cassandra.port)}, every_s=1.0)
    done, offsets, t_batch = 0, dict[int, int](), 0.0
    txn_open = started = False
    try:
        while done < n:
            msgs = consumer.consume(500, 0.1)
            if msgs and not started:
                meter.start()  # from the first record: group join and fetch start-up excluded
                started = True
            for m in msgs:
                if m.error() is not None:
                    continue
                if transactional and not txn_open:
                    producer.begin_transaction()
                    txn_open, t_batch = True, time.monotonic()
                elif not t_batch:
                    t_batch = time.monotonic()
                producer.produce(dst, key=m.key(), value=m.value())
                offsets[m.partition() or 0] = (m.offset() or 0) + 1
                done += 1
            producer.poll(0)
            if offsets and (done >= n or (time.monotonic() - t_batch) * 1000 >= commit_interval_ms):
                tps = [TopicPartition(src, p, o) for p, o in offsets.items()]
                if transactional:
                    producer.send_offsets_to_transaction(tps, consumer.consumer_group_metadata(), 30)
                    producer.commit_transaction(30)
                    txn_open = False
                else:
                    producer.flush(30)
                    consumer.commit(offsets=tps, asynchronous=False)
                offsets, t_batch = {}, 0.0
        meter.stop()
    finally:
        consumer.close()
    servers = {k: meter.cores([k]) for k in meter.procs if k != "client"}
    return CeilingResult(f"kafka_{'txn' if transactional else 'plain'}", n, round(meter.seconds, 2),
                         round(n / meter.seconds, 1), meter.cores(["client"]), servers)


def _ledger_params(i: int, now: datetime) -> tuple[Any, ...]:
    pid = f"ceil-pay-{i:08d}"
    return (ledger_bucket(pid), pid, f"ceil-evt-{i:08d}", f"m-{i % 200:04d}", 1000 + i % 5000,
            59, "EUR", now, 1, f"{i:064x}", "payments.succeeded", i % 6, i, now)


def _own_rows(start: int, n: int, client: int, clients: int, now: datetime) -> list[tuple[Any, ...]]:
    """n rows in the buckets of this client only (bucket % clients), from id `start` on."""
    rows: list[tuple[Any, ...]] = []
    i = start
    while len(rows) < n:
        p = _ledger_params(i, now)
        if p[0] % clients == client:
            rows.append(p)
        i += 1
    return rows


def _write_rows(session: Any, stmt: Any, params: list[tuple[Any, ...]], mode: Mode,
                concurrency: int) -> None:
    from cassandra.concurrent import execute_concurrent_with_args

    if mode == "lwt_batch":
        submit = batch_submitter(session, stmt)
        for at in range(0, len(params), POLL_ROWS):
            found = insert_new(submit, [NewRow(p[0], p[1], p) for p in params[at:at + POLL_ROWS]],
                               lambda r: r.payment_id, "ceiling batch")
            if any(v is not None for v in found.values()):
                raise RuntimeError("ceiling batch found rows written before")
        return
    for chunk in range(0, len(params), 10_000):
        for ok, res in execute_concurrent_with_args(session, stmt, params[chunk:chunk + 10_000],
                                                    concurrency=concurrency,
                                                    raise_on_first_error=False):
            if not ok:
                raise RuntimeError(f"write failed: {res!r}")


def _cassandra_client(settings: CassandraSettings, keyspace: str, start: int, n: int, mode: Mode,
                      client: int, clients: int, concurrency: int, go: Any, out: Any) -> None:
    """One client process: connect, wait for `go`, write n rows from id `start`, report
    ("ready", then "done" with wall and CPU seconds, or "failed" with the error)."""
    try:
        session = connect(settings, keyspace=keyspace)
    except Exception as exc:
        out.put(("failed", f"{type(exc).__name__}: {exc}"))
        return
    try:
        if mode == "lwt_batch":
            stmt = session.prepare(_BUCKET_INSERT)
        else:
            stmt = session.prepare(_ROW_INSERT + ("" if mode == "insert" else " IF NOT EXISTS"))
        now = datetime.now(UTC)

        def rows(first: int, count: int) -> list[tuple[Any, ...]]:
            got = _own_rows(first, count, client, clients, now)
            return got if mode == "lwt_batch" else [p[1:] for p in got]  # no bucket column

        # untimed warm-up on rows of their own: JIT, connections and Paxos state settle first
        _write_rows(session, stmt, rows(start + 4 * n, min(2000, n // 4)), mode, concurrency)
        params = rows(start, n)
        out.put(("ready", 0.0, 0.0))
        go.wait()
        me = psutil.Process()
        cpu0, t0 = sum(me.cpu_times()[:2]), time.time()
        _write_rows(session, stmt, params, mode, concurrency)
        out.put(("done", time.time() - t0, sum(me.cpu_times()[:2]) - cpu0))
    except Exception as exc:
        out.put(("failed", f"{type(exc).__name__}: {exc}"))
    finally:
        session.cluster.shutdown()


def _reply(out: Any, timeout_s: float, waiting_for: str) -> tuple[Any, ...]:
    """A client's next message; its error, or its silence, as a RuntimeError that says so."""
    import queue

    try:
        msg: tuple[Any, ...] = out.get(timeout=timeout_s)
    except queue.Empty:
        raise RuntimeError(f"no Cassandra client reported {waiting_for} within {timeout_s:.0f} s "
                           "(see the error printed above)") from None
    if msg[0] == "failed":
        raise RuntimeError(f"a Cassandra client failed: {msg[1]}")
    return msg


def cassandra_writes(s: Settings, n: int, mode: Mode, clients: int,
                     concurrency: int) -> CeilingResult:
    """n ledger rows from `clients` processes, each `concurrency` statements in flight
    (or, for conditional batches, one batch per bucket of its own at a time)."""
    ctx = mp.get_context("spawn")  # fresh interpreters: no driver threads across a fork
    go, out = ctx.Event(), ctx.Queue()
    share = n // clients
    # every mode and client writes new payments, never another's rows
    first = {"insert": 0, "lwt": 10**8, "lwt_batch": 2 * 10**8}[mode]
    procs = [ctx.Process(target=_cassandra_client, args=(
        s.cassandra, s.cassandra.keyspace, first + k * 10 * share, share, mode, k, clients,
        concurrency, go, out)) for k in range(clients)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            _reply(out, 120, "ready")
        meter = Meter(server_procs(s.kafka, s.cassandra.port)).start()
        go.set()
        results = [_reply(out, 600, "done") for _ in procs]
        meter.stop()
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    wall = max(r[1] for r in results)
    return CeilingResult(_WHAT[mode], share * clients,
                         round(wall, 2), round(share * clients / wall, 1),
                         round(sum(r[2] for r in results) / wall, 2),
                         {k: meter.cores([k]) for k in meter.procs}, clients)


def run_ceiling(base: Settings, tag: str, kafka_records: int, insert_rows: int, lwt_rows: int,
                clients: int = 1, commit_interval_ms: int = 100,
                concurrency: int = 128, batch_rows: int = 0) -> dict[str, dict[str, Any]]:
    """Every ceiling figure, each on fresh topics and keyspace of its own namespace.
    batch_rows: rows written by conditional batches (0: as many as plain INSERTs)."""
    ns: Namespace = namespace(base, f"benchc-{tag}")
    provision(ns)
    s = ns.settings
    try:
        out: dict[str, dict[str, Any]] = {}
        produce_stream(s.kafka, s.topics.payments, (_event(i) for i in range(kafka_records)),
                       linger_ms=50)
        for txn in (False, True):  # the same input topic, read by two groups
            r = kafka_consume_produce(s, kafka_records, txn, commit_interval_ms,
                                      f"{ns.prefix}-ceil-{'txn' if txn else 'plain'}")
            out[r.what] = asdict(r)
        modes: tuple[tuple[Mode, int], ...] = (
            ("insert", insert_rows), ("lwt", lwt_rows), ("lwt_batch", batch_rows or insert_rows))
        for mode, rows in modes:
            r = cassandra_writes(s, rows, mode, clients, concurrency)
            out[r.what] = asdict(r)
        return out
    finally:
        drop(ns)
