"""`settlement reconcile` against the mock bank's real camt.053 statements, on real Cassandra.

Each test pays two payouts (100 and 250 EUR minor units) through a mock bank of its own
(its own BIC, so statements don't chain across tests) on a Monday of its own, injects one
statement fault, lets the bank close its business days, stores the statements as the
inbound stage does, and reconciles: each fault must come out as exactly the right breaks,
with the right amounts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from settlement import bootstrap
from settlement.bank.mockbank.app import create_app
from settlement.bank.mockbank.config import parse
from settlement.domain.batch import Party, PayoutTx, SealedBatch, transaction_ids
from settlement.domain.reconciliation import BreakType, ExpectedBooking, ExpectedKind, Tolerance
from settlement.iso20022.camt053 import parse_camt053
from settlement.iso20022.pacs008 import render_pacs008
from settlement.recon.run import Reconciliation, ReconInputError, ReconRequest
from settlement.store.expected import CassandraExpectedStore
from settlement.store.inbound import CassandraInboundStore
from tests.conftest import Namespace

TOKEN = "recon-token"
PROCESSOR = "DE89370400440532013000"
PROCESSOR_USD = "DE02370400440532013001"
OPEN, OPEN_2 = "DE41370400440000000001", "DE41370400440000000002"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
_weeks = count()


class Day:
    """One test's Monday: a mock bank, the expected payouts, the statements stored."""

    def __init__(self, ns: Namespace, tmp: Path, start_offset_days: int = 0) -> None:
        self.ns = ns
        n = next(_weeks)
        self.bic = f"MOCKDEFF{n:03d}"
        self.monday = date(2027, 1, 4) + timedelta(weeks=n)
        start = datetime.combine(self.monday + timedelta(days=start_offset_days), datetime.min.time(),
                                 UTC).replace(hour=6)
        config = parse({
            "state_dir": str(tmp / "bank"),
            "clock": {"start": start.isoformat(), "follow_real_time": False},
            "banks": [{"bic": self.bic, "token": TOKEN, "timezone": "Europe/Berlin",
                       "processor_accounts": [
                           {"id": PROCESSOR, "currency": "EUR", "balance_minor": 1_000_000},
                           {"id": PROCESSOR_USD, "currency": "USD", "balance_minor": 0}],
                       "accounts": [{"id": OPEN, "currency": "EUR"}, {"id": OPEN_2, "currency": "EUR"}],
                       "faults": {"seed": 1}}],
        }, env={})
        self.bank = TestClient(create_app(config))
        self.session = bootstrap.cassandra(ns.settings)
        self.store = bootstrap.recon_store(ns.settings, self.session)
        self.cursor = 0
        n = self.monday.toordinal()
        self.txs = [(f"PO{n:08d}{i:018d}", account, amount)
                    for i, (account, amount) in enumerate([(OPEN, 100), (OPEN_2, 250)])]

    def e2e(self, i: int) -> str:
        return transaction_ids(self.txs[i][0])[1]

    def pay(self, day: date | None = None) -> None:
        """Send the pacs.008 and record what reconciliation expects, as the batcher does."""
        day = day or self.monday
        payouts = tuple(PayoutTx(
            payout_id=po, instr_id=transaction_ids(po)[0], end_to_end_id=transaction_ids(po)[1],
            uetr=transaction_ids(po)[2], amount_minor=amount, currency="EUR",
            creditor=Party(name=f"Merchant {i}", account_id=account, bic=self.bic),
            remittance="payout", payments=1) for i, (po, account, amount) in enumerate(self.txs))
        msg_id = f"M{day:%Y%m%d}"
        batch = SealedBatch(batch_id=f"B{day}", msg_id=msg_id,
                            created_at=datetime.combine(day, datetime.min.time(), UTC),
                            settlement_date=day, currency="EUR", bank_bic=self.bic,
                            transactions=payouts)
        body = render_pacs008(batch, Party(name="Processor", account_id=PROCESSOR, bic=self.bic))
        assert self.bank.post(f"/banks/{self.bic}/pacs008", content=body, headers=AUTH).status_code == 200
        CassandraExpectedStore(self.session).save_payouts(batch.batch_id, [ExpectedBooking(
            ExpectedKind.PAYOUT, self.bic, day, "EUR", tx.end_to_end_id, tx.amount_minor,
            msg_id, f"merchant-{i}", tx.amount_minor + 10, 10) for i, tx in enumerate(payouts)])

    def fault(self, fault: str, **params: Any) -> None:
        r = self.bank.post(f"/admin/banks/{self.bic}/statement-faults",
                           json={"account": PROCESSOR, "fault": fault, **params})
        assert r.status_code == 200, r.text

    def close_days(self, days: int) -> list[bytes]:
        """Advance the bank through `days` business days; store the statements it sends."""
        assert self.bank.post("/admin/clock", json={"advance_days": days}).status_code == 200
        r = self.bank.get(f"/banks/{self.bic}/messages", params={"after": self.cursor, "limit": 1000},
                          headers=AUTH)
        bodies = []
        inbound = CassandraInboundStore(self.session)
        for m in r.json()["messages"]:
            self.cursor = max(self.cursor, int(m["cursor"]))
            if m["type"].startswith("camt.053"):
                body = m["xml"].encode()
                stmt = parse_camt053(body)
                inbound.save_statement(self.bic, stmt.account_id, stmt.to_date, stmt.statement_id,
                                       stmt.msg_id, stmt.electronic_seq_nb, body)
                bodies.append(body)
        return bodies

    def reconcile(self, day: date | None = None, **kw: Any) -> Any:
        request = ReconRequest(day=day or self.monday, tolerance=kw.pop("tolerance", Tolerance()), **kw)
        return Reconciliation(self.store, request).run()

    def close(self) -> None:
        self.bank.close()
        self.session.cluster.shutdown()


