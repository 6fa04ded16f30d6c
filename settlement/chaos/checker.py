"""The independent checker: I1-I7 of DESIGN.md from what Kafka, Cassandra and the banks hold.

It shares no code with the workers (an import-linter contract forbids any `settlement`
import here): it reads the topics read_committed with its own consumer, the tables with
its own CQL, the banks' own records over their admin API, parses the pacs.008s with
plain lxml, and holds its own copy of the payout transitions and currency exponents.
What must exist comes from the generator's manifest (`Sent`), not from the workers.

Every violation names the invariant and the ids involved, so a failing seed can be
replayed and the payments followed through the logs.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import httpx
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, Session
from cassandra.policies import ConstantReconnectionPolicy
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from lxml import etree

# ISO 4217 minor units of the currencies the runs use (our own table, not the workers').
EXPONENTS = {"EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "JPY": 0, "BHD": 3}
# The payout state machine as DESIGN.md I5 states it (pending -> sent -> accepted ->
# settled -> returned; rejected terminal for the attempt, an operator's retry reopens it).
ALLOWED = {
    "pending": {"sent"},
    "sent": {"accepted", "rejected", "settled"},
    "accepted": {"settled", "rejected"},
    "settled": {"returned"},
    "rejected": {"retrying"},
    "retrying": {"sent"},
    "returned": set(),
}
BANK_ACCEPTED = {"ACSP", "ACCP", "ACSC", "ACWC"}
SAMPLE = 10  # ids shown per violation


@dataclass(frozen=True)
class Sent:
    """One record the run produced, as the generator meant it."""

    payment_id: str
    expect: str  # "ledger" | "dlq" | "duplicate"
    value: bytes
    amount_minor: int = 0
    fee_minor: int = 0
    currency: str = ""


@dataclass(frozen=True)
class Sources:
    """Where to look: plain connection settings, nothing of the workers' configuration code."""

    kafka: dict[str, str]            # librdkafka client properties (bootstrap, security)
    topics: dict[str, str]           # payments_dlq, items, bank_outbound -> topic name
    cassandra_hosts: list[str]
    cassandra_port: int
    keyspace: str
    bank_url: str
    bank_bics: list[str]
    cassandra_user: str | None = None
    cassandra_password: str | None = None


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)

    def fail(self, invariant: str, what: str, ids: Iterable[str]) -> None:
        ids = sorted(set(ids))
        if ids:
            self.violations.append(f"{invariant} {what}: {len(ids)} e.g. {ids[:SAMPLE]}")

    @property
    def ok(self) -> bool:
        return not self.violations


# -- reading -----------------------------------------------------------------


