"""A worker process: one stage loop plus the clients it owns, closed on exit."""

from __future__ import annotations

from dataclasses import dataclass

from cassandra.cluster import Session

from settlement.kafka.loop import StageLoop


@dataclass
class Worker:
    loop: StageLoop
    session: Session

    def run(self) -> None:
        """Poll until SIGTERM/SIGINT, then drain (commit or abort) and close."""
        self.loop.install_signal_handlers()
        try:
            self.loop.run()
        finally:
            self.session.cluster.shutdown()
