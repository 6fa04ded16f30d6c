"""A dependency failing inside the handler never makes the loop skip records.

Regression for a bug `settlement chaos` found (seed 154955051, a Cassandra kill -9): the
handler raised on the first records of a batch, the loop rewound to the batch's first
offsets, which did not yet include those records, so the consumer went on past them,
and later committed past them: lag stuck, payments never recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from settlement import loadgen, metrics
from settlement.domain.errors import NotYetError, RetryableError
from settlement.service.ports import HandlerResult, InboundRecord
from tests.conftest import InProcessWorker, Namespace, wait_until
from tests.e2e.checker import group_lag
from tests.integration.helpers import item_counts, produce_raw, register


class FlakyHandler:
    """The real handler, but the chosen `handle` calls fail as if Cassandra were down."""

    def __init__(self, inner: Any, fail_on: set[int], not_yet_on: frozenset[int] = frozenset()
                 ) -> None:
        self.inner, self.fail_on, self.not_yet_on, self.calls = inner, fail_on, not_yet_on, 0

    def handle(self, records: Sequence[InboundRecord]) -> HandlerResult:
        self.calls += 1
        if self.calls in self.not_yet_on:
            raise NotYetError("payout P not found while 1 sealed batch is pending (injected)")
        if self.calls in self.fail_on:
            raise RetryableError("read parked payments: NoHostAvailable (injected)")
        result: HandlerResult = self.inner.handle(records)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_records_of_a_failed_first_poll_are_read_again(ns: Namespace) -> None:
    register(ns.settings, loadgen.merchants(10, 2, ["EUR"], seed=11))
    records = list(loadgen.generate(2000, merchants_n=10, currencies=["EUR"], seed=11))
    produce_raw(ns.settings, [(r.key, r.value) for r in records])
    worker = ns.build_worker("ledger", max_batch=100, outage_backoff_max_s=0.5)
    flaky = FlakyHandler(worker.loop._handler, fail_on={1, 3, 4, 9})
    worker.loop._handler = flaky
    want = {r.payment_id for r in records}
    with InProcessWorker(worker):
        wait_until(lambda: set(item_counts(ns.settings)) == want, 90, "every payment's item")
        wait_until(lambda: group_lag(ns.settings, f"{ns.settings.worker.group_prefix}-ledger",
                                     ns.settings.topics.payments) == 0, 30, "lag 0")
    assert flaky.calls > 4, "the failures were not reached"
    counts = item_counts(ns.settings)
    assert all(n == 1 for n in counts.values()), "an item was published twice"


def test_the_backoff_starts_over_after_a_commit_and_a_wait_is_no_outage(ns: Namespace) -> None:
    """Failures in a row wait 0.5, 1, 2 s; after a commit the next one waits 0.5 s again
    (before, a worker that had once backed off to the maximum waited that long at every
    later blip). A NotYetError (a payout row on its way) waits the same, logged as
    waiting, not counted as a dependency outage."""
    register(ns.settings, loadgen.merchants(10, 2, ["EUR"], seed=12))
    records = list(loadgen.generate(3000, merchants_n=10, currencies=["EUR"], seed=12))
    produce_raw(ns.settings, [(r.key, r.value) for r in records])
    worker = ns.build_worker("ledger", max_batch=100, outage_backoff_max_s=4.0)
    flaky = FlakyHandler(worker.loop._handler, fail_on={2, 3, 4}, not_yet_on=frozenset({9}))
    worker.loop._handler = flaky
    waits: list[float] = []
    enter = worker.loop._enter_outage

    def recording(exc: RetryableError) -> None:
        enter(exc)
        waits.append(worker.loop._outage_backoff)

    worker.loop._enter_outage = recording  # type: ignore[method-assign]
    outages = metrics.OUTAGES.labels("ledger")._value.get()
    with InProcessWorker(worker):
        wait_until(lambda: group_lag(ns.settings, f"{ns.settings.worker.group_prefix}-ledger",
                                     ns.settings.topics.payments) == 0, 90, "lag 0")
    assert flaky.calls > 9, "the failures were not reached"
    assert waits == [0.5, 1.0, 2.0, 0.5]  # calls 2-4 in a row; call 9 after commits
    assert metrics.OUTAGES.labels("ledger")._value.get() == outages + 3
