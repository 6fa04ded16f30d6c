"""`python -m settlement.bank.mockbank --config examples/banks.yaml --port 8686`."""

from __future__ import annotations

import argparse
import sys

from settlement.bank.mockbank.server import DEFAULT_HOST, DEFAULT_PORT, serve
from settlement.domain.errors import ConfigError

_EPILOG = """\
examples:
  python -m settlement.bank.mockbank --config examples/banks.yaml
  curl -s localhost:8686/healthz
  curl -s -X POST localhost:8686/admin/clock -d '{"advance_days": 1}'

The admin API (/admin/...) needs no token: keep --host on 127.0.0.1 unless the
network around it is private. Reference: docs/mock-bank.md
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m settlement.bank.mockbank",
        description="Mock bank: accepts pacs.008 batches, answers pacs.002, settles on its own clock "
                    "(camt.054), returns some (pacs.004), sends end-of-day statements (camt.053), "
                    "with seeded, configurable faults.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True,
                        help="YAML file with state_dir and banks (see examples/banks.yaml)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    try:
        serve(args.config, host=args.host, port=args.port)
    except ConfigError as exc:
        print(f"mockbank: {exc}", file=sys.stderr)  # noqa: T201  # the CLI edge reports to the operator
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