@pytest.fixture
def day(ns_module: Namespace, tmp_path: Path) -> Iterator[Day]:
    d = Day(ns_module, tmp_path)
    yield d
    d.close()


def test_a_weekend_settlement_is_reconciled_from_mondays_statement(ns_module: Namespace,
                                                                    tmp_path: Path) -> None:
    day = Day(ns_module, tmp_path, start_offset_days=-3)  # the bank's clock starts on Friday
    try:
        saturday, friday = day.monday - timedelta(days=2), day.monday - timedelta(days=3)
        day.close_days(1)  # Friday's statement
        day.pay(saturday)
        day.close_days(3)  # booked on Saturday; Monday's statement covers Saturday to Monday
        out = day.reconcile(saturday)
        assert _breaks(out) == []
        assert (out.record.matched_count, out.record.expected_count) == (2, 2)
        assert _breaks(day.reconcile(day.monday)) == []
        assert _breaks(day.reconcile(friday)) == []
    finally:
        day.close()


def _breaks(outcome: Any) -> list[tuple[str, str, int | None, int | None]]:
    return [(b.type.value, b.end_to_end_id, b.expected_minor, b.booked_minor)
            for b in outcome.result.breaks]


def test_a_clean_day_reports_zero_breaks_and_stores_the_run(day: Day) -> None:
    day.pay()
    day.close_days(1)
    out = day.reconcile()
    assert _breaks(out) == []
    assert (out.record.status, out.record.matched_count, out.record.expected_count) == ("clean", 2, 2)
    stored = day.store.run(out.record.run_id)
    assert stored is not None and stored.digest == out.record.digest and stored.breaks == []
    assert sorted(line.split("|")[1] for line in day.store.matched_lines(stored)) == sorted(
        [day.e2e(0), day.e2e(1)])
    summary = [r for r in day.store.daily_summary(day.monday) if r["currency"] == "EUR"]
    assert [(r["expected_minor"], r["booked_minor"], r["matched_count"], r["breaks"])
            for r in summary] == [(350, -350, 2, 0)]
    merchants = {r["merchant_id"]: r for r in day.store.merchant_report(day.monday, [day.bic])}
    assert (merchants["merchant-1"]["gross_minor"], merchants["merchant-1"]["fees_minor"],
            merchants["merchant-1"]["net_paid_minor"]) == (260, 10, 250)


