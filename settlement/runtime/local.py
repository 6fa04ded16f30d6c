"""Run worker processes locally (demo, benchmark, fault tests): spawn, kill, wait.

Each worker is a separate OS process (`python -m settlement worker ...`): one
process per worker because of the GIL, and clients built after the fork.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class WorkerProc:
    role: str
    instance_id: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    health_port: int = 0  # local workers share one host: no HTTP surface unless given a port

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "settlement", "--log-format", "json", "worker",
             "--role", self.role, "--instance-id", self.instance_id, *self.args],
            env={**self.env, "SETTLEMENT_WORKER__HEALTH_PORT": str(self.health_port)},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self.proc.wait(timeout=60)

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


@dataclass
class Fleet:
    workers: list[WorkerProc] = field(default_factory=list)

    @classmethod
    def of(cls, role: str, n: int, *, env: dict[str, str], log_dir: Path,
           args: list[str] | None = None, prefix: str = "") -> Fleet:
        return cls([
            WorkerProc(role, f"{prefix}{role}-{i}", list(args or []), env,
                       log_dir / f"{prefix}{role}-{i}.log")
            for i in range(n)
        ])

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def stop(self, timeout_s: float = 30) -> list[int | None]:
        self.terminate()
        return self.wait(timeout_s)

    def terminate(self) -> None:
        """SIGTERM every live worker (each drains and exits); `wait` collects the exit codes."""
        for w in self.workers:
            if w.alive:
                assert w.proc is not None
                w.proc.send_signal(signal.SIGCONT)
                w.proc.terminate()

    def wait(self, timeout_s: float = 30) -> list[int | None]:
        """Exit codes in order; a worker still running after `timeout_s` is killed."""
        codes: list[int | None] = []
        for w in self.workers:
            if w.proc is None:
                codes.append(None)
                continue
            try:
                codes.append(w.proc.wait(timeout=timeout_s))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                codes.append(w.proc.wait())
        return codes


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