def read_topic(kafka: dict[str, str], topic: str, timeout_s: float = 120.0) -> list[Any]:
    """Every committed record of `topic`, read_committed, from the start to the end."""
    c = Consumer({**kafka, "group.id": f"chaos-checker-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "auto.offset.reset": "earliest", "enable.partition.eof": False})
    try:
        parts = c.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in parts}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while True:
            for m in c.consume(1000, 0.5):
                err = m.error()
                if err is None:
                    out.append(m)
                elif err.fatal():
                    raise KafkaException(err)
            pos = {tp.partition: tp.offset for tp in c.position(
                [TopicPartition(topic, p) for p in parts])}
            if all(ends[p] == 0 or pos.get(p, -1) >= ends[p] for p in parts):
                return out
            if time.monotonic() > deadline:
                behind = {p: (pos.get(p), ends[p]) for p in parts if pos.get(p, -1) < ends[p]}
                raise TimeoutError(f"{topic}: not read to its end in {timeout_s:.0f}s "
                                   f"(partition: (position, end)) {behind}; an open transaction?")
    finally:
        c.close()


def _session(src: Sources) -> tuple[Cluster, Session]:
    auth = (PlainTextAuthProvider(src.cassandra_user, src.cassandra_password)
            if src.cassandra_user else None)
    cluster = Cluster(src.cassandra_hosts, port=src.cassandra_port, auth_provider=auth,
                      protocol_version=5,
                      reconnection_policy=ConstantReconnectionPolicy(1.0, max_attempts=None))
    return cluster, cluster.connect(src.keyspace)


def _rows(session: Session, cql: str) -> list[Any]:
    session.default_timeout = 60
    return list(session.execute(cql))


def bank_records(src: Sources) -> list[dict[str, Any]]:
    out = []
    with httpx.Client(base_url=src.bank_url, timeout=60) as http:
        for bic in src.bank_bics:
            r = http.get(f"/admin/banks/{bic}/transactions")
            r.raise_for_status()
            body = r.json()
            for tx in body["transactions"] if isinstance(body, dict) else body:
                out.append({**tx, "bank": bic})
    return out


# -- pacs.008, parsed here with plain lxml ----------------------------------------


@dataclass(frozen=True)
class Tx:
    end_to_end_id: str
    amount_text: str
    currency: str


@dataclass(frozen=True)
class Pacs008:
    msg_id: str
    nb_of_txs: str
    ctrl_sum: str
    total_text: str
    total_currency: str
    txs: tuple[Tx, ...]


def _local(el: Any) -> str:
    return str(etree.QName(el).localname)


def _child(el: Any, *path: str) -> Any:
    for name in path:
        el = next((c for c in el if isinstance(c.tag, str) and _local(c) == name), None)
        if el is None:
            return None
    return el


def parse_pacs008(xml: bytes) -> Pacs008:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False)
    root = etree.fromstring(xml, parser)
    body = _child(root, "FIToFICstmrCdtTrf")
    hdr = _child(body, "GrpHdr")
    total = _child(hdr, "TtlIntrBkSttlmAmt")
    txs = []
    for tx in (c for c in body if isinstance(c.tag, str) and _local(c) == "CdtTrfTxInf"):
        amt = _child(tx, "IntrBkSttlmAmt")
        txs.append(Tx(_child(tx, "PmtId", "EndToEndId").text, amt.text, amt.get("Ccy")))
    return Pacs008(_child(hdr, "MsgId").text, _child(hdr, "NbOfTxs").text,
                   _child(hdr, "CtrlSum").text,
                   total.text if total is not None else "", total.get("Ccy") if total is not None else "",
                   tuple(txs))


def minor(text: str, exponent: int) -> int | None:
    """'12.34' -> 1234 for exponent 2; None unless it carries exactly `exponent` decimals."""
    pattern = r"\d+" if exponent == 0 else rf"\d+\.\d{{{exponent}}}"
    if not re.fullmatch(pattern, text or ""):
        return None
    return int(text.replace(".", ""))


def _decimal_minor(text: str, exponent: int) -> int | None:
    """CtrlSum is a plain decimal (no currency): compare it at the batch's exponent."""
    m = re.fullmatch(r"(\d+)(?:\.(\d+))?", text or "")
    if m is None or len(m.group(2) or "") > exponent:
        return None
    whole, frac = str(m.group(1)), str(m.group(2) or "").ljust(exponent, "0")
    return int(whole + frac)  # whole units followed by exactly `exponent` decimals


# -- the check ---------------------------------------------------------------


def check(src: Sources, sent: list[Sent]) -> Verdict:
    v = Verdict()
    valid = {s.payment_id: s for s in sent if s.expect == "ledger"}
    v.figures.update(produced=len(sent), valid=len(valid),
                     invalid=sum(1 for s in sent if s.expect == "dlq"),
                     redelivered=sum(1 for s in sent if s.expect == "duplicate"))
    cluster, session = _session(src)
    try:
        ledger = _ledger(session)
        pay_rows = [r for r in _rows(session, "SELECT batch_id, payout_id, payment_id, "
                                     "amount_minor, fee_minor FROM batches")
                    if r.payment_id is not None]
        batches = {r.batch_id: r for r in _rows(
            session, "SELECT batch_id, status, bank_bic, currency, msg_id FROM batches "
                     "PER PARTITION LIMIT 1")}
        payouts = {r.payout_id: r for r in _rows(
            session, "SELECT payout_id, end_to_end_id, amount_minor, status, batch_id, currency "
                     "FROM payouts")}
        transitions: dict[str, list[tuple[Any, str]]] = defaultdict(list)
        for r in _rows(session, "SELECT payout_id, status, at FROM payout_transitions"):
            transitions[r.payout_id].append((r.at, r.status))
        parked = [r for r in _rows(session, "SELECT payment_id, status FROM parked_payments")
                  if r.status == "parked"]
        merchants_bank = {(r.merchant_id, r.currency): r.bank_bic for r in _rows(
            session, "SELECT merchant_id, currency, bank_bic FROM merchant_accounts")}
        unwritten = [r.batch_id for r in _rows(session, "SELECT batch_id FROM payouts_pending")]
    finally:
        cluster.shutdown()

    # A seal writes its payout rows after the commit that published the pacs.008; a
    # marker left at the end means a crash there was never made good (I6).
    v.fail("I6", "sealed batch whose payout rows were never written", unwritten)

    _check_ledger(v, valid, ledger, parked)
    _check_items(v, valid, read_topic(src.kafka, src.topics["items"]))
    _check_dlq(v, sent, read_topic(src.kafka, src.topics["payments_dlq"]))
    sent_msgs = _check_pacs008(v, read_topic(src.kafka, src.topics["bank_outbound"]))
    _check_payouts(v, ledger, pay_rows, batches, payouts, sent_msgs, merchants_bank)
    _check_bank(v, payouts, sent_msgs, bank_records(src))
    _check_transitions(v, payouts, transitions)
    return v


