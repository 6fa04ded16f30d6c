"""Named points where a fault-injection test kills this process with SIGKILL.

`SETTLEMENT_KILL_AT=<name>` in a worker's environment makes the worker kill itself the
first time it reaches that point, so a test can crash it exactly between two steps (a
random kill hits a window of a few milliseconds too rarely to prove anything). Unset,
as in production, a point costs one string comparison. Names are listed in KILL_POINTS.
"""

from __future__ import annotations

import os
import signal

import structlog

log = structlog.get_logger(__name__)

KILL_POINTS = frozenset({
    # after the commit that published a sealed batch's pacs.008, before its payout rows
    "batcher.published_before_payouts",
})
_AT = os.environ.get("SETTLEMENT_KILL_AT", "")
if _AT and _AT not in KILL_POINTS:
    raise ValueError(f"SETTLEMENT_KILL_AT={_AT!r} names no kill point: one of "
                     f"{sorted(KILL_POINTS)}")


def kill_point(name: str) -> None:
    if name == _AT:
        log.warning("killpoint.kill", point=name, pid=os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)
