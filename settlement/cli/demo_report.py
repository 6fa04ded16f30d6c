"""The demo's summary: what every stage did, checked against what was sent.

`collect` reads the run's namespace (ledger, batches, payouts, statements), the DLQ
topic and the banks' own records, and returns a JSON-able report with one boolean per
check; `render` prints it. The checks would catch a payment lost or doubled at any
stage: in the ledger, in a payout, in a pacs.008, or at a bank.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from cassandra.cluster import Session
from rich.table import Table

from settlement import loadgen
from settlement.cli.context import console
from settlement.config import Settings
from settlement.domain.money import format_minor
from settlement.kafka.reader import headers_dict, read_all
from settlement.runtime.mockbank_proc import BANK_ACCEPTED, MockBankProcess, disagreements

FINAL = frozenset({"settled", "rejected", "returned"})
ACCEPTED = frozenset({"accepted", "settled", "returned"})  # the bank's pacs.002 accepted it
BOOKED = frozenset({"settled", "returned"})


@dataclass(frozen=True)
class ReconSummary:
    """What `settlement reconcile` found over the demo's days (runs stored as usual)."""

    matched: int
    breaks: int
    by_kind: dict[str, int] = field(default_factory=dict)
    expected: int = 0
    days: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)


def _rows(session: Session, cql: str) -> list[Any]:
    return list(session.execute(cql))