def _ledger(session: Session) -> dict[str, tuple[int, int, str, str]]:
    tables = {r.table_name for r in session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s",
        (session.keyspace,))}
    table = "ledger_buckets" if "ledger_buckets" in tables else "ledger"
    rows: dict[str, tuple[int, int, str, str]] = {}
    dup: list[str] = []
    for r in _rows(session, f"SELECT payment_id, amount_minor, fee_minor, currency, merchant_id "
                            f"FROM {table}"):
        if r.payment_id in rows:
            dup.append(r.payment_id)
        rows[r.payment_id] = (r.amount_minor, r.fee_minor, r.currency, r.merchant_id)
    if dup:
        raise AssertionError(f"ledger holds a payment twice: {dup[:SAMPLE]}")
    return rows


def _check_ledger(v: Verdict, valid: dict[str, Sent], ledger: dict[str, tuple[int, int, str, str]],
                  parked: list[Any]) -> None:
    v.figures["ledger_rows"] = len(ledger)
    v.fail("I1", "valid payment without its ledger row", (p for p in valid if p not in ledger))
    v.fail("I1", "ledger row for no valid payment", (p for p in ledger if p not in valid))
    v.fail("I1/I7", "ledger amount, fee or currency differs from the event",
           (p for p, s in valid.items() if p in ledger
            and ledger[p][:3] != (s.amount_minor, s.fee_minor, s.currency)))
    v.figures["parked_left"] = len(parked)
    v.fail("I4", "payment still parked at the end (every merchant is registered)",
           (r.payment_id for r in parked))


def _check_items(v: Verdict, valid: dict[str, Sent], msgs: list[Any]) -> None:
    seen: Counter[str] = Counter()
    unreadable = 0
    for m in msgs:
        try:
            body = json.loads(m.value())
        except ValueError:
            unreadable += 1
            continue
        if isinstance(body, dict) and isinstance(body.get("payment_id"), str):
            seen[body["payment_id"]] += 1
    v.figures["items"] = sum(seen.values())
    if unreadable:
        v.violations.append(f"I1 {unreadable} unreadable record(s) on the items topic")
    v.fail("I1", "item published more than once (read_committed)", (p for p, n in seen.items() if n > 1))
    v.fail("I1", "valid payment without its item", (p for p in valid if p not in seen))
    v.fail("I1", "item for no valid payment", (p for p in seen if p not in valid))


def _check_dlq(v: Verdict, sent: list[Sent], msgs: list[Any]) -> None:
    want = Counter(s.value for s in sent if s.expect == "dlq")
    got = Counter(m.value() for m in msgs)
    v.figures["dlq"] = sum(got.values())
    ids = {s.value: s.payment_id or repr(s.value[:30]) for s in sent}

    def name(value: bytes) -> str:
        return ids.get(value) or repr(value[:30])

    v.fail("I4", "bad record missing from the DLQ", (name(x) for x in want - got))
    v.fail("I4", "record dead-lettered more than sent or never bad", (name(x) for x in got - want))
    v.fail("I4", "dead letter without its reason header",
           (name(m.value()) for m in msgs if not any(k == "dlq.reason" and val
                                                     for k, val in (m.headers() or []))))


@dataclass(frozen=True)
class SentTx:
    msg_id: str
    amount_minor: int | None
    currency: str


