"""A payment for a merchant without a payout account is parked, then released."""

from __future__ import annotations

import json

from settlement.domain.merchant import MerchantAccount
from settlement.store.session import connect
from tests.conftest import InProcessWorker, Namespace, wait_until
from tests.integration.helpers import item_counts, ledger_rows, produce_raw, register
from tests.unit.test_payment_contract import GOOD


def _parked(ns: Namespace) -> dict[str, str]:
    s = connect(ns.settings.cassandra, keyspace=ns.settings.cassandra.keyspace)
    try:
        return {r.payment_id: f"{r.status}:{r.reason}"
                for r in s.execute("SELECT payment_id, status, reason FROM parked_payments")}
    finally:
        s.cluster.shutdown()


def test_unroutable_payment_is_parked_not_lost_and_released_when_account_appears(
    ns: Namespace,
) -> None:
    ev = dict(GOOD, merchant_id="m-new", payment_id="pay-parked", event_id="evt-parked")
    produce_raw(ns.settings, [(b"pay-parked", json.dumps(ev).encode())])
    with InProcessWorker(ns.build_worker()):
        wait_until(lambda: "pay-parked" in _parked(ns), 60, "parking")
        assert _parked(ns)["pay-parked"] == "parked:merchant_without_payout_account"
        assert "pay-parked" in ledger_rows(ns.settings)  # recorded: it is a valid payment
        assert item_counts(ns.settings) == {}             # but not routed anywhere yet
        register(ns.settings, [MerchantAccount(
            merchant_id="m-new", currency="EUR", creditor_name="New Shop",
            account_id="FR7630006000011234567890189", bank_bic="MOCKFRPPXXX")])
        wait_until(lambda: item_counts(ns.settings) == {"pay-parked": 1}, 60, "release")
        wait_until(lambda: _parked(ns)["pay-parked"].startswith("released"), 30, "marked")
    assert item_counts(ns.settings) == {"pay-parked": 1}
