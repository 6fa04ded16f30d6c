"""Session-wide real stack (Kafka KRaft + Cassandra from infra/) and per-test namespaces.

Integration and e2e tests never mock Kafka or Cassandra: the session starts the
local stack with infra/up.sh (a no-op when it is already up), and each test gets
its own keyspace, topics and consumer group so tests cannot see each other.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cassandra.cluster import Session
from confluent_kafka.admin import AdminClient

from settlement import bootstrap
from settlement.config import Settings, load_settings
from settlement.domain.errors import RetryableError
from settlement.kafka.admin import ensure_topics, topic_specs
from settlement.runtime.worker import Worker
from settlement.store.migrate import migrate
from settlement.store.session import TRANSIENT, connect

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"


def _worker_index() -> int:
    """pytest-xdist's worker number (`gw1` -> 1); 0 without xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw")) if worker.removeprefix("gw").isdigit() else 0


def _own_stack(n: int) -> None:
    """Point xdist worker n > 0 at a stack of its own (`make test` runs two workers).

    The e2e tests kill -9 and restart their stack's servers, which must never happen under
    another worker's tests. Worker n's stack lives in <INFRA_HOME>/stacks/<n> (the fetched
    jars are shared) on the stack's ports + 100 n; the `stack` fixture starts it. Set in the
    environment, before the constants below are read: everything a test starts (workers,
    `settlement chaos`, infra/up.sh restarts) inherits it.
    """
    if n == 0:
        return
    home = Path(os.environ.get("INFRA_HOME", ROOT / ".infra"))
    ports = {name: int(os.environ.get(name, default)) + 100 * n for name, default in (
        ("KAFKA_PORT", 9092), ("KAFKA_CONTROLLER_PORT", 9093), ("KAFKA_SASL_PORT", 9094),
        ("CASSANDRA_PORT", 9042), ("CASSANDRA_STORAGE_PORT", 7000))}
    own = home / "stacks" / str(n)
    os.environ.update({
        "INFRA_HOME": str(own),
        "INFRA_LIB_HOME": os.environ.get("INFRA_LIB_HOME", str(home)),
        **{name: str(port) for name, port in ports.items()},
        "SETTLEMENT_TEST_KAFKA": f"127.0.0.1:{ports['KAFKA_PORT']}",
        "SETTLEMENT_TEST_KAFKA_SASL": f"127.0.0.1:{ports['KAFKA_SASL_PORT']}",
        "SETTLEMENT_TEST_KAFKA_SASL_PASSWORD_FILE": str(own / "kafka" / "sasl.password"),
        "SETTLEMENT_TEST_CASSANDRA_PORT": str(ports["CASSANDRA_PORT"]),
        # anything that falls back to the settings' defaults reaches this stack too
        "SETTLEMENT_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{ports['KAFKA_PORT']}",
        "SETTLEMENT_CASSANDRA__PORT": str(ports["CASSANDRA_PORT"]),
    })