def _check_pacs008(v: Verdict, msgs: list[Any]) -> dict[str, list[SentTx]]:
    """EndToEndId -> the sent transactions carrying it; checks I3 sums and I7 amounts."""
    by_msg: dict[str, bytes] = {}
    out: dict[str, list[SentTx]] = defaultdict(list)
    republished, bad_sums, bad_amounts, unparsable = [], [], [], []
    for m in msgs:
        try:
            doc = parse_pacs008(m.value())
        except (etree.XMLSyntaxError, AttributeError, TypeError) as exc:
            unparsable.append(f"{m.topic()}/{m.partition()}@{m.offset()}: {exc}")
            continue
        if doc.msg_id in by_msg:
            republished.append(doc.msg_id)
            continue
        by_msg[doc.msg_id] = m.value()
        ccys = {t.currency for t in doc.txs} | {doc.total_currency}
        exp = EXPONENTS.get(next(iter(ccys))) if len(ccys) == 1 else None
        if exp is None:
            bad_amounts.append(doc.msg_id)
            continue
        amounts = [minor(t.amount_text, exp) for t in doc.txs]
        total = minor(doc.total_text, exp)
        if any(a is None for a in amounts) or total is None:
            bad_amounts.append(doc.msg_id)
        s = sum(a or 0 for a in amounts)
        if doc.nb_of_txs != str(len(doc.txs)) or total != s or _decimal_minor(doc.ctrl_sum, exp) != s:
            bad_sums.append(doc.msg_id)
        for t, a in zip(doc.txs, amounts, strict=True):
            out[t.end_to_end_id].append(SentTx(doc.msg_id, a, t.currency))
    v.figures.update(pacs008=len(by_msg), pacs008_txs=sum(len(x) for x in out.values()))
    if unparsable:
        v.violations.append(f"I3 {len(unparsable)} unparsable record(s) on bank.outbound: "
                            f"{unparsable[:3]}")
    v.fail("I2", "pacs.008 MsgId published more than once (read_committed)", republished)
    v.fail("I3", "pacs.008 NbOfTxs/CtrlSum/TtlIntrBkSttlmAmt differ from its transactions", bad_sums)
    v.fail("I7", "pacs.008 amount without exactly its currency's decimals", bad_amounts)
    v.fail("I2", "payout (EndToEndId) in more than one sent pacs.008",
           (e for e, txs in out.items() if len(txs) > 1))
    return out


def _check_payouts(v: Verdict, ledger: dict[str, tuple[int, int, str, str]], pay_rows: list[Any],
                   batches: dict[str, Any], payouts: dict[str, Any],
                   sent: dict[str, list[SentTx]],
                   merchants_bank: dict[tuple[str, str], str]) -> None:
    # '~attempt-N' rows stand for an operator's retry of a payout, not for a payment
    rows = [r for r in pay_rows if not r.payment_id.startswith("~")]
    placed = Counter(r.payment_id for r in rows)
    v.figures.update(placed=len(placed), payouts=len(payouts), batches=len(batches))
    v.fail("I2", "payment in more than one payout", (p for p, n in placed.items() if n > 1))
    v.fail("I2", "ledger payment in no payout after its window closed",
           (p for p in ledger if p not in placed))
    v.fail("I2", "payout row for a payment the ledger does not hold",
           (r.payment_id for r in rows if r.payment_id not in ledger))
    v.fail("I3", "payout row's amount or fee differs from the ledger",
           (r.payment_id for r in rows if r.payment_id in ledger
            and ledger[r.payment_id][:2] != (r.amount_minor, r.fee_minor)))
    v.fail("I2", "batch still open at the end", (b for b, r in batches.items() if r.status != "sealed"))

    net: Counter[str] = Counter()
    batch_of: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        net[r.payout_id] += r.amount_minor - r.fee_minor
        batch_of[r.payout_id].add(r.batch_id)
    v.fail("I2", "payout spread over two batches", (p for p, b in batch_of.items() if len(b) > 1))
    missing, wrong_net, unsent, wrong_sent = [], [], [], []
    unsealed = {b for b, r in batches.items() if r.status != "sealed"}
    for pid, n in net.items():
        if batch_of[pid] & unsealed:
            continue  # its payout is written at the seal: the open batch is the violation
        po = payouts.get(pid)
        if po is None:
            missing.append(pid)
            continue
        if po.amount_minor != n:
            wrong_net.append(pid)
        if n <= 0:
            continue
        txs = sent.get(po.end_to_end_id, [])
        if not txs:
            unsent.append(pid)
        elif any(t.amount_minor != po.amount_minor for t in txs):
            wrong_sent.append(pid)
    v.fail("I2", "sealed payout without its payout record", missing)
    v.fail("I3", "payout amount differs from the net of its payments", wrong_net)
    v.fail("I2", "payout with money to pay in no sent pacs.008", unsent)
    v.fail("I3", "pacs.008 amount differs from the payout", wrong_sent)

    # per bank and currency: what was sent adds up to the ledger's net
    ledger_net: Counter[tuple[str, str]] = Counter()
    for amount, fee, ccy, merchant in ledger.values():
        ledger_net[(merchants_bank.get((merchant, ccy), "?"), ccy)] += amount - fee
    paid: Counter[tuple[str, str]] = Counter()
    for pid, n in net.items():
        b = batches.get(next(iter(batch_of[pid])))
        if b is not None:
            paid[(b.bank_bic, b.currency)] += n
    for key in sorted(set(ledger_net) | set(paid)):
        if ledger_net[key] != paid[key]:
            v.violations.append(f"I3 {key[0]} {key[1]}: payouts sum to {paid[key]}, "
                                f"the ledger's net is {ledger_net[key]}")


