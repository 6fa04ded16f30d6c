"""What the benchmark scenarios share: process meters, a paced producer, a committed reader.

- `server_procs` finds the co-located Kafka and Cassandra JVMs, so a figure can say
  how much of the machine's two cores the servers took;
- `Meter` samples RSS and CPU of a set of processes on a thread (1 s or finer);
- `produce_stream` produces an iterator of records, optionally at a fixed rate, with
  each record's timestamp set to the moment it was handed to the client;
- `CommittedReader` follows a topic read_committed on a thread and hands every
  record to a callback with the wall time it became readable;
- `cassandra_facts` names the node's version and commit log sync, which move the
  write-bound figures most (a seal's 10,000 payout writes: 1.6 s against 2.5 s).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psutil
from cassandra.cluster import Session
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from settlement.config import KafkaSettings, Settings
from settlement.kafka.reader import ready_members


def tag() -> str:
    """A short run id for namespaces: the UTC time of day."""
    return datetime.now(UTC).strftime("%H%M%S")


COMMITLOG_SETTINGS = ("commitlog_sync", "commitlog_sync_period", "concurrent_writes")


def cassandra_facts(session: Session | None) -> dict[str, str]:
    """The node's release and its commit log settings, from `system_views.settings`
    (Cassandra 4.0+); a value it cannot read (or no session) is "unknown", never an error."""
    facts = {"release_version": "unknown", **dict.fromkeys(COMMITLOG_SETTINGS, "unknown")}
    if session is None:
        return facts
    with contextlib.suppress(Exception):
        facts["release_version"] = str(session.execute(
            "SELECT release_version FROM system.local").one().release_version)
    for name in COMMITLOG_SETTINGS:
        with contextlib.suppress(Exception):
            row = session.execute(
                "SELECT value FROM system_views.settings WHERE name = %s", (name,)).one()
            if row is not None:
                facts[name] = str(row.value)
    return facts


def describe_cassandra(facts: dict[str, str]) -> str:
    """One line for a benchmark's output."""
    sync = facts.get("commitlog_sync", "unknown")
    how = {"batch": "fsync before each write's ack",
           "group": "fsync per group window before the acks",
           "periodic": f"fsync every {facts.get('commitlog_sync_period', '?')}, acks before it"
           }.get(sync, "")
    return (f"Cassandra {facts.get('release_version', 'unknown')}, commitlog_sync {sync}"
            + (f" ({how})" if how else "")
            + f", concurrent_writes {facts.get('concurrent_writes', 'unknown')}")


def server_procs(kafka: KafkaSettings | None = None, cassandra_port: int = 9042) -> dict[str, psutil.Process]:
    """The Kafka and Cassandra server processes this run talks to: whoever listens on
    the bootstrap port and the CQL port (another stack on the machine is not counted)."""
    kafka_port = int((kafka.bootstrap_servers if kafka else "127.0.0.1:9092")
                     .split(",")[0].rpartition(":")[2])
    want = {kafka_port: "kafka", cassandra_port: "cassandra"}
    found: dict[str, psutil.Process] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in want and conn.pid:
            with contextlib.suppress(psutil.Error):
                found[want[conn.laddr.port]] = psutil.Process(conn.pid)
    return found


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


