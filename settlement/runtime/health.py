"""The worker's HTTP surface: /healthz, /readyz and /metrics on a daemon thread.

- liveness: the loop polls. 503 once its last poll step is older than the
  consumer's max.poll.interval.ms (Kafka has given its partitions away by then
  anyway) or once the loop has exited; restarting the pod is the cure.
- readiness: the worker is in the consumer group (it received an assignment,
  possibly empty: a replica beyond the partition count is a ready standby), is
  not draining nor paused for an outage, its Kafka clients have no fatal error
  and reach a broker, and its Cassandra session has a live host (checked at most
  every few seconds).

The app is plain WSGI, so tests call it without a socket; `HealthServer` serves
it with the stdlib's threading WSGI server.
"""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
import structlog
from prometheus_client import make_wsgi_app

from settlement import metrics
from settlement.domain.errors import FatalError
from settlement.kafka.telemetry import LoopHealth

log = structlog.get_logger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Environ = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str = "ok"


class CachedCheck:
    """Runs a check at most once per `ttl_s`; probes and scrapes cost nothing in between."""

    def __init__(self, check: Callable[[], Check], ttl_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._check = check
        self._ttl = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._last = Check(False, "not checked yet")

    def __call__(self) -> Check:
        with self._lock:
            now = self._clock()
            if now - self._at >= self._ttl:
                try:
                    self._last = self._check()
                except Exception as exc:  # a probe must answer, whatever the driver raises
                    self._last = Check(False, f"{type(exc).__name__}: {exc}")
                self._at = now
            return self._last


def liveness(h: LoopHealth, now: float, limit_s: float) -> tuple[bool, dict[str, Any]]:
    age = now - h.heartbeat
    body: dict[str, Any] = {"heartbeat_age_s": round(age, 3), "limit_s": limit_s}
    if h.started and not h.running:
        return False, {**body, "live": False, "detail": "the loop has exited"}
    if age > limit_s:
        return False, {**body, "live": False, "detail": "the loop has not polled within the limit"}
    return True, {**body, "live": True}


def readiness(h: LoopHealth, cassandra: Check) -> tuple[bool, dict[str, Any]]:
    checks = {
        "loop": _loop_check(h),
        "assignment": (
            Check(True, f"{h.partitions} partition(s) owned") if h.assignments
            else Check(False, "waiting for the first partition assignment")),
        "kafka": Check(False, h.kafka_error) if h.kafka_error else Check(True),
        "cassandra": cassandra,
    }
    failed = [name for name, c in checks.items() if not c.ok]
    return not failed, {
        "ready": not failed, "failed": failed,
        "checks": {name: {"ok": c.ok, "detail": c.detail} for name, c in checks.items()},
    }


def _loop_check(h: LoopHealth) -> Check:
    if h.stopping:
        return Check(False, "draining")
    if h.started and not h.running:
        return Check(False, "the loop has exited")
    if h.in_outage:
        return Check(False, "paused: a dependency is down, retrying")
    return Check(True, "running" if h.running else "starting")


class HealthApp:
    """WSGI: GET /healthz, /readyz (JSON) and /metrics (Prometheus text)."""

    def __init__(self, loop_health: Callable[[], LoopHealth], cassandra: Callable[[], Check],
                 liveness_limit_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._loop_health = loop_health
        self._cassandra = cassandra
        self._limit = liveness_limit_s
        self._clock = clock
        self._metrics = make_wsgi_app(metrics.REGISTRY)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _json(start_response, 405, {"error": "GET only"})
        if path == "/healthz":
            ok, body = liveness(self._loop_health(), self._clock(), self._limit)
            return _json(start_response, 200 if ok else 503, body)
        if path == "/readyz":
            ok, body = readiness(self._loop_health(), self._cassandra())
            return _json(start_response, 200 if ok else 503, body)
        if path == "/metrics":
            result: Iterable[bytes] = self._metrics(environ, start_response)
            return result
        return _json(start_response, 404, {"error": "not found",
                                           "paths": ["/healthz", "/readyz", "/metrics"]})


def _json(start_response: StartResponse, status: int, body: dict[str, Any]) -> list[bytes]:
    raw = orjson.dumps(body)
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
              503: "Service Unavailable"}[status]
    start_response(f"{status} {reason}", [("Content-Type", "application/json"),
                                          ("Content-Length", str(len(raw))),
                                          ("Cache-Control", "no-store")])
    return [raw]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up the worker's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the logs; errors still surface as 5xx."""


class HealthServer:
    """Serves a HealthApp on host:port from a daemon thread; a context manager.

    Port 0 binds a free port (tests read `.port`); the worker disables the
    server with health_port = 0 before it gets here.
    """

    def __init__(self, app: HealthApp, host: str, port: int) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    def start(self) -> None:
        try:
            server = make_server(self._host, self._port, self._app,
                                 server_class=_ThreadingServer, handler_class=_QuietHandler)
        except OSError as exc:
            raise FatalError(
                f"cannot serve health/metrics on {self._host}:{self._port}: {exc} "
                "(set worker.health_port, or 0 to disable)") from exc
        assert isinstance(server, _ThreadingServer)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="health-http", daemon=True)
        self._thread.start()
        log.info("worker.http_started", host=self._host, port=self.port,
                 paths=["/healthz", "/readyz", "/metrics"])

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