def test_missing_entry_is_missing_at_bank_and_a_balance_break(day: Day) -> None:
    day.pay()
    day.fault("missing_entry", end_to_end_id=day.e2e(0))
    day.close_days(1)
    closing = 1_000_000 - 350
    assert _breaks(day.reconcile()) == [
        ("balance_mismatch", "", closing, closing + 100),
        ("missing_at_bank", day.e2e(0), 100, None)]


def test_altered_amount_is_an_amount_mismatch(day: Day) -> None:
    day.pay()
    day.fault("altered_amount", end_to_end_id=day.e2e(1), delta_minor=7)
    day.close_days(1)
    closing = 1_000_000 - 350
    assert _breaks(day.reconcile()) == [
        ("amount_mismatch", day.e2e(1), 250, 257),
        ("balance_mismatch", "", closing, closing - 7)]
    # a tolerance of 7 minor units accepts the entry (the balance break stays: it is the bank's file)
    assert [b[0] for b in _breaks(day.reconcile(tolerance=Tolerance(amount_minor=7)))] == [
        "balance_mismatch"]


def test_duplicated_entry_is_a_duplicate_at_bank(day: Day) -> None:
    day.pay()
    day.fault("duplicated_entry", end_to_end_id=day.e2e(0))
    day.close_days(1)
    closing = 1_000_000 - 350
    assert _breaks(day.reconcile()) == [
        ("balance_mismatch", "", closing, closing - 100),
        ("duplicate_at_bank", day.e2e(0), 100, 100)]


def test_unexpected_entry_is_unexpected_at_bank(day: Day) -> None:
    day.pay()
    day.fault("unexpected_entry", amount_minor=4242)
    day.close_days(1)
    assert _breaks(day.reconcile()) == [("unexpected_at_bank", "", None, 4242)]


def test_next_day_booking_is_a_value_date_break_not_a_missing_one(day: Day) -> None:
    day.pay()
    day.fault("next_day_booking", end_to_end_id=day.e2e(1))
    day.close_days(2)
    out = day.reconcile()
    assert _breaks(out) == [("value_date_mismatch", day.e2e(1), 250, 250)]
    b = out.result.breaks[0]
    assert (b.expected_date, b.booked_date) == (day.monday, day.monday + timedelta(days=1))
    # Tuesday's run sees the same booking from the other side: timing, not unexpected
    tuesday = day.reconcile(day.monday + timedelta(days=1))
    assert _breaks(tuesday) == [("value_date_mismatch", day.e2e(1), 250, 250)]


def test_a_skipped_statement_is_a_statement_gap(day: Day) -> None:
    day.pay()
    day.close_days(1)  # Monday's statement
    day.fault("skip_statement")
    day.close_days(2)  # Tuesday's is never sent; Wednesday's is
    wednesday = day.monday + timedelta(days=2)
    out = day.reconcile(wednesday)
    gaps = [b for b in out.result.breaks if b.account_id == PROCESSOR]
    assert [(b.type, b.detail) for b in gaps] == [
        (BreakType.STATEMENT_GAP, f"missing sequence 1 -> 3, days {day.monday} -> {wednesday}")]


def test_rerun_gives_the_same_result_and_supersedes_without_deleting(day: Day) -> None:
    day.pay()
    day.fault("altered_amount", end_to_end_id=day.e2e(0), delta_minor=1)
    day.close_days(1)
    first, second = day.reconcile(), day.reconcile()
    assert first.record.digest == second.record.digest
    assert _breaks(first) == _breaks(second)
    runs = day.store.runs_of(day.monday)
    assert [r["run_id"] for r in runs][:2] == [second.record.run_id, first.record.run_id]
    assert day.store.run(first.record.run_id) is not None  # the old run stays


def _cli(ns: Namespace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "settlement", "reconcile", *args],
                          env=ns.env, capture_output=True, text=True, timeout=120, check=False)