@dataclass
class Meter:
    """CPU (as cores over the metered wall time) and RSS of named processes.

    `start()` begins a sampling thread (RSS every `every_s`); `stop()` ends it and
    freezes the CPU figures. A process that exits keeps its last figures.
    """

    procs: dict[str, psutil.Process]
    every_s: float = 1.0
    rss_mb: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    _cpu0: dict[str, float] = field(default_factory=dict)
    _cpu1: dict[str, float] = field(default_factory=dict)
    _t0: float = 0.0
    _t1: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Meter:
        self._t0 = time.monotonic()
        for name, p in self.procs.items():
            with contextlib.suppress(psutil.Error):
                self._cpu0[name] = self._cpu1[name] = _cpu_s(p)
        self._thread = threading.Thread(target=self._run, name="bench-meter", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        now = time.monotonic() - self._t0
        for name, p in self.procs.items():
            with contextlib.suppress(psutil.Error):
                self.rss_mb.setdefault(name, []).append((now, p.memory_info().rss / 2**20))
                self._cpu1[name] = _cpu_s(p)

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.every_s):
                return

    def stop(self) -> Meter:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self._t1 = time.monotonic()
        return self

    @property
    def seconds(self) -> float:
        return max((self._t1 or time.monotonic()) - self._t0, 1e-9)

    def cpu_seconds(self, names: Iterable[str] | None = None) -> float:
        keys = self.procs if names is None else names
        return sum(self._cpu1.get(k, 0.0) - self._cpu0.get(k, 0.0) for k in keys)

    def cores(self, names: Iterable[str] | None = None) -> float:
        """CPU seconds per wall second of the named processes (all if None), summed."""
        return round(self.cpu_seconds(names) / self.seconds, 2)

    def peak_rss_mb(self, names: Iterable[str] | None = None) -> float:
        keys = self.procs if names is None else names
        return round(max((v for k in keys for _, v in self.rss_mb.get(k, [])), default=0.0), 1)


def meter_servers(s: Settings, every_s: float = 1.0) -> Meter:
    return Meter(server_procs(s.kafka, s.cassandra.port), every_s)


def wait_group_ready(kafka: KafkaSettings, group: str, members: int, timeout_s: float = 90) -> None:
    """Until `members` consumers of `group` hold partitions (the workers have started)."""
    admin = AdminClient(kafka.client_config())
    deadline = time.monotonic() + timeout_s
    while ready_members(admin, [group]).get(group, 0) < members:
        if time.monotonic() > deadline:
            raise TimeoutError(f"group {group}: {members} member(s) not ready in {timeout_s:.0f}s")
        time.sleep(0.3)


@dataclass(frozen=True)
class Outgoing:
    key: bytes
    value: bytes


def produce_stream(kafka: KafkaSettings, topic: str, records: Iterable[Outgoing], *,
                   rate: float = 0.0, on_sent: Callable[[Outgoing, int], None] | None = None,
                   linger_ms: int = 20) -> int:
    """Produce records, at `rate` per second if > 0 (else as fast as the client takes
    them), each stamped with the wall-clock ms it was produced at (the record's
    CreateTime; `on_sent` gets it). Returns the count; raises if any is unacknowledged."""
    # murmur2 as Java producers do: payments land on the partition whose workers own
    # their ledger buckets (store/buckets.py)
    producer = Producer({**kafka.client_config(), "enable.idempotence": True,
                         "linger.ms": linger_ms, "message.max.bytes": 8 * 1024 * 1024,
                         "partitioner": "murmur2_random"})
    errors: list[str] = []

    def delivered(err: object, _msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    t0, n = time.monotonic(), 0
    for rec in records:
        if rate > 0:
            ahead = n / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        ts = int(time.time() * 1000)
        while True:
            try:
                producer.produce(topic, value=rec.value, key=rec.key, timestamp=ts,
                                 on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if on_sent is not None:
            on_sent(rec, ts)
        n += 1
        if rate > 0 or n % 1000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left or errors:
        raise RuntimeError(f"{left} record(s) unacknowledged, errors: {errors[:3]}")
    return n


class CommittedReader:
    """Follows every partition of `topic` from the beginning, read_committed, on a thread;
    `on_record(msg, seen_at)` gets each record and the wall time (s) it was read."""

    def __init__(self, kafka: KafkaSettings, topic: str,
                 on_record: Callable[[Message, float], None]) -> None:
        self._consumer = Consumer({**kafka.client_config(), "group.id": "bench-reader",
                                   "isolation.level": "read_committed",
                                   "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        parts = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self._on_record = on_record
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-reader", daemon=True)
        self.error: str | None = None

    def __enter__(self) -> CommittedReader:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(1000, 0.05):
                seen = time.time()
                if msg.error() is None:
                    self._on_record(msg, seen)
                elif self.error is None:
                    self.error = str(msg.error())


def wait_until(what: str, done: Callable[[], bool], timeout_s: float, every_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout_s:.0f}s")
        time.sleep(every_s)

