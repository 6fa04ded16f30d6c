"""Run the mock bank: `serve(config_path)` loads the YAML and runs uvicorn on it."""

from __future__ import annotations

from pathlib import Path

import structlog
import uvicorn

from settlement.bank.mockbank.app import create_app
from settlement.bank.mockbank.config import load

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8686
TICK_INTERVAL_S = 1.0

log = structlog.get_logger(__name__)


def serve(config_path: Path | str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          *, tick_interval_s: float = TICK_INTERVAL_S) -> None:
    """Blocks until SIGINT/SIGTERM. The admin API has no auth: keep `host` on loopback."""
    config = load(config_path)
    app = create_app(config, tick_interval_s=tick_interval_s)
    log.info("mockbank.starting", host=host, port=port, banks=[b.bic for b in config.banks],
             state_dir=str(config.state_dir))
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