def test_cli_exit_codes_json_and_diff(day: Day, tmp_path: Path) -> None:
    day.pay()
    day.fault("missing_entry", end_to_end_id=day.e2e(1))
    day.close_days(1)
    broken = _cli(day.ns, "--date", day.monday.isoformat(), "--format", "json")
    assert broken.returncode == 1, broken.stderr
    report = json.loads(broken.stdout)
    assert report["run"]["break_counts"] == {"balance_mismatch": 1, "missing_at_bank": 1}
    prom = tmp_path / "recon.prom"
    assert _cli(day.ns, "--date", day.monday.isoformat(), "--format", "csv",
                "--metrics-textfile", str(prom)).returncode == 1
    text = prom.read_text()
    assert 'settlement_reconciliation_breaks_total{type="missing_at_bank"} 1.0' in text
    assert 'settlement_reconciliation_breaks_total{type="amount_mismatch"} 0.0' in text
    table = _cli(day.ns, "--date", day.monday.isoformat())
    assert table.returncode == 1 and "missing_at_bank" in table.stdout
    clean = _cli(day.ns, "--date", day.monday.isoformat(), "--account", PROCESSOR_USD,
                 "--format", "json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    clean_run = json.loads(clean.stdout)["run"]
    assert (clean_run["status"], clean_run["expected"]) == ("clean", 0)
    same = _cli(day.ns, "diff", report["run"]["run_id"], report["run"]["run_id"])
    assert same.returncode == 0 and "same result" in same.stdout, same.stdout + same.stderr
    other = _cli(day.ns, "diff", report["run"]["run_id"], clean_run["run_id"], "--format", "json")
    assert other.returncode == 1
    assert sorted(b["type"] for b in json.loads(other.stdout)["gone"]) == [
        "balance_mismatch", "missing_at_bank"]


@pytest.mark.parametrize(("name", "body", "code"), [
    ("malformed.xml", b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.053.001.08'><BkToCstmrStmt>"
     b"<GrpHdr><MsgId>X</MsgId><CreDtTm>2027-01-04T00:00:00</CreDtTm></GrpHdr><Stmt></Oops>",
     "malformed"),
    ("xxe.xml", b"<?xml version='1.0'?><!DOCTYPE d [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"
     b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.053.001.08'>&e;</Document>",
     "dtd_forbidden"),
    ("wrong_version.xml", b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08'>"
     b"<FIToFICstmrCdtTrf/></Document>", "wrong_message"),
])
def test_a_refused_statement_exits_2_and_stores_nothing(day: Day, tmp_path: Path, name: str,
                                                        body: bytes, code: str) -> None:
    path = tmp_path / name
    path.write_bytes(body)
    before = day.store.runs_of(day.monday)
    result = _cli(day.ns, "--date", day.monday.isoformat(), "--statement", str(path), "--bank", day.bic)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "refused" in result.stderr and code in result.stderr
    assert day.store.runs_of(day.monday) == before


def test_a_truncated_statement_is_refused_after_entries_were_read(day: Day, tmp_path: Path) -> None:
    day.pay()
    [eur, _usd] = day.close_days(1)
    path = tmp_path / "truncated.xml"
    path.write_bytes(eur[: eur.rindex(b"</Ntry>") + 3])  # cut inside the last entry
    with pytest.raises(ReconInputError, match="malformed"):
        day.reconcile(files=(path,))
    assert day.store.runs_of(day.monday) == []


def test_statement_files_reconcile_like_the_stored_ones(day: Day, tmp_path: Path) -> None:
    day.pay()
    day.fault("duplicated_entry", end_to_end_id=day.e2e(1))
    files = []
    for i, body in enumerate(day.close_days(1)):
        files.append(tmp_path / f"stmt-{i}.xml")
        files[-1].write_bytes(body)
    from_files = day.reconcile(files=tuple(files), dry_run=True)
    from_store = day.reconcile(dry_run=True)
    assert _breaks(from_files) == _breaks(from_store) != []
    assert from_files.record.digest == from_store.record.digest
    assert day.store.runs_of(day.monday) == []  # dry runs store nothing