def collect(s: Settings, session: Session, manifest: list[loadgen.SampleRecord],
            bank: MockBankProcess, statements_sent: int, recon: ReconSummary | None) -> dict[str, Any]:
    checks: dict[str, bool] = {}
    problems: list[str] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        checks[name] = ok
        if not ok:
            problems.append(f"{name}: {detail}" if detail else name)

    # payments -> ledger and DLQ
    valid = {r.payment_id: r for r in manifest if r.expect == "ledger"}
    bad = Counter(r.reason for r in manifest if r.expect == "dlq")
    ledger = {r.payment_id: r for r in _rows(
        session, "SELECT payment_id, amount_minor, fee_minor, currency FROM ledger_buckets")}
    inexact = [p for p, r in valid.items() if p in ledger and (
        ledger[p].amount_minor, ledger[p].fee_minor) != (r.amount_minor, r.fee_minor)]
    check("ledger: every valid payment recorded once, exact amounts",
          set(ledger) == set(valid) and not inexact,
          f"{len(set(valid) - set(ledger))} missing, {len(set(ledger) - set(valid))} unexpected, "
          f"{len(inexact)} with other amounts")
    dlq = Counter(headers_dict(m).get("dlq.reason", "?") for m in read_all(s.kafka, s.topics.payments_dlq))
    check("dead letters: every bad record, with its reason", dlq == bad,
          f"sent {dict(bad)}, dead-lettered {dict(dlq)}")
    net: Counter[str] = Counter()
    for r in valid.values():
        net[r.currency] += r.amount_minor - r.fee_minor

    # ledger -> batches and payouts
    batches = {b.batch_id: b for b in _rows(
        session, "SELECT batch_id, bank_bic, currency, late_payments FROM batch_index")}
    sealed = {b.batch_id for b in _rows(
        session, "SELECT batch_id, status FROM batches PER PARTITION LIMIT 1") if b.status == "sealed"}
    rows_q = session.prepare("SELECT payout_id, payment_id FROM batches WHERE batch_id = ?")
    placed: Counter[str] = Counter()
    for batch_id in batches:
        placed.update(r.payment_id for r in session.execute(rows_q, (batch_id,)) if r.payment_id)
    twice = [p for p, n in placed.items() if n > 1]
    check("batches: every payment in exactly one payout", set(placed) == set(valid) and not twice,
          f"{len(set(valid) - set(placed))} unplaced, {len(twice)} placed twice")
    messages = _rows(session, "SELECT batch_id, msg_id, currency, ctrl_sum FROM batch_messages")
    delivered = {d.msg_id for d in _rows(session, "SELECT msg_id, status FROM deliveries")
                 if d.status == "delivered"}
    attempts = Counter(a.outcome for a in _rows(session, "SELECT outcome FROM delivery_attempts"))
    check("pacs.008: one per batch, each delivered",
          len(sealed) == len(batches) == len(messages) == len({m.msg_id for m in messages})
          and {m.msg_id for m in messages} <= delivered,
          f"{len(batches)} batches, {len(sealed)} sealed, {len(messages)} pacs.008, "
          f"{len(delivered)} delivered")
    pacs008: Counter[str] = Counter()
    for m in messages:
        pacs008[m.currency] += m.ctrl_sum
    payouts = [p for p in _rows(session, "SELECT payout_id, batch_id, currency, amount_minor, "
                                         "end_to_end_id, status FROM payouts")
               if p.status != "nothing_to_pay"]
    paid: Counter[str] = Counter()
    for p in payouts:
        paid[p.currency] += p.amount_minor
    check("pacs.008: totals equal the ledger's net per currency", pacs008 == net == paid,
          f"ledger net {dict(net)}, pacs.008 {dict(pacs008)}, payouts {dict(paid)}")

    # payouts <-> banks
    ours = {p.end_to_end_id: (p.status, p.payout_id, p.amount_minor) for p in payouts}
    theirs = bank.records()
    disagree = disagreements(ours, theirs)
    check("banks: each payout received once, same amount, same outcome", not disagree,
          "; ".join(disagree[:5]))
    status = Counter(p.status for p in payouts)
    check("payouts: every one final (settled, rejected or returned)", set(status) <= FINAL,
          str(dict(status)))
    stored = _rows(session, "SELECT bank_bic, account_id, statement_id FROM bank_statements")
    check("statements: every camt.053 received", statements_sent > 0 and len(stored) == statements_sent,
          f"{len(stored)} received of {statements_sent} sent")
    parked = Counter(r.reason for r in _rows(session, "SELECT reason FROM parked_bank_messages"))
    check("inbound: no bank message parked", not parked, str(dict(parked)))

    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for t in _rows(session, "SELECT status, reason FROM payout_transitions"):
        if t.status in ("rejected", "returned"):
            reasons[t.status][t.reason or "?"] += 1
    return {
        "payments": {
            "records_sent": len(manifest), "valid": len(valid), "bad": sum(bad.values()),
            "redeliveries": sum(1 for r in manifest if r.expect == "duplicate"),
            "recorded": len(ledger), "dead_lettered": sum(dlq.values()),
            "dlq_reasons": dict(dlq)},
        "batches": {
            "count": len(batches), "sealed": len(sealed), "pacs008": len(messages),
            "delivered": len(delivered), "delivery_attempts": dict(attempts),
            "late_payments": sum(b.late_payments or 0 for b in batches.values())},
        "payouts": {
            "sent": len(payouts),
            "accepted": sum(n for st, n in status.items() if st in ACCEPTED),
            "rejected": status["rejected"],
            "settled": sum(n for st, n in status.items() if st in BOOKED),
            "returned": status["returned"],
            "final_status": dict(status),
            "reject_reasons": dict(reasons["rejected"]), "return_reasons": dict(reasons["returned"])},
        "per_bank": _per_bank(payouts, batches),
        "money_minor": {ccy: {"ledger_net": net[ccy], "pacs008": pacs008[ccy], **_booked(payouts, ccy)}
                        for ccy in sorted(net)},
        "bank": {
            "transactions": len(theirs),
            "accepted": sum(1 for t in theirs.values() if t["decision"] in BANK_ACCEPTED),
            "returned": sum(1 for t in theirs.values() if t.get("returned")),
            "credited_more_than_once": sum(1 for t in theirs.values() if t["credited_count"] > 1)},
        "statements": {"sent": statements_sent, "received": len(stored)},
        "parked_bank_messages": dict(parked),
        "reconciliation": asdict(recon) if recon is not None else None,
        "checks": checks,
        "problems": problems,
        "exactly_once": all(checks.values()),
    }


def add_check(report: dict[str, Any], name: str, ok: bool, detail: str = "") -> None:
    report["checks"][name] = ok
    if not ok:
        report["problems"].append(f"{name}: {detail}" if detail else name)
    report["exactly_once"] = all(report["checks"].values())


