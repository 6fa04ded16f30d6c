"""Gateway decisions: queue first, deliver, keep the obligation when a bank fails."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from settlement.config import GatewaySettings, TopicSettings
from settlement.domain.errors import RetryableError
from settlement.service.deadletter import header
from settlement.service.gateway import GatewayHandler, poll_owner
from settlement.service.ports import BankAnswer, Delivery, InboundRecord, PolledMessage, SourceRef

TOPICS = TopicSettings()


class FakeQueue:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[Delivery, str, datetime]] = {}
        self.cursors: dict[str, int] = {}
        self.attempts: list[tuple[str, str]] = []

    def enqueue(self, ds: Sequence[Delivery]) -> None:
        for d in ds:
            self.rows.setdefault(d.msg_id, (d, "pending", datetime.min.replace(tzinfo=UTC)))
            self.cursors.setdefault(d.bank_bic, 0)

    def due(self, partition: int, now: datetime) -> list[Delivery]:
        return [d for d, st, at in self.rows.values()
                if st == "pending" and at <= now and d.src_partition == partition]

    def delivered(self, d: Delivery, at: datetime) -> None:
        self.rows[d.msg_id] = (d, "delivered", at)

    def failed(self, d: Delivery, error: str, retry_at: datetime) -> None:
        nd = Delivery(d.msg_id, d.bank_bic, d.batch_id, d.xml, d.src_partition, d.attempts + 1)
        self.rows[d.msg_id] = (nd, "pending", retry_at)

    def attempt(self, d: Delivery, outcome: str, status: int | None, latency_ms: int,
                error: str | None) -> None:
        self.attempts.append((d.msg_id, outcome))

    def banks(self) -> dict[str, int]:
        return dict(self.cursors)

    def set_cursor(self, bank: str, cursor: int) -> None:
        self.cursors[bank] = cursor


class FakeBank:
    def __init__(self) -> None:
        self.down: set[str] = set()
        self.received: list[tuple[str, bytes]] = []
        self.outbox: dict[str, list[PolledMessage]] = {}
        self.probes = 0

    def allows(self, bic: str) -> bool:
        return True

    def probe_idle(self) -> None:
        self.probes += 1

    def close(self) -> None:
        pass

    def send(self, bic: str, xml: bytes) -> BankAnswer:
        if bic in self.down:
            raise RetryableError(f"{bic} down")
        self.received.append((bic, xml))
        return BankAnswer(200, b"<pacs002 for " + xml + b">", 5)

    def poll(self, bic: str, after: int) -> tuple[list[PolledMessage], int]:
        msgs = [m for m in self.outbox.get(bic, []) if m.cursor > after]
        return msgs, max([after] + [m.cursor for m in msgs])


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def rec(bic: str, msg_id: str, offset: int, partition: int = 0) -> InboundRecord:
    return InboundRecord(SourceRef(TOPICS.bank_outbound, partition, offset), bic.encode(),
                         f"<pacs008 {msg_id}>".encode(), [("msg_id", msg_id.encode()),
                                                          ("batch_id", b"B1")])


def setup() -> tuple[GatewayHandler, FakeQueue, FakeBank, Clock]:
    q, bank, clock = FakeQueue(), FakeBank(), Clock()
    return GatewayHandler(q, bank, TOPICS, GatewaySettings(poll_interval_s=1), "gw", clock), q, bank, clock


def test_delivered_answer_goes_to_bank_inbound_and_is_marked_after_commit() -> None:
    h, q, _bank, _ = setup()
    res = h.handle([rec("MOCKDEFFXXX", "M1", 0)])
    [out] = res.outputs
    assert out.topic == TOPICS.bank_inbound and out.key == b"MOCKDEFFXXX"
    assert header(out.headers, "orgnl_msg_id") == "M1"
    assert q.rows["M1"][1] == "pending"  # not before the transaction commits
    for cb in res.after_commit:
        cb()
    assert q.rows["M1"][1] == "delivered"


def test_a_failing_bank_keeps_its_obligation_and_does_not_block_another_bank() -> None:
    h, q, bank, clock = setup()
    bank.down.add("MOCKFRPPXXX")
    res = h.handle([rec("MOCKFRPPXXX", "F1", 0), rec("MOCKDEFFXXX", "D1", 1)])
    assert [header(o.headers, "orgnl_msg_id") for o in res.outputs] == ["D1"]
    assert q.rows["F1"][1] == "pending" and q.rows["F1"][0].attempts == 1
    assert h.tick([(TOPICS.bank_outbound, 0)]).outputs == []  # backoff not yet over
    bank.down.clear()
    clock.now += timedelta(seconds=5)
    retried = h.tick([(TOPICS.bank_outbound, 0)])
    assert [header(o.headers, "orgnl_msg_id") for o in retried.outputs] == ["F1"]
    assert [m for m, o in q.attempts] == ["F1", "D1", "F1"]


def test_redelivery_sends_the_same_bytes() -> None:
    h, _q, bank, clock = setup()
    bank.down.add("MOCKDEFFXXX")
    h.handle([rec("MOCKDEFFXXX", "D1", 0)])
    bank.down.clear()
    clock.now += timedelta(minutes=1)
    h.tick([(TOPICS.bank_outbound, 0)])
    assert bank.received == [("MOCKDEFFXXX", b"<pacs008 D1>")]


def test_only_the_owner_partition_polls_a_bank_and_the_cursor_moves_after_commit() -> None:
    h, q, bank, _ = setup()
    q.cursors["MOCKDEFFXXX"] = 0
    bank.outbox["MOCKDEFFXXX"] = [PolledMessage(1, "camt.054.001.08", "N1", b"<n1/>"),
                                  PolledMessage(2, "pacs.004.001.10", "R1", b"<r1/>")]
    owner = poll_owner("MOCKDEFFXXX", TOPICS.partitions)
    other = (owner + 1) % TOPICS.partitions
    assert h.tick([(TOPICS.bank_outbound, other)]).outputs == []
    res = h.tick([(TOPICS.bank_outbound, owner)])
    assert [o.value for o in res.outputs] == [b"<n1/>", b"<r1/>"]
    assert q.cursors["MOCKDEFFXXX"] == 0
    for cb in res.after_commit:
        cb()
    assert q.cursors["MOCKDEFFXXX"] == 2


def test_record_without_bank_or_msg_id_is_dead_lettered() -> None:
    h, _, _, _ = setup()
    bad = InboundRecord(SourceRef(TOPICS.bank_outbound, 0, 0), None, b"<x/>", [])
    [out] = h.handle([bad]).outputs
    assert out.topic == f"{TOPICS.bank_outbound}.dlq"


def test_no_second_delivery_or_poll_inside_the_still_open_transaction() -> None:
    h, q, bank, clock = setup()
    owner = poll_owner("MOCKDEFFXXX", TOPICS.partitions)
    bank.outbox["MOCKDEFFXXX"] = [PolledMessage(1, "camt.054.001.08", "N1", b"<n1/>")]
    first = h.handle([rec("MOCKDEFFXXX", "D1", 0, partition=owner)])
    polled = h.tick([(TOPICS.bank_outbound, owner)])
    clock.now += timedelta(seconds=5)  # later ticks, same transaction (not committed yet)
    again = h.tick([(TOPICS.bank_outbound, owner)])
    assert len(bank.received) == 1 and [o.value for o in polled.outputs] == [b"<n1/>"]
    assert again.outputs == []
    for cb in first.after_commit + polled.after_commit:
        cb()
    assert q.rows["D1"][1] == "delivered" and q.cursors["MOCKDEFFXXX"] == 1


def test_after_an_aborted_transaction_the_next_tick_delivers_and_polls_again() -> None:
    h, q, bank, clock = setup()
    owner = poll_owner("MOCKDEFFXXX", TOPICS.partitions)
    bank.outbox["MOCKDEFFXXX"] = [PolledMessage(1, "camt.054.001.08", "N1", b"<n1/>")]
    bank.down.add("MOCKDEFFXXX")
    h.handle([rec("MOCKDEFFXXX", "D1", 0, partition=owner)])  # fails: due again later
    bank.down.clear()
    clock.now += timedelta(minutes=1)
    first = h.tick([(TOPICS.bank_outbound, owner)])
    assert sorted(o.value for o in first.outputs) == sorted([b"<n1/>", b"<pacs002 for <pacs008 D1>>"])
    for undo in first.after_abort:  # the loop aborted that transaction: outputs gone
        undo()
    clock.now += timedelta(seconds=5)  # the next tick, not 2 minutes later
    again = h.tick([(TOPICS.bank_outbound, owner)])
    assert sorted(o.value for o in again.outputs) == sorted(o.value for o in first.outputs)
    for cb in again.after_commit:
        cb()
    assert q.rows["D1"][1] == "delivered" and q.cursors["MOCKDEFFXXX"] == 1


def test_each_tick_probes_idle_open_breakers_off_the_loop_one_probe_at_a_time() -> None:
    h, _q, bank, _ = setup()
    release = threading.Event()
    started = threading.Event()

    def slow_probe() -> None:  # a down bank that makes the probe wait for its timeout
        bank.probes += 1
        started.set()
        release.wait(10)

    bank.probe_idle = slow_probe  # type: ignore[method-assign]
    t0 = time.monotonic()
    h.tick([(TOPICS.bank_outbound, 0)])
    assert started.wait(5)
    h.tick([(TOPICS.bank_outbound, 0)])  # the first is still running: no second one
    assert time.monotonic() - t0 < 5, "the tick waited for the probe"
    assert bank.probes == 1
    release.set()
    h.close()  # waits for the probe
    assert bank.probes == 1
