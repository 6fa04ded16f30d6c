"""Mock bank intake: auth, FF01 for bad files, per-reason rejects, seeded decisions, duplicates."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from settlement.bank.mockbank.app import create_app
from settlement.iso20022.pacs002 import parse_pacs002
from tests.unit.test_mockbank_support import (
    AUTH,
    BIC,
    BLOCKED,
    CLOSED,
    OPEN,
    OPEN_2,
    UNKNOWN,
    advance,
    client,
    make_config,
    outbox,
    pacs008,
    send,
)


def _statuses(body: bytes) -> list[tuple[str, str | None]]:
    return [(t.status, t.reason) for t in parse_pacs002(body, validate_schema=True).transactions]


def test_requests_without_the_right_bearer_token_are_refused(tmp_path: Path) -> None:
    c = client(tmp_path)
    body = pacs008([(OPEN, 100)])
    assert c.post(f"/banks/{BIC}/pacs008", content=body).status_code == 401
    assert c.post(f"/banks/{BIC}/pacs008", content=body,
                  headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get(f"/banks/{BIC}/messages").status_code == 401
    assert c.post("/banks/NOPEDEFFXXX/pacs008", content=body, headers=AUTH).status_code == 404
    assert send(c, body).status_code == 200
    assert c.get(f"/admin/banks/{BIC}/transactions").json()[0]["decision"] == "ACSP"


def test_a_body_over_the_limit_gets_413_and_nothing_is_recorded(tmp_path: Path) -> None:
    c = client(tmp_path)
    r = c.post(f"/banks/{BIC}/pacs008", content=b"<" * (10 * 1024 * 1024 + 1), headers=AUTH)
    assert r.status_code == 413
    assert outbox(c) == []


def test_an_xsd_invalid_or_unparseable_file_gets_a_group_rjct_ff01(tmp_path: Path) -> None:
    c = client(tmp_path)
    invalid = pacs008([(OPEN, 100)]).replace(b"<ChrgBr>SLEV</ChrgBr>", b"<ChrgBr>NOPE</ChrgBr>")
    for body in (invalid, b"not xml at all", b"<?xml version='1.0'?><!DOCTYPE x []><x/>"):
        r = send(c, body)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
        report = parse_pacs002(r.content, validate_schema=True)
        assert (report.group_status, report.group_reason, report.transactions) == ("RJCT", "FF01", ())
    assert parse_pacs002(send(c, invalid).content).orgnl_msg_id.startswith("M")
    assert c.get(f"/admin/banks/{BIC}/transactions").json() == []


def test_each_account_problem_gets_its_reason(tmp_path: Path) -> None:
    c = client(tmp_path)
    r = send(c, pacs008([(OPEN, 100), (UNKNOWN, 100), (CLOSED, 100), (BLOCKED, 100)]))
    assert _statuses(r.content) == [("ACSP", None), ("RJCT", "AC01"), ("RJCT", "AC04"), ("RJCT", "AC06")]
    other_bank = send(c, pacs008([(OPEN, 100)], msg="2", creditor_bic="OTHRDEFFXXX"))
    assert _statuses(other_bank.content) == [("RJCT", "RC01")]


def test_a_batch_the_processor_account_cannot_cover_is_rejected_am04_from_the_first_short_tx(
        tmp_path: Path) -> None:
    c = client(tmp_path)  # the EUR processor account holds 1_000_000
    r = send(c, pacs008([(OPEN, 600_000), (OPEN_2, 500_000), (OPEN, 1)]))
    assert _statuses(r.content) == [("ACSP", None), ("RJCT", "AM04"), ("RJCT", "AM04")]
    # funds reserved by accepted, unsettled transactions count too
    assert _statuses(send(c, pacs008([(OPEN, 400_001)], msg="2")).content) == [("RJCT", "AM04")]
    assert _statuses(send(c, pacs008([(OPEN, 400_000)], msg="3")).content) == [("ACSP", None)]


def test_unknown_accounts_are_opened_when_the_bank_accepts_them(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    bank = config.banks[0].model_copy(update={"accept_unknown_accounts": True})
    c = TestClient(create_app(config.model_copy(update={"banks": (bank,)})))
    assert _statuses(send(c, pacs008([(UNKNOWN, 100)])).content) == [("ACSP", None)]
    advance(c, advance_days=1)
    balances = {a["id"]: a["balance_minor"] for a in c.get(f"/admin/banks/{BIC}/accounts").json()}
    assert balances[UNKNOWN] == 100


def test_random_rejects_are_a_function_of_seed_msgid_and_end_to_end_id(tmp_path: Path) -> None:
    txs = [(OPEN, 10)] * 40
    runs = [_statuses(send(client(tmp_path / str(i), reject_rate=0.5), pacs008(txs)).content)
            for i in range(2)]
    assert runs[0] == runs[1]
    reasons = {reason for status, reason in runs[0] if status == "RJCT"}
    assert 5 < sum(status == "RJCT" for status, _ in runs[0]) < 35
    assert reasons <= {"AC01", "AC04", "AC06", "AM04", "BE04", "RC01"}
    other_seed = _statuses(send(client(tmp_path / "s", reject_rate=0.5, seed=8), pacs008(txs)).content)
    assert other_seed != runs[0]


def test_a_resent_msgid_gets_the_same_pacs002_bytes_with_repeat(tmp_path: Path) -> None:
    c = client(tmp_path, duplicate_msgid="repeat")
    body = pacs008([(OPEN, 100), (UNKNOWN, 5)])
    first, second = send(c, body).content, send(c, body).content
    assert first == second
    assert len(outbox(c)) == 1  # the repeat is the same message, not a new one


def test_a_resent_msgid_gets_a_group_rjct_du01_with_refuse(tmp_path: Path) -> None:
    c = client(tmp_path, duplicate_msgid="refuse")
    body = pacs008([(OPEN, 100)])
    assert _statuses(send(c, body).content) == [("ACSP", None)]
    report = parse_pacs002(send(c, body).content, validate_schema=True)
    assert (report.group_status, report.group_reason) == ("RJCT", "DU01")
    assert len(outbox(c)) == 2


def test_no_transaction_is_ever_credited_twice_whatever_is_resent(tmp_path: Path) -> None:
    c = client(tmp_path)
    body = pacs008([(OPEN, 100), (OPEN_2, 200)])
    for _ in range(3):
        send(c, body)
    # the same EndToEndIds under a new MsgId are duplicates (AM05), not new credits
    again = send(c, pacs008([(OPEN, 100), (OPEN_2, 200)], msg="other", e2e_prefix="1"))
    assert _statuses(again.content) == [("RJCT", "AM05"), ("RJCT", "AM05")]
    for _ in range(3):
        advance(c, advance_days=1)
        send(c, body)
    txs = c.get(f"/admin/banks/{BIC}/transactions").json()
    assert max(t["credited_count"] for t in txs) == 1
    assert sum(t["credited_count"] for t in txs) == 2
    balances = {a["id"]: a["balance_minor"] for a in c.get(f"/admin/banks/{BIC}/accounts").json()}
    assert (balances[OPEN], balances[OPEN_2]) == (100, 200)


def test_a_header_that_does_not_match_the_transactions_rejects_the_group(tmp_path: Path) -> None:
    c = client(tmp_path)
    body = pacs008([(OPEN, 100), (OPEN_2, 200)])
    wrong_count = body.replace(b"<NbOfTxs>2</NbOfTxs>", b"<NbOfTxs>3</NbOfTxs>")
    wrong_sum = body.replace(b"<CtrlSum>3.00</CtrlSum>", b"<CtrlSum>3.01</CtrlSum>")
    for bad, reason in ((wrong_count, "AM18"), (wrong_sum, "AM10")):
        report = parse_pacs002(send(c, bad).content, validate_schema=True)
        assert (report.group_status, report.group_reason) == ("RJCT", reason)
    # the MsgId was not consumed: the corrected file is processed
    assert _statuses(send(c, body).content) == [("ACSP", None), ("ACSP", None)]


def test_a_currency_without_a_processor_account_is_rejected_am03(tmp_path: Path) -> None:
    c = client(tmp_path)
    assert _statuses(send(c, pacs008([(OPEN, 100)], currency="GBP")).content) == [("RJCT", "AM03")]
