"""Carry out a fault schedule against the worker processes, the local stack and the banks.

The stack's servers are the ones `infra/` started: their pids come from the pid files
of INFRA_HOME, a restart is `infra/up.sh <server>` with the same environment. Whatever
happens (an error, Ctrl-C), `close` leaves every process running and un-stopped and the
banks' fault profiles as they were.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from settlement.chaos.plan import Fault, Kind, Schedule
from settlement.domain.errors import ConfigError
from settlement.runtime.local import Fleet, WorkerProc

log = structlog.get_logger(__name__)

PID_FILES = {"kafka": "kafka/kafka.pid", "cassandra": "cassandra/cassandra.pid"}


@dataclass
class Applied:
    fault: Fault
    started_s: float  # from the run's first payment
    took_s: float
    note: str = ""


class Stack:
    """The local stack's two servers, as infra/ runs them."""

    def __init__(self, infra: Path, env: dict[str, str]) -> None:
        self.infra = infra
        self.env = env
        home = env.get("INFRA_HOME") or str(infra.parent / ".infra")
        self.home = Path(home)

    def pid(self, server: str) -> int:
        path = self.home / PID_FILES[server]
        try:
            pid = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError) as exc:
            raise ConfigError(f"no {server} pid in {path}: chaos needs the stack infra/ started "
                              f"(INFRA_HOME={self.home})") from exc
        if not Path(f"/proc/{pid}").exists():
            raise ConfigError(f"{server} pid {pid} from {path} is not running")
        return pid

    def check(self) -> None:
        for server in PID_FILES:
            self.pid(server)

    def kill(self, server: str) -> None:
        pid = self.pid(server)
        os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.05)

    def signal(self, server: str, sig: int) -> None:
        os.kill(self.pid(server), sig)

    def start(self, server: str) -> None:
        out = subprocess.run(["bash", str(self.infra / "up.sh"), server], env=self.env,
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"infra/up.sh {server} failed ({out.returncode}): "
                               f"{(out.stdout + out.stderr)[-800:]}")


class Banks:
    """The mock banks' fault profiles, over their admin API."""

    def __init__(self, admin: Callable[..., Any], bics: list[str]) -> None:
        self._admin = admin  # (method, path, json=...) -> decoded JSON
        self.bics = bics

    def profile(self, bic: str) -> dict[str, Any]:
        return dict(self._admin("GET", f"/admin/banks/{bic}/faults"))

    def patch(self, bic: str, patch: dict[str, Any]) -> None:
        self._admin("POST", f"/admin/banks/{bic}/faults", json=patch)


@dataclass
class Injector:
    schedule: Schedule
    fleet: dict[str, list[WorkerProc]]  # role -> its processes
    stack: Stack
    banks: Banks
    worker_env: dict[str, str]
    log_dir: Path
    bank_read_timeout_s: float
    applied: list[Applied] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _t0: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _stopped: set[int] = field(default_factory=set)       # worker pids under SIGSTOP
    _cassandra_stopped: bool = False
    _bank_restore: dict[str, dict[str, Any]] = field(default_factory=dict)
    _extra: list[WorkerProc] = field(default_factory=list)
    down: set[str] = field(default_factory=set)  # workers a fault holds down right now

    def start(self, t0: float) -> None:
        self._t0 = t0
        self._thread = threading.Thread(target=self._run, name="chaos-injector", daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def join(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def close(self) -> None:
        """Stop injecting and undo whatever is still in force."""
        self._stop.set()
        self.join(120)
        self._undo()

    def _run(self) -> None:
        for n, fault in enumerate(self.schedule.faults):
            wait = fault.at_s - (time.monotonic() - self._t0)
            if wait > 0 and self._stop.wait(wait):
                return
            started = time.monotonic()
            note = ""
            try:
                note = self._apply(n, fault)
            except Exception as exc:  # recorded and shown; the run goes on
                note = f"failed: {exc!r}"
                self.errors.append(f"{fault.describe()}: {exc!r}")
                log.error("chaos.fault_failed", fault=fault.describe(), error=repr(exc))
            finally:
                self._undo()
            self.applied.append(Applied(fault, started - self._t0, time.monotonic() - started, note))
            log.info("chaos.fault", fault=fault.describe(), took_s=round(time.monotonic() - started, 1),
                     note=note)

    def _hold(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _apply(self, n: int, f: Fault) -> str:
        match f.kind:
            case Kind.KILL:
                w = self._worker(f)
                self.down.add(w.instance_id)
                try:
                    w.kill(signal.SIGKILL)
                    self._hold(f.hold_s)
                    w.start()
                finally:
                    self.down.discard(w.instance_id)
                return f"{w.instance_id} restarted"
            case Kind.ZOMBIE:
                w = self._worker(f)
                if not w.alive:
                    w.start()
                    return f"{w.instance_id} was not running: started instead"
                pid = w.pid()
                os.kill(pid, signal.SIGSTOP)
                self._stopped.add(pid)
                self._hold(f.hold_s)
                return f"{w.instance_id} resumed after {f.hold_s:.0f}s stopped"
            case Kind.BROKER_KILL | Kind.CASSANDRA_KILL:
                server = "kafka" if f.kind is Kind.BROKER_KILL else "cassandra"
                self.stack.kill(server)
                self._hold(f.hold_s)
                t = time.monotonic()
                self.stack.start(server)
                return f"{server} back after {f.hold_s + time.monotonic() - t:.1f}s down"
            case Kind.CASSANDRA_STALL:
                self.stack.signal("cassandra", signal.SIGSTOP)
                self._cassandra_stopped = True
                self._hold(f.hold_s)
                return f"cassandra resumed after {f.hold_s:.0f}s stopped"
            case Kind.BANK_5XX | Kind.BANK_TIMEOUT:
                patch = ({"error_5xx_rate": 1.0} if f.kind is Kind.BANK_5XX else
                         {"timeout_rate": 1.0, "timeout_sleep_s": self.bank_read_timeout_s + 2})
                for bic in self.banks.bics:
                    before = self.banks.profile(bic)
                    self._bank_restore[bic] = {k: before[k] for k in patch}
                    self.banks.patch(bic, patch)
                self._hold(f.hold_s)
                return f"{len(self.banks.bics)} banks for {f.hold_s:.0f}s"
            case Kind.REBALANCE:
                extra = Fleet.of(f.role, f.extra, env=self.worker_env, log_dir=self.log_dir,
                                 prefix=f"chaos-x{n}-")
                self._extra = extra.workers
                extra.start()
                self._hold(f.hold_s)
                extra.stop(timeout_s=60)
                self._extra = []
                return f"{f.role} +{f.extra} for {f.hold_s:.0f}s, then drained"
        raise AssertionError(f.kind)

    def _worker(self, f: Fault) -> WorkerProc:
        workers = self.fleet[f.role]
        return workers[f.index % len(workers)]

    def _undo(self) -> None:
        for pid in list(self._stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
            self._stopped.discard(pid)
        if self._cassandra_stopped:
            try:
                self.stack.signal("cassandra", signal.SIGCONT)
            except ConfigError as exc:
                self.errors.append(f"could not resume cassandra: {exc}")
            self._cassandra_stopped = False
        for bic, values in list(self._bank_restore.items()):
            try:
                self.banks.patch(bic, values)
                del self._bank_restore[bic]
            except Exception as exc:  # the bank must not stay in a storm: retried at close
                self.errors.append(f"could not restore {bic}'s faults: {exc!r}")
        if self._extra:
            Fleet(self._extra).stop(timeout_s=60)
            self._extra = []
