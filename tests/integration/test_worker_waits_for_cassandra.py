"""A worker that starts while Cassandra is unreachable waits for it, instead of exit 2.

Found by `settlement chaos` (seed 1505985296): a batcher restarted a second before a
Cassandra kill -9 exited 2 at start-up and never came back. Cassandra here is the real
node behind a TCP forwarder that the test opens late (or never).
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from settlement.runtime.local import WorkerProc
from tests.conftest import CASSANDRA_PORT, Namespace, wait_until


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@contextmanager
def forwarder(port: int, to_port: int) -> Iterator[None]:
    """127.0.0.1:port -> 127.0.0.1:to_port while open."""
    server = socket.create_server(("127.0.0.1", port))
    server.settimeout(0.2)
    done = threading.Event()
    conns: list[socket.socket] = []

    def accept() -> None:
        while not done.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", to_port))
            conns.extend((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(5)
        server.close()
        for c in conns:
            with suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(ns: Namespace, name: str, port: int) -> WorkerProc:
    env = {**ns.env, "SETTLEMENT_CASSANDRA__PORT": str(port)}
    return WorkerProc("ledger", name, [], env, ns.log_dir / f"{name}.log")


def test_a_worker_started_before_cassandra_is_reachable_waits_then_runs(ns: Namespace) -> None:
    port = _free_port()
    w = _worker(ns, "late-cassandra", port)
    w.start()
    assert w.proc is not None
    wait_until(lambda: "worker.waiting_for_cassandra" in w.log_path.read_text(), 60,
               "the worker says it waits")
    time.sleep(2)
    assert w.alive, w.log_path.read_text()[-2000:]
    with forwarder(port, CASSANDRA_PORT):
        wait_until(lambda: "worker.started" in w.log_path.read_text(), 60, "the worker runs")
        w.proc.send_signal(signal.SIGTERM)
        assert w.proc.wait(timeout=60) == 0
    log = w.log_path.read_text()
    assert "worker.stopped" in log
    assert not [line for line in log.splitlines() if line.startswith("error:")], log[-2000:]


def test_sigterm_while_waiting_for_cassandra_stops_the_worker_cleanly(ns: Namespace) -> None:
    w = _worker(ns, "no-cassandra", _free_port())
    w.start()
    assert w.proc is not None
    wait_until(lambda: "worker.waiting_for_cassandra" in w.log_path.read_text(), 60,
               "the worker says it waits")
    t0 = time.monotonic()
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(timeout=30) == 0
    assert time.monotonic() - t0 < 10, "the stop waited for the retries"
    assert "worker.stopped_while_starting" in w.log_path.read_text()


def test_a_worker_gives_up_on_cassandra_after_the_startup_wait_with_exit_2(ns: Namespace) -> None:
    port = _free_port()
    env = {**ns.env, "SETTLEMENT_CASSANDRA__PORT": str(port), "SETTLEMENT_CASSANDRA__STARTUP_WAIT_S": "3"}
    w = WorkerProc("ledger", "gives-up", [], env, ns.log_dir / "gives-up.log")
    w.start()
    assert w.proc is not None
    assert w.proc.wait(timeout=60) == 2
    log = w.log_path.read_text()
    assert "worker.waiting_for_cassandra" in log and "cannot connect to Cassandra" in log
