"""A seal command lost with an aborted transaction is issued again.

Regression for a bug `settlement chaos` found (seed 1480177189: Cassandra kill -9, a
batcher SIGKILL, a zombie inbound): the batcher's tick put a seal command into the open
transaction, the transaction aborted (Cassandra timed out on rows placed in it), and the
batcher, which remembered the batch as commanded, never issued the command again. Six
batches stayed open for good and no pacs.008 was sent. Here the transaction carrying the
command is aborted on purpose, with a real broker and Cassandra.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from settlement import bootstrap
from settlement.config import BankSettings
from settlement.domain.errors import RetryableError
from settlement.domain.merchant import MerchantAccount
from settlement.domain.payment import SettlementItem
from settlement.service.deadletter import header
from settlement.service.ports import HandlerResult
from tests.conftest import InProcessWorker, Namespace, wait_until
from tests.e2e.pipeline import MINUTE_BANK
from tests.integration.helpers import committed, produce_raw, register

BIC = "MOCKDEFFXXX"


class AbortAfterSealTick:
    """The real batcher; the tick after the first one that issued a seal command fails,
    as a Cassandra timeout would, so the loop aborts the transaction holding the command."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.armed, self.fired, self.commands = inner, False, False, 0

    def tick(self, owned: Sequence[tuple[str, int]]) -> HandlerResult:
        if self.armed:
            self.armed, self.fired = False, True
            raise RetryableError("claim partition: WriteTimeout (injected)")
        result: HandlerResult = self.inner.tick(owned)
        seals = sum(header(o.headers, "kind") == "seal" for o in result.outputs)
        self.commands += seals
        if seals and not self.fired:
            self.armed = True
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_the_batch_is_sealed_and_sent_after_the_transaction_with_its_command_aborted(
        ns: Namespace) -> None:
    register(ns.settings, [MerchantAccount(
        merchant_id="m-1", currency="EUR", creditor_name="Shop One",
        account_id="DE89370400440532013000", bank_bic=BIC, payout_mode="payment")])
    past = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    items = [SettlementItem(payment_id=f"p-{i}", event_id=f"e-{i}", merchant_id="m-1",
                            amount_minor=1000 + i, fee_minor=30, currency="EUR",
                            captured_at=past + timedelta(seconds=10), bank_bic=BIC,
                            payout_mode="payment") for i in range(20)]
    produce_raw(ns.settings, [(i.partition_key.encode(), i.model_dump_json().encode())
                              for i in items], topic=ns.settings.topics.items)
    s = ns.settings.model_copy(update={
        "batcher": ns.settings.batcher.model_copy(update={
            "default_bank": BankSettings.model_validate(MINUTE_BANK),
            "seal_grace_s": 0.0, "seal_check_interval_s": 0.2}),
        "worker": ns.settings.worker.model_copy(update={
            "commit_interval_ms": 3000, "outage_backoff_max_s": 0.5}),
    })
    worker = bootstrap.build_worker(s, "batcher")
    flaky = AbortAfterSealTick(worker.loop._handler)
    worker.loop._handler = flaky
    with InProcessWorker(worker):
        wait_until(lambda: flaky.fired, 60, "the transaction with the seal command aborted")
        wait_until(lambda: bool(committed(s, s.topics.bank_outbound)), 60,
                   "the batch's pacs.008 on bank.outbound")
    assert flaky.commands == 2, "the command was issued again once, after the abort"
    [msg] = committed(s, s.topics.bank_outbound)
    assert b"<NbOfTxs>20</NbOfTxs>" in (msg.value() or b"")
