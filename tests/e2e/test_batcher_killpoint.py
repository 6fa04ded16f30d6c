"""kill -9 of the batcher between the commit that published a pacs.008 and the write of
its payout rows (the chosen point `batcher.published_before_payouts`), on the real stack:
the message is out exactly once, the batch is marked pending and has no payout row; the
next batcher to own the items partition rebuilds the rows from the batch and the stored
message and clears the marker, and the payouts are what the message says (I2, I3, I6).
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import pytest

from settlement.domain.merchant import MerchantAccount
from settlement.domain.payment import SettlementItem
from settlement.iso20022.pacs008 import parse_pacs008_summary
from settlement.runtime.local import Fleet
from settlement.store.session import connect
from tests.conftest import Namespace, wait_until
from tests.e2e.pipeline import minute_calendar_env
from tests.integration.helpers import committed, produce_raw, register

BIC = "MOCKDEFFXXX"


def _table(ns: Namespace, cql: str) -> list:  # type: ignore[type-arg]
    s = connect(ns.settings.cassandra, keyspace=ns.settings.cassandra.keyspace)
    try:
        return list(s.execute(cql))
    finally:
        s.cluster.shutdown()


@pytest.mark.timeout(300)
def test_payouts_left_unwritten_by_a_kill_after_the_publish_are_written_by_the_next_owner(
        ns: Namespace) -> None:
    accounts = [MerchantAccount(
        merchant_id=f"m-{i}", currency="EUR", creditor_name=f"Shop {i}",
        account_id="DE89370400440532013000", bank_bic=BIC, payout_mode="payment")
        for i in range(40)]
    register(ns.settings, accounts[:30])  # m-30..m-39 have no account: not sent
    past = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    items = [SettlementItem(payment_id=f"p-{i}", event_id=f"e-{i}", merchant_id=f"m-{i}",
                            amount_minor=1000 + i, fee_minor=30, currency="EUR",
                            captured_at=past + timedelta(seconds=10), bank_bic=BIC,
                            payout_mode="payment") for i in range(40)]
    produce_raw(ns.settings, [(i.partition_key.encode(), i.model_dump_json().encode())
                              for i in items], topic=ns.settings.topics.items)
    env = {**ns.env, **minute_calendar_env(0.0)}
    doomed = Fleet.of("batcher", 1, env={**env, "SETTLEMENT_KILL_AT":
                                         "batcher.published_before_payouts"},
                      log_dir=ns.log_dir, prefix="doomed-")
    doomed.start()
    try:
        wait_until(lambda: not doomed.workers[0].alive, 120,
                   "the batcher killed itself after publishing the pacs.008")
    finally:
        doomed.stop()
    assert doomed.workers[0].proc is not None
    assert doomed.workers[0].proc.returncode == -signal.SIGKILL
    [msg] = committed(ns.settings, ns.settings.topics.bank_outbound)
    summary = parse_pacs008_summary(msg.value() or b"", validate_schema=True)
    assert summary.nb_of_txs == 30
    [pending] = _table(ns, "SELECT batch_id FROM payouts_pending")
    assert _table(ns, "SELECT payout_id FROM payouts") == []

    # meanwhile the registry learns m-30's account: it was not in the message, so its
    # payout stays 'no_payout_account'
    register(ns.settings, [accounts[0].model_copy(update={"merchant_id": "m-30"})])
    heir = Fleet.of("batcher", 1, env=env, log_dir=ns.log_dir, prefix="heir-")
    heir.start()
    try:
        wait_until(lambda: not _table(ns, "SELECT batch_id FROM payouts_pending"), 120,
                   "the next owner wrote the payout rows and cleared the marker")
    finally:
        heir.stop()
    payouts = _table(ns, "SELECT payout_id, batch_id, merchant_id, amount_minor, status, "
                         "end_to_end_id FROM payouts")
    assert len(payouts) == 40 and {p.batch_id for p in payouts} == {pending.batch_id}
    sent = {t.end_to_end_id: t.amount_minor for t in summary.transactions}
    assert {p.end_to_end_id: p.amount_minor for p in payouts if p.status == "sent"} == sent
    assert sorted(p.merchant_id for p in payouts if p.status != "sent") == [
        f"m-{i}" for i in range(30, 40)]
    assert {p.status for p in payouts if p.status != "sent"} == {"no_payout_account"}
    # published once: the heir found the seal command committed and sent nothing again
    assert len(committed(ns.settings, ns.settings.topics.bank_outbound)) == 1