def _check_bank(v: Verdict, payouts: dict[str, Any], sent: dict[str, list[SentTx]],
                bank: list[dict[str, Any]]) -> None:
    """The banks' own records: each sent payout received once, credited at most once, and
    our payout ends where the bank's decision and bookings put it."""
    at_bank: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for tx in bank:
        at_bank[tx["end_to_end_id"]].append(tx)
    v.figures.update(bank_txs=len(bank),
                     bank_credited=sum(1 for t in bank if t.get("credited_count", 0) > 0),
                     bank_returned=sum(1 for t in bank if t.get("returned")))
    v.fail("I2", "transfer at a bank that we never sent", (e for e in at_bank if e not in sent))
    v.fail("I2", "payout received by its bank more than once (two MsgIds)",
           (e for e, txs in at_bank.items() if len({t["msg_id"] for t in txs}) > 1))
    v.fail("I2", "payout credited more than once by its bank",
           (e for e, txs in at_bank.items() if sum(t.get("credited_count", 0) for t in txs) > 1))
    v.fail("I2", "sent payout never received by its bank", (e for e in sent if e not in at_bank))
    by_e2e = {po.end_to_end_id: po for po in payouts.values() if po.end_to_end_id}
    wrong_status, wrong_amount = [], []
    for e2e, txs in at_bank.items():
        po = by_e2e.get(e2e)
        if po is None:
            continue
        tx = txs[0]
        want = ("rejected" if tx["decision"] not in BANK_ACCEPTED
                else "returned" if tx.get("returned") else "settled")
        if po.status != want:
            wrong_status.append(f"{po.payout_id}:{po.status}!={want}")
        if tx["amount_minor"] != po.amount_minor:
            wrong_amount.append(po.payout_id)
    v.fail("I5", "payout status differs from the bank's own record (ours!=bank's)", wrong_status)
    v.fail("I3", "bank credited another amount than the payout", wrong_amount)


def _check_transitions(v: Verdict, payouts: dict[str, Any],
                       transitions: dict[str, list[tuple[Any, str]]]) -> None:
    bad_path, unknown, disagree = [], [], []
    for pid, steps in transitions.items():
        path = [s for _at, s in sorted(steps, key=lambda x: (x[0] is None, x[0]))]
        if any(s not in ALLOWED for s in path):
            unknown.append(pid)
            continue
        if any(b not in ALLOWED[a] for a, b in pairwise(path)):
            bad_path.append(f"{pid}:{'>'.join(path)}")
        po = payouts.get(pid)
        if po is not None and po.status != path[-1] and po.status not in ("nothing_to_pay",):
            disagree.append(f"{pid}:{po.status}/{path[-1]}")
    v.figures["transitions"] = sum(len(s) for s in transitions.values())
    v.fail("I5", "payout status outside the state machine", unknown)
    v.fail("I5", "payout moved along a transition the state machine forbids", bad_path)
    v.fail("I5", "payout status differs from its last recorded transition", disagree)