WORKER = _worker_index()
_own_stack(WORKER)
KAFKA = os.environ.get("SETTLEMENT_TEST_KAFKA", "127.0.0.1:9092")
CASSANDRA_PORT = int(os.environ.get("SETTLEMENT_TEST_CASSANDRA_PORT", "9042"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.fspath)
        if "/integration/" in path:
            item.add_marker(pytest.mark.integration)
        elif "/e2e/" in path:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def stack() -> dict[str, Any]:
    """Bring the real local stack up once (idempotent), unless told it is managed outside.

    The stack of an xdist worker n > 0 is always this session's to start (it is left
    running, as `make test` leaves the main one; `infra/down.sh all` stops both).
    """
    if WORKER > 0:  # a worker's output is not shown: on failure, the test errors say why
        up = subprocess.run(["bash", str(INFRA / "up.sh")], capture_output=True, text=True,
                            check=False)
        if up.returncode != 0:
            pytest.fail(f"infra/up.sh for xdist worker {WORKER}'s stack "
                        f"({os.environ['INFRA_HOME']}) failed:\n{up.stdout}{up.stderr}")
    elif os.environ.get("SETTLEMENT_TEST_EXTERNAL_STACK") != "1":
        subprocess.run(["bash", str(INFRA / "up.sh")], check=True)
    return {"kafka": KAFKA, "cassandra_port": CASSANDRA_PORT}


@dataclass
class Namespace:
    """One test's private slice of the stack."""

    name: str
    settings: Settings
    env: dict[str, str]
    log_dir: Path

    def build_worker(self, role: str = "ledger", **worker: Any) -> Worker:
        s = self.settings
        if worker:
            s = s.model_copy(update={"worker": s.worker.model_copy(update=worker)})
        return bootstrap.build_worker(s, role)


def _namespace_env(name: str) -> dict[str, str]:
    return {
        "SETTLEMENT_KAFKA__BOOTSTRAP_SERVERS": KAFKA,
        "SETTLEMENT_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "SETTLEMENT_KAFKA__TRANSACTION_TIMEOUT_MS": "30000",
        "SETTLEMENT_CASSANDRA__PORT": str(CASSANDRA_PORT),
        "SETTLEMENT_CASSANDRA__KEYSPACE": name,
        "SETTLEMENT_WORKER__GROUP_PREFIX": name,
        "SETTLEMENT_WORKER__HEALTH_PORT": "0",  # many workers per host; a test asks for a port
        "SETTLEMENT_LEDGER__PARK_RELEASE_INTERVAL_S": "0.5",
        "SETTLEMENT_LEDGER__MERCHANT_CACHE_TTL_S": "0.5",
        **{f"SETTLEMENT_TOPICS__{k.upper()}": f"{name}.{v}" for k, v in {
            "payments": "payments.succeeded", "payments_dlq": "payments.succeeded.dlq",
            "items": "settlement.items", "items_dlq": "settlement.items.dlq",
            "bank_outbound": "bank.outbound",
            "bank_inbound": "bank.inbound", "events": "settlement.events"}.items()},
    }


def _make_namespace(mp: pytest.MonkeyPatch, log_dir: Path) -> Namespace:
    name = f"t_{uuid.uuid4().hex[:10]}"
    env = _namespace_env(name)
    for k, v in env.items():
        mp.setenv(k, v)
    settings = load_settings()
    ensure_topics(settings.kafka, settings.topics)
    session = connect(settings.cassandra)
    migrate(session, settings.cassandra)
    session.cluster.shutdown()
    return Namespace(name, settings, {**os.environ, **env}, log_dir)


@pytest.fixture
def ns(stack: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Namespace]:
    space = _make_namespace(monkeypatch, tmp_path / "logs")
    yield space
    _cleanup(space.settings, space.name)


@pytest.fixture
def session(ns: Namespace) -> Iterator[Session]:
    """A Cassandra session on the test's own keyspace."""
    s = connect(ns.settings.cassandra, keyspace=ns.settings.cassandra.keyspace)
    yield s
    s.cluster.shutdown()


@pytest.fixture(scope="module")
def ns_module(stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    with pytest.MonkeyPatch.context() as mp:
        space = _make_namespace(mp, tmp_path_factory.mktemp("logs"))
        yield space
    _cleanup(space.settings, space.name)


def _cleanup(settings: Settings, keyspace: str) -> None:
    try:
        session = connect(settings.cassandra)
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
        session.cluster.shutdown()
        admin = AdminClient(settings.kafka.client_config())
        futs = admin.delete_topics([t.name for t in topic_specs(settings.topics)])
        for f in futs.values():
            f.result(30)
    except Exception as exc:  # cleanup must not mask the test's own result
        print(f"cleanup of {keyspace} failed: {exc}")


# What a test's read of the stack may fail with while Cassandra is busy or restarting: the
# driver's transient errors, or the store's RetryableError wrapping one. A poll that
# meets one has not read anything yet.
POLL_TRANSIENT: tuple[type[BaseException], ...] = (RetryableError, *TRANSIENT)


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.5) -> None:
    """Poll `cond` until it holds. A poll that cannot read (Cassandra busy or restarting: the
    driver's transient errors) is "not yet", as it is for the workers; the last such error
    is in the timeout's message."""
    deadline = time.monotonic() + timeout_s
    failed: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except POLL_TRANSIENT as exc:
            failed = exc
        time.sleep(every_s)
    last = f" (last poll failed: {failed!r})" if failed is not None else ""
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{last}")


class InProcessWorker:
    """A real worker on a thread, with its HTTP surface if it has one (no kill -9 needed)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.serve()  # closes the session
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> InProcessWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.loop.stop()
        self._thread.join(60)
        assert not self._thread.is_alive(), "worker did not drain within 60s"
        if self.error is not None:
            raise self.error
