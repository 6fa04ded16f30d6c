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


@pytest.mark.parametrize("colnames", [
    ["[applied]"],
    ["[applied]", "payment_id", "src_offset"],
    ["a b", "1x", "count"],  # names the driver cleans or renames
    [],
])
def test_cached_row_factory_gives_the_drivers_rows(colnames: list[str]) -> None:
    from cassandra.query import named_tuple_factory

    from settlement.store.session import cached_named_tuple_factory

    rows = [tuple(range(i, i + len(colnames))) for i in range(3)]
    ours, drivers = cached_named_tuple_factory(colnames, rows), named_tuple_factory(colnames, rows)
    assert ours == drivers
    assert [r._fields for r in ours] == [r._fields for r in drivers]


def test_cached_row_factory_makes_one_class_per_column_set() -> None:
    """The driver's factory makes a new namedtuple class for every result (~80 µs on the
    I/O thread); ours makes it once."""
    from settlement.store.session import cached_named_tuple_factory

    first = cached_named_tuple_factory(["[applied]", "payment_id"], [(False, "p1")])
    second = cached_named_tuple_factory(["[applied]", "payment_id"], [(True, "p2")])
    other = cached_named_tuple_factory(["[applied]"], [(True,)])
    assert type(first[0]) is type(second[0])
    assert type(other[0]) is not type(first[0])
    assert second[0].applied is True and first[0].payment_id == "p1"
