"""`settlement demo` end to end, as a user runs it (issue 6's proof), at reduced size.

The demo runs in its own process against the real stack: a mock bank server and
every stage as separate processes. Its JSON summary must add up: every record
accounted for once (ledger or DLQ), every payment in one payout, every payout
answered, booked or returned as the banks' own records say, every statement
received, and the run's namespace dropped afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from settlement.config import CassandraSettings
from settlement.store.session import connect
from tests.conftest import CASSANDRA_PORT, KAFKA

PAYMENTS = int(os.environ.get("SETTLEMENT_DEMO_TEST_PAYMENTS", "1500"))
BANKS = {"MOCKDEFFXXX", "MOCKFRPPXXX", "MOCKNL2AXXX"}


def _run_demo(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLEMENT_")}
    env |= {"SETTLEMENT_KAFKA__BOOTSTRAP_SERVERS": KAFKA,
            "SETTLEMENT_CASSANDRA__PORT": str(CASSANDRA_PORT)}
    summary = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-m", "settlement", "demo", "--payments", str(PAYMENTS), "--seed", "11",
         "--json", str(summary), "--log-dir", str(tmp_path / "demo" / "logs")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=540, check=False)
    assert proc.returncode == 0, (
        f"demo failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc, json.loads(summary.read_text())


@pytest.mark.timeout(600)
def test_demo_summary_accounts_for_every_payment_once(stack: dict[str, Any], tmp_path: Path) -> None:
    proc, r = _run_demo(tmp_path)
    print(f"\ndemo timings: {r['timings_s']}")
    pay, po, bt, bank = r["payments"], r["payouts"], r["batches"], r["bank"]

    # every record sent is accounted for once: recorded, dead-lettered or a skipped redelivery
    assert pay["records_sent"] == PAYMENTS
    assert pay["valid"] + pay["bad"] + pay["redeliveries"] == PAYMENTS
    assert pay["recorded"] == pay["valid"]
    assert pay["dead_lettered"] == pay["bad"] == sum(pay["dlq_reasons"].values()) > 0

    # one pacs.008 per bank and currency (another window's too if payments came late),
    # each sealed once and delivered
    assert bt["count"] == bt["sealed"] == bt["pacs008"] == bt["delivered"] >= 6
    assert bt["count"] == 6 or bt["late_payments"] > 0
    assert {(b["bank"], b["currency"]) for b in r["per_bank"]} == {
        (bic, ccy) for bic in BANKS for ccy in ("EUR", "USD")}
    assert sum(b["payouts"] for b in r["per_bank"]) == po["sent"] > 0

    # every payout answered and final: accepted ones booked, some returned, none doubled
    assert po["accepted"] + po["rejected"] == po["sent"]
    assert sum(po["final_status"].values()) == po["sent"]
    assert set(po["final_status"]) <= {"settled", "rejected", "returned"}
    assert po["settled"] == po["accepted"]
    assert po["returned"] <= po["settled"]
    assert po["rejected"] + po["returned"] > 0, "the seeded faults produced no reject or return"
    assert sum(po["reject_reasons"].values()) == po["rejected"]
    assert set(po["reject_reasons"]) <= {"AC01", "AC04"}
    assert sum(po["return_reasons"].values()) == po["returned"]

    # the banks' own records agree, and nobody was credited twice
    assert bank["transactions"] == po["sent"]
    assert bank["accepted"] == po["accepted"]
    assert bank["returned"] == po["returned"]
    assert bank["credited_more_than_once"] == 0

    # money: what the ledger nets is what the pacs.008s carry; booked and returned within it
    assert set(r["money_minor"]) == {"EUR", "USD"}
    for ccy, m in r["money_minor"].items():
        assert m["ledger_net"] == m["pacs008"] > 0, ccy
        assert m["returned"] <= m["settled"] <= m["pacs008"], ccy

    # one camt.053 per processor account (3 banks x 2 currencies) per closed business day
    st = r["statements"]
    assert st["received"] == st["sent"] > 0 and st["sent"] % 6 == 0
    assert r["parked_bank_messages"] == {}

    # reconciliation: every payout the banks accepted, and every return, matched on a
    # statement, nothing else booked, balances and sequence numbers continuous
    recon = r["reconciliation"]
    assert recon["breaks"] == 0, recon["by_kind"]
    assert recon["matched"] == recon["expected"] - po["rejected"] == po["accepted"] + po["returned"]
    assert recon["days"][0] == r["run"]["settlement_date"] and len(recon["runs"]) == len(recon["days"])

    assert r["checks"] and all(r["checks"].values()), r["problems"]
    assert r["exactly_once"] is True
    assert "exactly once: OK" in proc.stdout

    # the run's namespace was dropped
    session = connect(CassandraSettings(port=CASSANDRA_PORT))
    try:
        keyspace = r["run"]["namespace"].replace("-", "_")
        assert keyspace not in session.cluster.metadata.keyspaces
    finally:
        session.cluster.shutdown()
