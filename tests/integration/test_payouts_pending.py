"""A sealed batch's payout rows follow the commit that publishes its pacs.008; meanwhile
the batch is marked pending, on the real Cassandra: a bank's answer about one of its
payouts is early (NotYetError, asked again), not unknown (parked); once the rows are
written and the marker cleared it applies; a marker older than PENDING_WAIT_S no longer
holds answers about unknown payouts back."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from cassandra.cluster import Session

from settlement.domain.bank_messages import StatusReport, TxStatusReport
from settlement.domain.batch import payout_id_for, transaction_ids
from settlement.domain.errors import NotYetError
from settlement.iso20022.pacs002 import render_pacs002
from settlement.store.batches import CassandraBatchStore
from settlement.store.inbound import PENDING_WAIT_S, CassandraInboundStore
from tests.conftest import InProcessWorker, Namespace, wait_until
from tests.integration.helpers import produce_raw

TOPIC = "settlement.items"


def _payout(batch_id: str, merchant: str, sealed_at: datetime) -> tuple[object, ...]:
    pid = payout_id_for(merchant, "EUR", "20261102T1000", "p1", "window")
    instr, e2e, uetr = transaction_ids(pid, 1)
    return (pid, batch_id, merchant, "EUR", "20261102T1000", 970, 1000, 30, 1, 0, 1, e2e, instr,
            uetr, "sent", sealed_at)


def _seal(batches: CassandraBatchStore, session: Session, batch_id: str, msg_id: str,
          row: tuple[object, ...], sealed_at: datetime) -> None:
    """What a seal leaves before its commit: the batch's row for the payout, the marker,
    the stored message; no payout row."""
    session.execute("INSERT INTO batches (batch_id, payout_id, payment_id, merchant_id) "
                    "VALUES (%s, %s, 'p1', %s)", (batch_id, row[0], row[2]))
    batches.mark_pending(batch_id, TOPIC, 3, msg_id, sealed_at)
    batches.save_message((batch_id, msg_id, "MOCKDEFFXXX", "EUR", date(2026, 11, 2), 1, 970,
                          b"<xml/>", sealed_at))


def test_an_answer_about_a_payout_still_being_written_is_asked_again(session: Session) -> None:
    batches, inbound = CassandraBatchStore(session), CassandraInboundStore(session)
    now = datetime.now(UTC).replace(microsecond=0)
    row = _payout("B-1", "m-early", now)
    _seal(batches, session, "B-1", "M-1", row, now)
    assert batches.pending_of(TOPIC, 3) == ["B-1"] and batches.pending_of(TOPIC, 4) == []

    with pytest.raises(NotYetError, match="being written"):
        inbound.payout_by_e2e(str(row[11]))
    with pytest.raises(NotYetError, match="M-1"):
        inbound.payouts_of_msg("M-1")

    batches.save_payouts([row])
    batches.clear_pending("B-1")
    assert batches.pending_of(TOPIC, 3) == []
    ref = inbound.payout_by_e2e(str(row[11]))
    assert ref is not None and (ref.payout_id, ref.status, ref.amount_minor) == (row[0], "sent", 970)
    assert [p.payout_id for p in inbound.payouts_of_msg("M-1")] == [row[0]]


def test_an_unknown_payout_is_unknown_once_no_batch_is_pending(session: Session) -> None:
    batches, inbound = CassandraBatchStore(session), CassandraInboundStore(session)
    now = datetime.now(UTC).replace(microsecond=0)
    stranger = _payout("B-none", "m-stranger", now)
    assert inbound.payout_by_e2e(str(stranger[11])) is None  # nothing pending: parked

    # a marker left for longer than PENDING_WAIT_S (no batcher running) holds nothing back
    old = now - timedelta(seconds=PENDING_WAIT_S + 60)
    _seal(batches, session, "B-old", "M-old", _payout("B-old", "m-old", old), old)
    assert inbound.payout_by_e2e(str(stranger[11])) is None
    assert inbound.payouts_of_msg("M-old") == []  # its payouts were never written

    _seal(batches, session, "B-new", "M-new", _payout("B-new", "m-new", now), now)
    with pytest.raises(NotYetError):
        inbound.payout_by_e2e(str(stranger[11]))


def test_a_real_inbound_worker_waits_for_rows_still_being_written_then_applies(
        ns: Namespace, session: Session) -> None:
    """The whole path through a real inbound worker: a pacs.002 accepting a payout whose
    batch is pending is not parked; the worker waits (`worker.waiting`) and applies it
    once the row is written and the marker cleared."""
    batches = CassandraBatchStore(session)
    now = datetime.now(UTC).replace(microsecond=0)
    row = _payout("B-live", "m-live", now)
    _seal(batches, session, "B-live", "M-live", row, now)
    produce_raw(ns.settings, [(b"MOCKDEFFXXX", render_pacs002(StatusReport(
        msg_id="S-live", created_at=now, orgnl_msg_id="M-live",
        transactions=(TxStatusReport(orgnl_end_to_end_id=str(row[11]), status="ACSP"),))))],
        topic=ns.settings.topics.bank_inbound)
    worker = ns.build_worker("inbound", instance_id="inbound-0", outage_backoff_max_s=1.0)
    with InProcessWorker(worker):
        wait_until(lambda: worker.loop.stats.outages >= 2, 60, "the answer asked again")
        assert list(session.execute("SELECT reason FROM parked_bank_messages")) == []
        batches.save_payouts([row])
        batches.clear_pending("B-live")
        wait_until(lambda: _status(session, str(row[0])) == "accepted", 60, "the answer applied")
    assert list(session.execute("SELECT reason FROM parked_bank_messages")) == []


def _status(session: Session, payout_id: str) -> str | None:
    r = session.execute("SELECT status FROM payouts WHERE payout_id = %s", (payout_id,)).one()
    return None if r is None else str(r.status)
