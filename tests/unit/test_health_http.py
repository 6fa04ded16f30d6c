"""The worker's HTTP surface: probe semantics, JSON bodies, /metrics, and the server's lifecycle."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import urllib.error
import urllib.request
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from settlement.domain.errors import FatalError
from settlement.kafka.telemetry import LoopHealth
from settlement.runtime.health import CachedCheck, Check, HealthApp, HealthServer

NOW = 1000.0
LIMIT = 120.0
RUNNING = LoopHealth(started=True, running=True, stopping=False, heartbeat=NOW - 0.2,
                     assignments=1, partitions=3, in_outage=False, kafka_error=None)


def app(health: LoopHealth = RUNNING, cassandra: Check = Check(True, "live: 127.0.0.1:9042")
        ) -> HealthApp:
    return HealthApp(lambda: health, lambda: cassandra, LIMIT, clock=lambda: NOW)


def call(wsgi: HealthApp, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path}
    setup_testing_defaults(environ)
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        got["status"], got["headers"] = int(status.split()[0]), dict(headers)

    body = b"".join(wsgi(environ, start_response))
    return got["status"], got["headers"], body


def test_healthz_is_200_while_the_loop_polls() -> None:
    status, headers, body = call(app(), "/healthz")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"live": True, "heartbeat_age_s": 0.2, "limit_s": LIMIT}


def test_healthz_is_503_once_the_loop_stops_polling_for_longer_than_the_limit() -> None:
    stalled = dataclasses.replace(RUNNING, heartbeat=NOW - LIMIT - 1)
    status, _, body = call(app(stalled), "/healthz")
    assert status == 503
    assert json.loads(body)["detail"] == "the loop has not polled within the limit"


def test_healthz_is_503_once_the_loop_has_exited() -> None:
    exited = dataclasses.replace(RUNNING, running=False)
    status, _, body = call(app(exited), "/healthz")
    assert status == 503 and json.loads(body)["detail"] == "the loop has exited"


def test_healthz_is_200_while_the_worker_starts_and_the_loop_has_not_run_yet() -> None:
    starting = dataclasses.replace(RUNNING, started=False, running=False, assignments=0)
    assert call(app(starting), "/healthz")[0] == 200


def test_readyz_is_200_with_every_check_ok_once_partitions_are_assigned() -> None:
    status, _, body = call(app(), "/readyz")
    doc = json.loads(body)
    assert status == 200 and doc["ready"] is True and doc["failed"] == []
    assert doc["checks"]["assignment"] == {"ok": True, "detail": "3 partition(s) owned"}
    assert doc["checks"]["cassandra"] == {"ok": True, "detail": "live: 127.0.0.1:9042"}


def test_readyz_is_503_before_the_first_assignment_and_names_the_check() -> None:
    joining = dataclasses.replace(RUNNING, assignments=0, partitions=0)
    status, _, body = call(app(joining), "/readyz")
    doc = json.loads(body)
    assert status == 503 and doc["failed"] == ["assignment"]
    assert doc["checks"]["assignment"]["detail"] == "waiting for the first partition assignment"


def test_a_replica_with_zero_partitions_after_its_assignment_is_a_ready_standby() -> None:
    standby = dataclasses.replace(RUNNING, assignments=1, partitions=0)
    status, _, body = call(app(standby), "/readyz")
    assert status == 200 and json.loads(body)["checks"]["assignment"]["detail"] == "0 partition(s) owned"


@pytest.mark.parametrize(("health", "cassandra", "failed", "detail"), [
    (RUNNING, Check(False, "no live Cassandra host"), ["cassandra"], "no live Cassandra host"),
    (dataclasses.replace(RUNNING, kafka_error="producer: fenced"), Check(True), ["kafka"],
     "producer: fenced"),
    (dataclasses.replace(RUNNING, kafka_error="no Kafka broker reachable"), Check(True), ["kafka"],
     "no Kafka broker reachable"),
    (dataclasses.replace(RUNNING, stopping=True), Check(True), ["loop"], "draining"),
    (dataclasses.replace(RUNNING, in_outage=True), Check(True), ["loop"],
     "paused: a dependency is down, retrying"),
], ids=["cassandra-down", "kafka-fatal", "brokers-down", "draining", "outage"])
def test_readyz_is_503_and_says_which_check_failed(
    health: LoopHealth, cassandra: Check, failed: list[str], detail: str
) -> None:
    status, _, body = call(app(health, cassandra), "/readyz")
    doc = json.loads(body)
    assert status == 503 and doc["ready"] is False and doc["failed"] == failed
    assert doc["checks"][failed[0]] == {"ok": False, "detail": detail}


def test_metrics_serves_prometheus_text_with_the_settlement_metrics() -> None:
    status, headers, body = call(app(), "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    assert "# TYPE settlement_records_consumed_total counter" in text
    assert re.search(r'^settlement_reconciliation_breaks_total\{type="statement_gap"\} \d', text,
                     re.MULTILINE)
    assert "_created" not in text
    assert "process_cpu_seconds_total" in text  # the process collector is registered too


def test_unknown_paths_are_404_and_other_methods_405() -> None:
    assert call(app(), "/nope")[0] == 404
    assert call(app(), "/healthz", method="POST")[0] == 405


def test_cached_check_runs_at_most_once_per_ttl_and_turns_exceptions_into_failures() -> None:
    now = [0.0]
    calls: list[int] = []

    def check() -> Check:
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionError("gone")
        return Check(True)

    cached = CachedCheck(check, ttl_s=5, clock=lambda: now[0])
    assert cached().ok and cached().ok and len(calls) == 1
    now[0] = 5.0
    assert cached() == Check(False, "ConnectionError: gone") and len(calls) == 2
    now[0] = 9.0
    assert not cached().ok and len(calls) == 2  # the failure is cached as well
    now[0] = 10.0
    assert cached().ok and len(calls) == 3


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def test_server_serves_on_a_free_port_and_closes_it_on_exit() -> None:
    with HealthServer(app(), "127.0.0.1", 0) as server:
        port = server.port
        assert _get(port, "/healthz")[0] == 200
        status, body = _get(port, "/readyz")
        assert status == 200 and json.loads(body)["ready"] is True
    with pytest.raises(ConnectionRefusedError):  # nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_port_in_use_is_a_clear_fatal_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(FatalError, match="health_port"):
            HealthServer(app(), "127.0.0.1", taken.getsockname()[1]).start()
