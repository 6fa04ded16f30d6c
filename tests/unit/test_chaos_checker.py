"""The independent checker finds each kind of violation it claims to find.

A consistent little world (ledger, payout rows, payouts, pacs.008s, bank records,
transitions) passes; each test then breaks one thing and expects the named invariant.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from types import SimpleNamespace as Row
from typing import Any

import pytest

from settlement.chaos import checker as ck

NS = "urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08"


@dataclass
class Msg:
    body: bytes
    hdrs: list[tuple[str, bytes]] = field(default_factory=list)

    def value(self) -> bytes:
        return self.body

    def headers(self) -> list[tuple[str, bytes]]:
        return self.hdrs

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0


def pacs008(msg_id: str, txs: list[tuple[str, str]], ccy: str = "EUR", nb: str | None = None,
            ctrl: str | None = None, total: str | None = None) -> bytes:
    amounts = [a for _e, a in txs]
    s = f"{sum(int(a.replace('.', '')) for a in amounts) / 100:.2f}"
    body = "".join(
        f"<CdtTrfTxInf><PmtId><InstrId>I</InstrId><EndToEndId>{e}</EndToEndId></PmtId>"
        f"<IntrBkSttlmAmt Ccy=\"{ccy}\">{a}</IntrBkSttlmAmt></CdtTrfTxInf>" for e, a in txs)
    return (f"<Document xmlns=\"{NS}\"><FIToFICstmrCdtTrf><GrpHdr><MsgId>{msg_id}</MsgId>"
            f"<NbOfTxs>{nb or len(txs)}</NbOfTxs><CtrlSum>{ctrl or s}</CtrlSum>"
            f"<TtlIntrBkSttlmAmt Ccy=\"{ccy}\">{total or s}</TtlIntrBkSttlmAmt></GrpHdr>"
            f"{body}</FIToFICstmrCdtTrf></Document>").encode()


def world() -> dict[str, Any]:
    """p1+p2 -> payout A (net 1800+900), p3 -> payout B (net 450); one batch, one pacs.008."""
    ledger = {"p1": (2000, 200, "EUR", "m1"), "p2": (1000, 100, "EUR", "m1"),
              "p3": (500, 50, "EUR", "m2")}
    rows = [Row(batch_id="b1", payout_id="A", payment_id="p1", amount_minor=2000, fee_minor=200),
            Row(batch_id="b1", payout_id="A", payment_id="p2", amount_minor=1000, fee_minor=100),
            Row(batch_id="b1", payout_id="B", payment_id="p3", amount_minor=500, fee_minor=50)]
    batches = {"b1": Row(batch_id="b1", status="sealed", bank_bic="BANKDEFF", currency="EUR",
                         msg_id="M1")}
    payouts = {"A": Row(payout_id="A", end_to_end_id="EA", amount_minor=2700, status="settled",
                        batch_id="b1", currency="EUR"),
               "B": Row(payout_id="B", end_to_end_id="EB", amount_minor=450, status="rejected",
                        batch_id="b1", currency="EUR")}
    msgs = [Msg(pacs008("M1", [("EA", "27.00"), ("EB", "4.50")]))]
    bank = [{"end_to_end_id": "EA", "msg_id": "M1", "amount_minor": 2700, "decision": "ACSP",
             "credited_count": 1, "returned": False},
            {"end_to_end_id": "EB", "msg_id": "M1", "amount_minor": 450, "decision": "RJCT",
             "credited_count": 0, "returned": False}]
    transitions = {"A": [(1, "sent"), (2, "accepted"), (3, "settled")],
                   "B": [(1, "sent"), (2, "rejected")]}
    merchants = {("m1", "EUR"): "BANKDEFF", ("m2", "EUR"): "BANKDEFF"}
    return dict(ledger=ledger, rows=rows, batches=batches, payouts=payouts, msgs=msgs, bank=bank,
                transitions=transitions, merchants=merchants)


def run(w: dict[str, Any]) -> ck.Verdict:
    v = ck.Verdict()
    sent = ck._check_pacs008(v, w["msgs"])
    ck._check_payouts(v, w["ledger"], w["rows"], w["batches"], w["payouts"], sent, w["merchants"])
    ck._check_bank(v, w["payouts"], sent, w["bank"])
    ck._check_transitions(v, w["payouts"], w["transitions"])
    return v


def broken(change: Any) -> list[str]:
    w = copy.deepcopy(world())
    change(w)
    return run(w).violations


def test_a_consistent_world_passes() -> None:
    v = run(world())
    assert v.violations == []
    assert v.figures["pacs008"] == 1 and v.figures["placed"] == 3


@pytest.mark.parametrize(("change", "invariant", "words"), [
    (lambda w: w["rows"].append(Row(batch_id="b2", payout_id="C", payment_id="p3",
                                    amount_minor=500, fee_minor=50)),
     "I2", "payment in more than one payout"),
    (lambda w: w["rows"].pop(), "I2", "ledger payment in no payout"),
    (lambda w: setattr(w["payouts"]["A"], "amount_minor", 2701), "I3", "net of its payments"),
    (lambda w: w["msgs"].append(Msg(pacs008("M2", [("EA", "27.00")]))), "I2",
     "more than one sent pacs.008"),
    (lambda w: w["msgs"].append(Msg(w["msgs"][0].body)), "I2", "MsgId published more than once"),
    (lambda w: w["msgs"].__setitem__(0, Msg(pacs008("M1", [("EA", "27.00"), ("EB", "4.50")],
                                                    ctrl="31.51"))),
     "I3", "NbOfTxs/CtrlSum"),
    (lambda w: w["msgs"].__setitem__(0, Msg(pacs008("M1", [("EA", "27.0"), ("EB", "4.50")],
                                                    total="31.50"))),
     "I7", "currency's decimals"),
    (lambda w: w["bank"][0].__setitem__("credited_count", 2), "I2", "credited more than once"),
    (lambda w: w["bank"].append({**w["bank"][0], "msg_id": "M9"}), "I2", "more than once (two MsgIds)"),
    (lambda w: w["bank"].append({**w["bank"][0], "end_to_end_id": "EZ"}), "I2", "never sent"),
    (lambda w: w["bank"].pop(), "I2", "never received by its bank"),
    (lambda w: w["bank"][0].__setitem__("returned", True), "I5", "bank's own record"),
    (lambda w: w["transitions"]["A"].append((4, "rejected")), "I5", "forbids"),
    (lambda w: w["transitions"]["B"].append((3, "exploded")), "I5", "outside the state machine"),
    (lambda w: setattr(w["batches"]["b1"], "status", "open"), "I2", "still open"),
    (lambda w: w["payouts"].pop("B"), "I2", "sealed payout without its payout record"),
    (lambda w: w["ledger"].__setitem__("p4", (100, 10, "EUR", "m2")), "I3", "ledger's net"),
])
def test_each_break_is_found_and_named(change: Any, invariant: str, words: str) -> None:
    found = broken(change)
    assert any(line.startswith(invariant) and words in line for line in found), found


def test_an_open_batch_is_said_once_not_again_for_each_payout_it_would_seal() -> None:
    def never_sealed(w: dict[str, Any]) -> None:
        w["batches"]["b1"].status = "open"
        w["payouts"].clear()
        w["msgs"].clear()

    found = broken(never_sealed)
    assert any("batch still open" in line and "b1" in line for line in found), found
    assert not any("payout record" in line or "no sent pacs.008" in line for line in found), found


def test_ledger_items_and_dlq_against_what_was_sent() -> None:
    sent = [ck.Sent("p1", "ledger", b'{"a":1}', 2000, 200, "EUR"),
            ck.Sent("p1", "duplicate", b'{"a":1}', 2000, 200, "EUR"),
            ck.Sent("", "dlq", b"not json"),
            ck.Sent("p2", "ledger", b'{"b":1}', 1000, 100, "EUR")]
    valid = {s.payment_id: s for s in sent if s.expect == "ledger"}
    v = ck.Verdict()
    ck._check_ledger(v, valid, {"p1": (2000, 200, "EUR", "m"), "p2": (1000, 100, "EUR", "m")}, [])
    ck._check_items(v, valid, [Msg(b'{"payment_id": "p1"}'), Msg(b'{"payment_id": "p2"}')])
    ck._check_dlq(v, sent, [Msg(b"not json", [("dlq.reason", b"not_json")])])
    assert v.violations == []

    v = ck.Verdict()
    ck._check_ledger(v, valid, {"p1": (2000, 201, "EUR", "m")}, [Row(payment_id="p9")])
    ck._check_items(v, valid, [Msg(b'{"payment_id": "p1"}')] * 2)
    ck._check_dlq(v, sent, [Msg(b"not json"), Msg(b"not json", [("dlq.reason", b"x")])])
    text = "\n".join(v.violations)
    for words in ("I1 valid payment without its ledger row: 1 e.g. ['p2']",
                  "I1/I7 ledger amount", "I4 payment still parked", "I1 item published more than once",
                  "I1 valid payment without its item", "I4 record dead-lettered more than sent",
                  "I4 dead letter without its reason header"):
        assert words in text, text


def test_amounts_need_exactly_the_currency_decimals() -> None:
    assert ck.minor("12.34", 2) == 1234
    assert ck.minor("12.3", 2) is None
    assert ck.minor("12", 2) is None
    assert ck.minor("1200", 0) == 1200
    assert ck.minor("12.345", 3) == 12345
    assert ck.minor("1.2e3", 2) is None

