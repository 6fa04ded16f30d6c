"""Find and start the local stack (infra/up.sh) when it is not reachable."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from settlement.config import Settings
from settlement.domain.errors import ConfigError


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def stack_reachable(settings: Settings) -> bool:
    host, _, port = settings.kafka.bootstrap_servers.split(",")[0].rpartition(":")
    return _reachable(host, int(port)) and _reachable(
        settings.cassandra.contact_points[0], settings.cassandra.port)


def find_infra(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "infra" / "up.sh").is_file():
            return d / "infra"
    return None


def ensure_stack(settings: Settings) -> bool:
    """Start the local stack if Kafka or Cassandra is unreachable. True if it was started."""
    if stack_reachable(settings):
        return False
    infra = find_infra()
    if infra is None:
        raise ConfigError(
            "Kafka or Cassandra is unreachable and no infra/up.sh was found; run this from a "
            "checkout (make infra-up) or point SETTLEMENT_KAFKA__BOOTSTRAP_SERVERS / "
            "SETTLEMENT_CASSANDRA__CONTACT_POINTS at your servers")
    subprocess.run(["bash", str(infra / "up.sh")], check=True)
    return True
