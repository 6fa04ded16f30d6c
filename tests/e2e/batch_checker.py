"""I2/I3 checker: reads bank.outbound (read_committed) and parses every pacs.008.

Independent of the batcher's code: it re-derives every sum from the ledger and
the per-payment rows, and compares them with what the bank would receive.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from settlement.config import Settings
from settlement.iso20022.pacs008 import parse_pacs008_summary
from settlement.iso20022.xsd import validate
from settlement.store.session import connect
from tests.e2e.checker import Report
from tests.integration.helpers import committed


def check_batches(settings: Settings, expect_sealed: bool = True) -> Report:
    rep = Report()
    msgs = committed(settings, settings.topics.bank_outbound)
    by_msg: dict[str, bytes] = {}
    dup_msgs = []
    for m in msgs:
        xml = m.value()
        validate(xml, "pacs.008.001.08")  # raises on any invalid message
        s = parse_pacs008_summary(xml)
        if s.msg_id in by_msg:
            dup_msgs.append(s.msg_id)
        by_msg[s.msg_id] = xml
    if dup_msgs:
        rep.fail("I2 a pacs.008 was published more than once", dup_msgs)
    rep.figures.update(messages=len(msgs))

    e2e_amount: dict[str, int] = {}
    sent_by_ccy: Counter[str] = Counter()
    e2e_seen: Counter[str] = Counter()
    for msg_id, xml in by_msg.items():
        s = parse_pacs008_summary(xml)
        total = sum(t.amount_minor for t in s.transactions)
        if not (s.nb_of_txs == len(s.transactions) and s.ctrl_sum_minor == total
                and s.total_minor == total):
            rep.fail("I3 group header sums differ from the transactions", [msg_id])
        for t in s.transactions:
            e2e_seen[t.end_to_end_id] += 1
            e2e_amount[t.end_to_end_id] = t.amount_minor
            sent_by_ccy[s.currency] += t.amount_minor
    twice = [e for e, n in e2e_seen.items() if n > 1]
    if twice:
        rep.fail("I2 a payout (EndToEndId) is in more than one sent batch", twice)

    session = connect(settings.cassandra, keyspace=settings.cassandra.keyspace)
    try:
        ledger = {r.payment_id: (r.amount_minor, r.fee_minor, r.currency) for r in session.execute(
            "SELECT payment_id, amount_minor, fee_minor, currency FROM ledger_buckets")}
        rows = list(session.execute(
            "SELECT batch_id, payout_id, payment_id, amount_minor, fee_minor, status, msg_id "
            "FROM batches"))
        payouts = {r.payout_id: r for r in session.execute(
            "SELECT payout_id, end_to_end_id, amount_minor, status, batch_id FROM payouts")}
    finally:
        session.cluster.shutdown()
    # '~attempt-N' rows stand for a retried payout's new attempt, not for a payment
    pay_rows = [r for r in rows if r.payment_id is not None and not r.payment_id.startswith("~")]
    placed = Counter(r.payment_id for r in pay_rows)
    rep.figures.update(ledger=len(ledger), placed=len(placed), payouts=len(payouts))
    twice_paid = [p for p, n in placed.items() if n > 1]
    if twice_paid:
        rep.fail("I2 a payment is in more than one payout", twice_paid)
    unplaced = [p for p in ledger if p not in placed]
    if unplaced:
        rep.fail("I2 a ledger payment is in no payout", unplaced)
    wrong = [r.payment_id for r in pay_rows if ledger.get(r.payment_id, (None, None))[:2]
             != (r.amount_minor, r.fee_minor)]
    if wrong:
        rep.fail("I3 batch row amounts differ from the ledger", wrong)

    status = {r.batch_id: r.status for r in rows if r.payment_id is None or r.status}
    net_by_payout: dict[str, int] = defaultdict(int)
    batch_of: dict[str, set[str]] = defaultdict(set)
    for r in pay_rows:
        net_by_payout[r.payout_id] += r.amount_minor - r.fee_minor
        batch_of[r.payout_id].add(r.batch_id)
    split = [p for p, b in batch_of.items() if len(b) > 1]
    if split:
        rep.fail("I2 a payout spans two batches", split)
    if expect_sealed:
        open_ = [b for b, s in status.items() if s != "sealed"]
        if open_:
            rep.fail("a batch is still open", open_)
        unsealed = set(open_)
        for pid, net in net_by_payout.items():
            if batch_of[pid] & unsealed:
                continue  # its payout is written at the seal: the open batch is the violation
            po = payouts.get(pid)
            if po is None:
                rep.fail("I2 a sealed payout has no payout record", [pid])
                continue
            if po.amount_minor != net:
                rep.fail("I3 payout amount differs from the net of its payments", [pid])
            if net > 0:
                if e2e_seen.get(po.end_to_end_id) != 1:
                    rep.fail("I2 a payout is in no sent pacs.008", [pid])
                elif e2e_amount[po.end_to_end_id] != net:
                    rep.fail("I3 pacs.008 amount differs from the payout's net", [pid])
        ledger_by_ccy: Counter[str] = Counter()
        for a, f, c in ledger.values():
            ledger_by_ccy[c] += a - f
        rep.figures.update({f"sent_{c}": v for c, v in sent_by_ccy.items()})
        for c in set(ledger_by_ccy) | set(sent_by_ccy):
            if sent_by_ccy[c] != ledger_by_ccy[c]:
                rep.violations.append(
                    f"I3 {c}: sent {sent_by_ccy[c]} != ledger net {ledger_by_ccy[c]}")
    return rep
