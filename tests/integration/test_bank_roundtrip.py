"""Payments to pacs.008 to the mock banks and back: every payout ends in the status the
bank's own records say, through the real gateway and inbound stages."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from settlement import loadgen
from settlement.config import load_settings
from tests.conftest import InProcessWorker, Namespace, wait_until
from tests.e2e.pipeline import minute_calendar_env, next_minute, open_batches
from tests.integration.helpers import committed, payout_statuses, produce_raw, register
from tests.integration.mockbank_proc import advance, bank_env, bank_records, mock_bank


def payout_status(ns: Namespace) -> dict[str, tuple[str, str, int]]:
    """Every payout's status, or {} while a batch is open or its payout rows are still
    being written (they follow the commit that publishes its pacs.008): a wait on
    "all answered" must not pass on the batches written so far."""
    return {} if open_batches(ns.settings) else payout_statuses(ns.settings)


@pytest.mark.timeout(400)
def test_payouts_follow_the_banks_answers_and_bookings(
    ns: Namespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = {"MOCKDEFFXXX": {"reject_rate": 0.15}}
    with mock_bank(tmp_path, faults) as url:
        for k, v in {**minute_calendar_env(1.0), **bank_env(url)}.items():
            monkeypatch.setenv(k, v)
        ns.settings = load_settings()
        register(ns.settings, loadgen.merchants(40, 3, ["EUR", "USD"], seed=3, per_payment_share=0.5))
        start = next_minute() - timedelta(minutes=3)
        manifest = list(loadgen.generate(600, merchants_n=40, currencies=["EUR", "USD"], seed=3,
                                         start=start, span=timedelta(minutes=1, seconds=50)))
        produce_raw(ns.settings, [(r.key, r.value) for r in manifest])
        workers = [InProcessWorker(ns.build_worker(role, instance_id=f"{role}-0"))
                   for role in ("ledger", "batcher", "gateway", "inbound")]
        for w in workers:
            w.__enter__()
        try:
            # 1. every payout gets the bank's answer (a booking may already have followed:
            #    the bank books at once when today's booking time has passed)
            wait_until(lambda: (st := payout_status(ns)) != {} and all(
                v[0] != "sent" for v in st.values()), 180, "pacs.002 answers applied")
            # 2. the bank books accepted payouts when its clock reaches the booking time
            advance(url, advance_days=1)
            wait_until(lambda: all(v[0] in ("settled", "rejected", "nothing_to_pay")
                                   for v in payout_status(ns).values()), 120, "bookings applied")
        finally:
            for w in workers:
                w.__exit__(None, None, None)
        ours = payout_status(ns)
        theirs = bank_records(url)
    sent = {e2e: v for e2e, v in ours.items() if v[0] != "nothing_to_pay"}
    assert set(sent) == set(theirs), "a payout the bank never saw, or a transfer we never sent"
    for e2e, (status, payout_id, amount) in sent.items():
        bank = theirs[e2e]
        assert bank["amount_minor"] == amount, payout_id
        assert bank["credited_count"] <= 1, f"{payout_id} credited twice"
        want = "settled" if bank["decision"] in ("ACSP", "ACCP", "ACSC") else "rejected"
        assert status == want, (payout_id, status, bank)
    statuses = Counter(v[0] for v in sent.values())
    assert statuses["rejected"] > 0 and statuses["settled"] > 0, statuses
    events = Counter(orjson.loads(m.value())["type"]
                     for m in committed(ns.settings, ns.settings.topics.events))
    assert events["payout.rejected"] == statuses["rejected"]
    assert events["payout.settled"] == statuses["settled"] == events["payout.accepted"]
