"""Hostile and unmatched bank messages through a real inbound worker: each is parked with a
clear reason, nothing is applied, and the worker keeps going."""

from __future__ import annotations

from datetime import UTC, date, datetime

from settlement.domain.bank_messages import PaymentReturn, StatusReport, TxStatusReport
from settlement.iso20022.pacs002 import render_pacs002
from settlement.iso20022.pacs004 import render_pacs004
from settlement.store.session import connect
from tests.conftest import InProcessWorker, Namespace, wait_until
from tests.integration.helpers import produce_raw

AT = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
NS = "urn:iso:std:iso:20022:tech:xsd:pacs.002.001.10"
CASES = {
    "xxe": (b"<?xml version='1.0'?><!DOCTYPE d [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>"
            b"<Document>&x;</Document>", "refused_dtd_forbidden"),
    "billion_laughs": (b"<?xml version='1.0'?><!DOCTYPE l [<!ENTITY a 'ha'><!ENTITY b '&a;&a;&a;'>"
                       b"]><Document>&b;</Document>", "refused_dtd_forbidden"),
    "external_dtd": (b"<?xml version='1.0'?><!DOCTYPE Document SYSTEM 'http://127.0.0.1:1/x.dtd'>"
                     b"<Document/>", "refused_dtd_forbidden"),
    "truncated": (f"<Document xmlns='{NS}'><FIToFIPmtStsRpt><GrpHdr>".encode(), "refused_malformed"),
    "wrong_namespace": (b"<Document xmlns='urn:example:bank:status'/>", "refused_wrong_namespace"),
    "oversized": (b"<Document>" + b" " * (11 * 1024 * 1024) + b"</Document>", "refused_oversized"),
    "unknown_msg_id": (render_pacs002(StatusReport(
        msg_id="S-UNKNOWN", created_at=AT, orgnl_msg_id="NEVER-SENT", group_status="RJCT",
        group_reason="FF01")), "unknown_original_message"),
    "status_unknown_payout": (render_pacs002(StatusReport(
        msg_id="S-2", created_at=AT, orgnl_msg_id="NEVER-SENT",
        transactions=(TxStatusReport(orgnl_end_to_end_id="E00FF-1", status="ACSP"),))),
        "unknown_payout"),
    "return_never_settled": (render_pacs004(PaymentReturn(
        msg_id="R-1", created_at=AT, return_id="RT-1", orgnl_end_to_end_id="E00FF-1",
        returned_minor=100, currency="EUR", settlement_date=date(2026, 11, 4), reason="AC04")),
        "unknown_payout"),
}


def _parked(ns: Namespace) -> list[tuple[str, str, str]]:
    s = connect(ns.settings.cassandra, keyspace=ns.settings.cassandra.keyspace)
    try:
        return [(r.reason, r.detail, r.src) for r in s.execute(
            "SELECT reason, detail, src FROM parked_bank_messages")]
    finally:
        s.cluster.shutdown()


def test_each_bad_bank_message_is_parked_with_its_reason_and_the_worker_survives(
    ns: Namespace,
) -> None:
    produce_raw(ns.settings, [(b"MOCKDEFFXXX", body) for body, _ in CASES.values()],
                topic=ns.settings.topics.bank_inbound)
    worker = InProcessWorker(ns.build_worker("inbound", instance_id="inbound-0"))
    with worker:
        wait_until(lambda: len(_parked(ns)) >= len(CASES), 90, "all bad messages parked")
        assert worker.error is None
    reasons = sorted(r for r, _, _ in _parked(ns))
    assert reasons == sorted(reason for _, reason in CASES.values())
    assert all(detail for _, detail, _ in _parked(ns))
