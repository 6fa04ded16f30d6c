"""A payout rejected by its bank is retried by an operator after the merchant's account is
fixed: one new attempt (new EndToEndId) in a later batch, never two live attempts."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from settlement.config import load_settings
from settlement.domain.batch import payout_of_end_to_end_id
from settlement.domain.merchant import MerchantAccount
from tests.conftest import InProcessWorker, Namespace, wait_until
from tests.e2e.pipeline import minute_calendar_env
from tests.integration.helpers import payout_statuses, produce_raw, register
from tests.integration.mockbank_proc import bank_env, bank_records, mock_bank

CLOSED = "DE26370400440000000077"
FIXED = "DE14370400440000000099"


def account(iban: str) -> MerchantAccount:
    return MerchantAccount(merchant_id="m-retry", currency="EUR", creditor_name="Retry GmbH",
                           account_id=iban, bank_bic="MOCKDEFFXXX", payout_mode="payment")


def cli(ns: Namespace, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "settlement", *args], env={**ns.env, **env},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.timeout(400)
def test_rejected_payout_retried_once_with_a_new_end_to_end_id(
    ns: Namespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = {"MOCKDEFFXXX": [{"id": CLOSED, "currency": "EUR", "closed": True}]}
    with mock_bank(tmp_path, accounts=closed) as url:
        env = {**minute_calendar_env(1.0), **bank_env(url)}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        ns.settings = load_settings()
        register(ns.settings, [account(CLOSED)])
        at = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()
        event = {"schema_version": 1, "event_id": "e-r1", "payment_id": "p-r1",
                 "merchant_id": "m-retry", "amount_minor": 50_000, "fee_minor": 500,
                 "currency": "EUR", "captured_at": at}
        produce_raw(ns.settings, [(b"p-r1", orjson.dumps(event))])
        workers = [InProcessWorker(ns.build_worker(role, instance_id=f"{role}-0"))
                   for role in ("ledger", "batcher", "gateway", "inbound")]
        for w in workers:
            w.__enter__()
        try:
            wait_until(lambda: [v[0] for v in payout_statuses(ns.settings).values()] == ["rejected"],
                       120, "the bank rejects the payout (account closed)")
            [(e2e1, (_, payout_id, amount))] = payout_statuses(ns.settings).items()
            assert bank_records(url)[e2e1]["reason"] == "AC04"

            register(ns.settings, [account(FIXED)])  # the merchant's account is fixed
            # Two operators at once: one LWT wins; the other re-sends the same attempt.
            procs = [subprocess.Popen([sys.executable, "-m", "settlement", "payouts", "retry",
                                       payout_id], env={**ns.env, **env}, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for _ in range(2)]
            outs = [p.communicate(timeout=120) for p in procs]
            assert [p.returncode for p in procs] == [0, 0], outs
            assert all("attempt 2" in o for o, _ in outs), outs

            wait_until(lambda: [v[0] for v in payout_statuses(ns.settings).values()]
                       in (["settled"], ["accepted"]), 150, "attempt 2 accepted")
            again = cli(ns, env, "payouts", "retry", payout_id)
            assert again.returncode == 2 and "only a rejected payout" in again.stderr
        finally:
            for w in workers:
                w.__exit__(None, None, None)
        [(e2e2, (status, pid2, amount2))] = payout_statuses(ns.settings).items()
        theirs = bank_records(url)
    assert status in ("settled", "accepted")
    assert pid2 == payout_id and amount2 == amount == 49_500
    assert payout_of_end_to_end_id(e2e1) == (payout_id, 1)
    assert payout_of_end_to_end_id(e2e2) == (payout_id, 2)
    mine = {e: t for e, t in theirs.items() if payout_of_end_to_end_id(e)
            and payout_of_end_to_end_id(e)[0] == payout_id}  # type: ignore[index]
    assert set(mine) == {e2e1, e2e2}, "exactly two attempts reached the bank"
    assert mine[e2e1]["decision"] == "RJCT" and mine[e2e1]["credited_count"] == 0
    assert mine[e2e2]["decision"] == "ACSP" and mine[e2e2]["credited_count"] <= 1
    assert mine[e2e2]["creditor_account"] == FIXED