def _booked(payouts: list[Any], ccy: str) -> dict[str, int]:
    mine = [p for p in payouts if p.currency == ccy]
    return {"settled": sum(p.amount_minor for p in mine if p.status in BOOKED),
            "returned": sum(p.amount_minor for p in mine if p.status == "returned")}


def _per_bank(payouts: list[Any], batches: dict[str, Any]) -> list[dict[str, Any]]:
    agg: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for b in batches.values():
        agg[(b.bank_bic, b.currency)]["batches"] += 1
    for p in payouts:
        b = batches[p.batch_id]
        a = agg[(b.bank_bic, b.currency)]
        a["payouts"] += 1
        a["sent_minor"] += p.amount_minor
        a["accepted"] += p.status in ACCEPTED
        a["rejected"] += p.status == "rejected"
        a["settled"] += p.status in BOOKED
        a["returned"] += p.status == "returned"
    return [{"bank": bic, "currency": ccy, **dict(a)} for (bic, ccy), a in sorted(agg.items())]


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{r} {n}" for r, n in sorted(counts.items())) or "-"


def render(report: dict[str, Any]) -> None:
    pay, po, bt = report["payments"], report["payouts"], report["batches"]
    st, recon = report["statements"], report["reconciliation"]
    banks = Table("bank", "currency", "batches", "payouts", "accepted", "rejected", "settled",
                  "returned", "paid out", title="payouts per bank and currency")
    for row in report["per_bank"]:
        banks.add_row(row["bank"], row["currency"], str(row.get("batches", 0)),
                      f"{row.get('payouts', 0):,}", f"{row.get('accepted', 0):,}",
                      str(row.get("rejected", 0)), f"{row.get('settled', 0):,}",
                      str(row.get("returned", 0)),
                      format_minor(row.get("sent_minor", 0), row["currency"]))
    console.print(banks)
    money = Table("currency", "ledger net", "in pacs.008", "settled", "returned",
                  title="money (net of fees)")
    for ccy, m in report["money_minor"].items():
        money.add_row(ccy, *(format_minor(m[k], ccy) for k in ("ledger_net", "pacs008", "settled",
                                                              "returned")))
    console.print(money)
    table = Table("", "", title=f"demo summary (run {report['run']['run_id']})", show_header=False)
    table.add_row("payments sent", f"{pay['records_sent']:,} records: {pay['valid']:,} valid, "
                  f"{pay['bad']} bad, {pay['redeliveries']} redeliveries")
    table.add_row("recorded in the ledger", f"{pay['recorded']:,}")
    table.add_row("dead-lettered", f"{pay['dead_lettered']} ({len(pay['dlq_reasons'])} reasons)")
    table.add_row("payouts", f"{po['sent']:,} in {bt['pacs008']} pacs.008 batches, "
                  f"{bt['late_payments']} late payments")
    table.add_row("deliveries to the banks", _reasons(bt["delivery_attempts"]))
    table.add_row("accepted / rejected", f"{po['accepted']:,} / {po['rejected']} "
                  f"({_reasons(po['reject_reasons'])})")
    table.add_row("settled / returned", f"{po['settled']:,} / {po['returned']} "
                  f"({_reasons(po['return_reasons'])})")
    table.add_row("statements (camt.053)", f"{st['received']} received of {st['sent']} sent")
    table.add_row("reconciliation", "n/a" if recon is None else
                  f"{recon['breaks']} break(s) {_reasons(recon['by_kind'])}; {recon['matched']:,} "
                  f"of {recon['expected']:,} expected bookings matched, days {', '.join(recon['days'])}")
    table.add_row("timings (s)", ", ".join(f"{k} {v}" for k, v in report["timings_s"].items()))
    console.print(table)
    for name, ok in report["checks"].items():
        console.print(f"  {'[green]ok[/green]  ' if ok else '[red]FAIL[/red]'} {name}")
    for problem in report["problems"]:
        console.print(f"[red]{problem}[/red]")
    console.print("[green]exactly once: OK[/green]" if report["exactly_once"]
                  else "[red]exactly once: MISMATCH (see above)[/red]")
