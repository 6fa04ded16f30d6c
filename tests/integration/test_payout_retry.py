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
from settlement.service.ports import BatchHeader, BatchRow
from settlement.store.batches import CassandraBatchStore
from settlement.store.session import connect
from tests.conftest import InProcessWorker, Namespace, wait_until
from tests.e2e.pipeline import minute_calendar_env
from tests.integration.helpers import committed, payout_statuses, produce_raw, register
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
            assert again.returncode == 2  # the error line as read, not as rich wrapped it:
            assert "only a rejected or unsent payout" in " ".join(again.stderr.split())
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


def test_every_unsent_payout_of_a_batch_is_retried_with_one_command(ns: Namespace) -> None:
    """A batch whose pacs.008 was too large to send: `payouts retry --batch` queues a new
    attempt for each unsent payout, and passes over the others."""
    register(ns.settings, [account(FIXED)])
    at = datetime(2026, 11, 2, 9, 59, tzinfo=UTC)
    sealed_at = datetime(2026, 11, 2, 10, 0, 3, tzinfo=UTC)
    session = connect(ns.settings.cassandra, keyspace=ns.settings.cassandra.keyspace)
    try:
        store = CassandraBatchStore(session)
        head = BatchHeader("B-BIG", "MOCKDEFFXXX", "EUR", "20261102T1000", at, at.date(), 0,
                           ns.settings.topics.items, 0)
        store.create([head], 1)
        ids = [f"POBIG{i}" for i in range(3)]
        store.add({"B-BIG": [BatchRow(pid, f"pay-{pid}", "m-retry", "payment", 1000 + i, 0, at,
                                      False) for i, pid in enumerate(ids)]}, 1)
        store.save_payouts([(pid, "B-BIG", "m-retry", "EUR", "20261102T1000", 1000 + i, 1000 + i,
                             0, 1, 0, 1, f"E{pid[2:]}-1", f"I{pid[2:]}-1", "u", status, sealed_at)
                            for i, (pid, status) in enumerate(zip(
                                ids, ["sent", "sent", "nothing_to_pay"], strict=True))])
        store.mark_unsent(ids[:2], sealed_at)
    finally:
        session.cluster.shutdown()
    out = cli(ns, {}, "payouts", "retry", "--batch", "B-BIG")
    assert out.returncode == 0, out.stderr
    assert "batch B-BIG: 2 of 3 payouts queued for a new attempt" in out.stdout
    statuses = {pid: (s, p) for _e2e, (s, pid, p) in payout_statuses(ns.settings).items()}
    assert statuses == {"POBIG0": ("retrying", 1000), "POBIG1": ("retrying", 1001),
                        "POBIG2": ("nothing_to_pay", 1002)}
    commands = [orjson.loads(m.value()) for m in committed(ns.settings, ns.settings.topics.items)]
    assert sorted((c["payout_id"], c["attempt"]) for c in commands) == [
        ("POBIG0", 2), ("POBIG1", 2)]
    both = cli(ns, {}, "payouts", "retry", "POBIG0", "--batch", "B-BIG")
    assert both.returncode == 2 and "not both" in both.stderr
