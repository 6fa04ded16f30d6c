"""A worker process: one stage loop plus the clients it owns, closed on exit."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from cassandra.cluster import Session

from settlement.kafka.loop import StageLoop
from settlement.runtime import startup
from settlement.runtime.health import HealthServer


@dataclass
class Worker:
    loop: StageLoop
    session: Session
    http: HealthServer | None = None  # /healthz, /readyz, /metrics; None when disabled

    def run(self) -> None:
        """Poll until SIGTERM/SIGINT, then drain (commit or abort) and close."""
        self.loop.install_signal_handlers()
        if (signum := startup.held()) is not None:  # stopped while starting: drain at once
            self.loop.stop_requested_during_startup(signum)
        self.serve()

    def serve(self) -> None:
        """Run the loop with the HTTP surface up around it; close the session at the end."""
        try:
            with self.http or contextlib.nullcontext():
                self.loop.run()
        finally:
            self.session.cluster.shutdown()
