"""Store-side session helpers that keep a Cassandra outage a retryable outage."""

from __future__ import annotations

from typing import Any

import pytest


def test_concurrent_writes_with_no_live_host_are_retryable_not_a_crash() -> None:
    """Regression (chaos, Cassandra stall): the driver's concurrent executor crashed the
    worker with a RecursionError/TypeError when no host was up; now it is an outage."""
    from settlement.domain.errors import RetryableError
    from settlement.store.session import run_concurrent

    class NoHosts:
        is_shutdown = False

        def get_pool_state(self) -> dict[Any, Any]:
            return {}

    with pytest.raises(RetryableError, match="no live Cassandra host"):
        run_concurrent(NoHosts(), [("stmt", (1,))], 8)  # type: ignore[arg-type]
