"""The batcher's decisions against an in-memory store with the same conditional semantics."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from settlement.config import BankSettings, BatcherSettings, ProcessorSettings, TopicSettings
from settlement.domain.calendar import PayoutWindow
from settlement.domain.errors import RetryableError
from settlement.domain.merchant import MerchantAccount
from settlement.domain.payment import SettlementItem
from settlement.iso20022.errors import MessageBuildError, MessageRefusedError
from settlement.iso20022.pacs008 import parse_pacs008_summary, render_pacs008
from settlement.service import batcher as batcher_module
from settlement.service.batcher import BatcherHandler, BatchOwnershipLostError
from settlement.service.calendars import CalendarRegistry
from settlement.service.deadletter import header
from settlement.service.ports import HandlerResult, InboundRecord, OutboundRecord, SourceRef
from tests.unit.fake_batches import FakeBatchStore
from tests.unit.fakes import FakeMerchants

TOPICS = TopicSettings()
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday; hourly cutoffs below
BANK = BankSettings(bic="MOCKDEFFXXX", timezone="UTC", holiday_calendar="none",
                    cutoffs=[f"{h:02d}:00" for h in range(24)])
ACCOUNTS = [
    MerchantAccount(merchant_id="m-win", currency="EUR", creditor_name="Window Shop",
                    account_id="DE89370400440532013000", bank_bic="MOCKDEFFXXX"),
    MerchantAccount(merchant_id="m-pay", currency="EUR", creditor_name="Per Payment Ltd",
                    account_id="DE41370400440000000001", bank_bic="MOCKDEFFXXX",
                    payout_mode="payment"),
]


class _Cal:
    def __init__(self) -> None:
        self._reg = CalendarRegistry([BANK], BANK, years=range(2026, 2027))

    def window_of(self, bic: str, at: datetime) -> PayoutWindow:
        return self._reg.window_of(bic, at)

    def next_window(self, bic: str, w: PayoutWindow) -> PayoutWindow:
        return self._reg.for_bic(bic).next_window(w)

    def shards(self, bic: str) -> int:
        return 1


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _render(batch, debtor, cb, sm):  # type: ignore[no-untyped-def]
    return render_pacs008(batch, debtor, charge_bearer=cb, settlement_method=sm)


def make(store: FakeBatchStore, clock: Clock,
         merchants: FakeMerchants | None = None) -> BatcherHandler:
    h = BatcherHandler(store, merchants or FakeMerchants(ACCOUNTS), _Cal(), TOPICS,
                       BatcherSettings(seal_grace_s=5), ProcessorSettings(), _render, "b-test",
                       clock=clock)
    h.assigned([(TOPICS.items, 0)])
    return h


def item(pid: str, merchant: str = "m-win", amount: int = 1000, fee: int = 30,
         at: datetime = T0 + timedelta(minutes=10)) -> bytes:
    mode = "payment" if merchant == "m-pay" else "window"
    return SettlementItem(payment_id=pid, event_id=f"e-{pid}", merchant_id=merchant,
                          amount_minor=amount, fee_minor=fee, currency="EUR", captured_at=at,
                          bank_bic="MOCKDEFFXXX", payout_mode=mode).model_dump_json().encode()


class Log:
    """A fake items partition: records get offsets; outputs to items are appended."""

    def __init__(self) -> None:
        self.next = 0

    def rec(self, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> InboundRecord:
        r = InboundRecord(SourceRef(TOPICS.items, 0, self.next), b"k", value, headers or [])
        self.next += 1
        return r

    def from_output(self, out: OutboundRecord) -> InboundRecord:
        return self.rec(out.value, out.headers)


@pytest.fixture
def env() -> tuple[FakeBatchStore, Clock, Log]:
    return FakeBatchStore(), Clock(), Log()


def test_window_payments_net_into_one_payout_and_per_payment_ones_stay_apart(env) -> None:
    store, clock, log = env
    h = make(store, clock)
    h.handle([log.rec(item("p1")), log.rec(item("p2", amount=500, fee=10)),
              log.rec(item("p3", merchant="m-pay")), log.rec(item("p4", merchant="m-pay"))])
    [batch] = store.batches.values()
    payouts = {r.payout_id for r in batch.rows.values()}
    assert len(batch.rows) == 4 and len(payouts) == 3  # 1 window payout + 2 per-payment


def test_no_seal_before_cutoff_plus_grace_then_exactly_one_command(env) -> None:
    store, clock, log = env
    h = make(store, clock)
    h.handle([log.rec(item("p1"))])
    clock.now = T0 + timedelta(hours=1, seconds=4)  # cutoff 10:00 + 4 s < grace 5 s
    assert h.tick([(TOPICS.items, 0)]).outputs == []
    clock.now = T0 + timedelta(hours=1, seconds=6)
    [cmd] = h.tick([(TOPICS.items, 0)]).outputs
    assert header(cmd.headers, "kind") == "seal" and cmd.partition == 0
    assert h.tick([(TOPICS.items, 0)]).outputs == []  # not twice


def _handle_seal(h: BatcherHandler, log: Log, clock: Clock) -> tuple[InboundRecord, HandlerResult]:
    """Issue the 10:00 batch's seal command and handle it; nothing committed yet."""
    clock.now = T0 + timedelta(hours=1, seconds=6)
    [cmd] = h.tick([(TOPICS.items, 0)]).outputs
    rec = log.from_output(cmd)
    return rec, h.handle([rec])


def _seal(h: BatcherHandler, log: Log, clock: Clock,
          commit: bool = True) -> tuple[InboundRecord, list[OutboundRecord]]:
    """Issue and handle the seal command; then, as the loop does after the commit that
    publishes its outputs, run the after-commit work (the payout rows)."""
    rec, result = _handle_seal(h, log, clock)
    if commit:
        for callback in result.after_commit:
            callback()
    return rec, result.outputs


def test_seal_publishes_a_valid_pacs008_whose_sums_match(env) -> None:
    store, clock, log = env
    h = make(store, clock)
    h.handle([log.rec(item("p1")), log.rec(item("p2", amount=500, fee=10)),
              log.rec(item("p3", merchant="m-pay", amount=777, fee=7))])
    _, [msg] = _seal(h, log, clock)
    assert msg.topic == TOPICS.bank_outbound and msg.key == b"MOCKDEFFXXX"
    s = parse_pacs008_summary(msg.value, validate_schema=True)
    assert s.nb_of_txs == 2 and s.ctrl_sum_minor == s.total_minor == (970 + 490) + 770
    assert sorted(t.amount_minor for t in s.transactions) == [770, 1460]


def test_replayed_seal_command_resends_identical_bytes_and_a_duplicate_sends_nothing(env) -> None:
    store, clock, log = env
    h = make(store, clock)
    h.handle([log.rec(item("p1"))])
    rec, [first] = _seal(h, log, clock)
    clock.now += timedelta(minutes=3)
    [again] = h.handle([rec]).outputs  # same command, same offset: the commit never happened
    assert again.value == first.value
    dup = InboundRecord(SourceRef(TOPICS.items, 0, 999), b"k", rec.value, rec.headers)
    assert h.handle([dup]).outputs == []  # another command for a sealed batch
    assert h.stats.duplicate_commands == 1


def test_payment_after_the_seal_command_is_late_and_goes_to_the_next_window(env) -> None:
    store, clock, log = env
    h = make(store, clock)
    h.handle([log.rec(item("p1"))])
    _seal(h, log, clock)
    h.handle([log.rec(item("p-late"))])  # captured in the sealed window, arrived after
    late_batch = next(b for b in store.batches.values() if b.status == "open")
    assert late_batch.head.window_id == "20261102T1100"
    [row] = late_batch.rows.values()
    assert row.payment_id == "p-late" and row.late
    assert h.stats.late == 1


def test_replay_of_payments_already_in_a_sealed_batch_changes_nothing(env) -> None:
    store, clock, log = env
    h = make(store, clock)
    first = log.rec(item("p1"))
    h.handle([first])
    _seal(h, log, clock)
    h.handle([first])  # the same record again after an abort
    assert [b.status for b in store.batches.values()] == ["sealed"]
    assert h.stats.late == 0


def test_a_zombie_with_an_older_epoch_cannot_write(env) -> None:
    store, clock, log = env
    zombie = make(store, clock)
    zombie.handle([log.rec(item("p1"))])
    newer = make(store, clock)  # takes the partition over: epoch 2
    newer.handle([log.rec(item("p2"))])
    with pytest.raises(BatchOwnershipLostError):
        zombie.handle([log.rec(item("p3"))])
    assert {r.payment_id for b in store.batches.values() for r in b.rows.values()} == {"p1", "p2"}


def test_zero_net_payout_is_recorded_but_not_sent(env) -> None:
    store, clock, log = env
    h = make(store, clock)
    h.handle([log.rec(item("p1", merchant="m-pay", amount=30, fee=30)), log.rec(item("p2"))])
    _, [msg] = _seal(h, log, clock)
    assert parse_pacs008_summary(msg.value).nb_of_txs == 1
    assert sorted(p[14] for p in store.payouts.values()) == ["nothing_to_pay", "sent"]


def test_bad_item_goes_to_the_items_dlq(env) -> None:
    store, clock, log = env
    out = make(store, clock).handle([log.rec(b"{oops")]).outputs
    assert [o.topic for o in out] == [TOPICS.items_dlq]
    assert header(out[0].headers, "dlq.reason") == "invalid_item"


def test_end_to_end_id_carries_the_payout_and_attempt_within_max35() -> None:
    from settlement.domain.batch import payout_id_for, payout_of_end_to_end_id, transaction_ids

    pid = payout_id_for("m-1", "EUR", "20261102T1000", "p1", "window")
    for attempt in (1, 12, 9_999_999):
        instr, e2e, uetr = transaction_ids(pid, attempt)
        assert len(e2e) <= 35 and len(instr) <= 35 and uuid.UUID(uetr).version == 4
        assert payout_of_end_to_end_id(e2e) == (pid, attempt)
    assert transaction_ids(pid, 1) != transaction_ids(pid, 2)
    assert payout_of_end_to_end_id("SOMEONE-ELSES") is None
    assert payout_of_end_to_end_id("E") is None


class _FailingPayouts(FakeBatchStore):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def save_payouts(self, params: list[tuple[object, ...]]) -> None:
        if self.failures:
            self.failures -= 1
            raise RetryableError("Cassandra timed out saving payouts")
        super().save_payouts(params)


def test_payout_rows_follow_the_commit_that_publishes_the_pacs008(env) -> None:
    store, clock, log = env
    h = make(store, clock)
    h.handle([log.rec(item("p1")), log.rec(item("p3", merchant="m-pay"))])
    _, result = _handle_seal(h, log, clock)
    [msg] = result.outputs
    [batch_id] = store.messages
    # published with its message stored and the batch marked pending, no payout row yet
    assert store.payouts == {} and store.pending == {batch_id: (TOPICS.items, 0)}
    assert msg.value == store.messages[batch_id]
    h.tick([(TOPICS.items, 0)])
    assert store.payouts == {}  # not before the commit
    for callback in result.after_commit:
        callback()
    assert sorted(p[14] for p in store.payouts.values()) == ["sent", "sent"]
    assert store.pending == {}
    h.close()


def test_a_payout_write_that_fails_after_the_commit_is_done_by_the_next_tick(env) -> None:
    _, clock, log = env
    store = _FailingPayouts(failures=2)
    h = make(store, clock)
    h.handle([log.rec(item("p1"))])
    _, result = _handle_seal(h, log, clock)
    with pytest.raises(RetryableError, match="saving payouts"):
        for callback in result.after_commit:
            callback()  # the loop logs a RetryableError here and goes on
    assert store.payouts == {} and list(store.pending)
    with pytest.raises(RetryableError, match="saving payouts"):
        h.tick([(TOPICS.items, 0)])  # Cassandra still down: the loop waits and ticks again
    h.tick([(TOPICS.items, 0)])
    assert [p[14] for p in store.payouts.values()] == ["sent"] and store.pending == {}
    h.close()


def test_after_an_aborted_seal_the_tick_writes_the_payouts_and_the_replay_resends(env) -> None:
    store, clock, log = env
    h = make(store, clock)
    h.handle([log.rec(item("p1"))])
    rec, result = _handle_seal(h, log, clock)
    for callback in result.after_abort:
        callback()
    h.tick([(TOPICS.items, 0)])  # before the command is handled again: no longer waits
    assert len(store.payouts) == 1 and store.pending == {}
    [again] = h.handle([rec]).outputs
    assert again.value == result.outputs[0].value
    h.close()


def test_payout_rows_whose_seal_result_was_lost_are_written_once_overdue(
        env, monkeypatch: pytest.MonkeyPatch) -> None:
    store, clock, log = env
    h = make(store, clock)
    h.handle([log.rec(item("p1"))])
    _handle_seal(h, log, clock)  # neither committed nor aborted: the poll failed later on
    h.tick([(TOPICS.items, 0)])
    assert store.payouts == {}
    later = time.monotonic() + batcher_module.UNWRITTEN_OVERDUE_S + 1
    monkeypatch.setattr(batcher_module.time, "monotonic", lambda: later)
    h.tick([(TOPICS.items, 0)])
    assert [p[14] for p in store.payouts.values()] == ["sent"] and store.pending == {}
    h.close()


def test_a_new_owner_writes_the_payouts_a_dead_one_left_from_its_stored_message(env) -> None:
    store, clock, log = env
    merchants = FakeMerchants(ACCOUNTS)
    dead = make(store, clock, merchants)
    dead.handle([log.rec(item("p1")), log.rec(item("p2", merchant="m-new")),
                 log.rec(item("p3", merchant="m-pay", amount=30, fee=30))])
    _seal(dead, log, clock, commit=False)  # killed between the commit and the payout rows
    dead.close()
    assert store.payouts == {} and list(store.pending)
    # m-new has an account by now; it had none at the seal, so it was not in the message
    merchants.accounts[("m-new", "EUR")] = ACCOUNTS[0].model_copy(update={"merchant_id": "m-new"})
    new = make(store, clock, merchants)  # takes the partition over
    new.tick([(TOPICS.items, 0)])
    by_merchant = {p[2]: p[14] for p in store.payouts.values()}
    assert by_merchant == {"m-win": "sent", "m-new": "no_payout_account",
                           "m-pay": "nothing_to_pay"}
    [summary] = [parse_pacs008_summary(x) for x in store.messages.values()]
    sent_e2e = {p[11] for p in store.payouts.values() if p[14] == "sent"}
    assert sent_e2e == {t.end_to_end_id for t in summary.transactions}
    assert store.pending == {}
    new.close()


def test_a_marker_whose_seal_stored_no_message_is_left_to_the_replayed_command(env) -> None:
    store, clock, log = env
    h = make(store, clock)
    h.handle([log.rec(item("p1"))])
    clock.now = T0 + timedelta(hours=1, seconds=6)
    [cmd] = h.tick([(TOPICS.items, 0)]).outputs
    [batch_id] = store.batches
    store.mark_pending(batch_id, TOPICS.items, 0, "M-x", clock.now)  # died before the message
    new = make(store, clock)
    new.tick([(TOPICS.items, 0)])
    assert store.payouts == {}  # nothing to rebuild from: the command is replayed
    result = new.handle([log.from_output(cmd)])
    for callback in result.after_commit:
        callback()
    assert [p[14] for p in store.payouts.values()] == ["sent"] and store.pending == {}
    h.close()
    new.close()


def test_a_render_that_fails_writes_no_payout_and_sends_nothing(env) -> None:
    store, clock, log = env

    def broken_render(batch, debtor, cb, sm):  # type: ignore[no-untyped-def]
        raise MessageBuildError(f"batch {batch.batch_id} cannot be expressed")

    h = BatcherHandler(store, FakeMerchants(ACCOUNTS), _Cal(), TOPICS,
                       BatcherSettings(seal_grace_s=5), ProcessorSettings(), broken_render, "b",
                       clock=clock)
    h.assigned([(TOPICS.items, 0)])
    h.handle([log.rec(item("p1")), log.rec(item("p3", merchant="m-pay"))])
    with pytest.raises(MessageBuildError, match="cannot be expressed"):
        _seal(h, log, clock)
    assert store.payouts == {} and store.pending == {}
    assert store.messages == {} and store.expected == {}
    h.close()


def test_a_pacs008_too_large_to_send_marks_its_payouts_unsent_and_the_worker_goes_on(
        env) -> None:
    store, clock, log = env
    too_large = {"MOCKDEFFXXX-EUR-20261102T1000-0"}

    def render(batch, debtor, cb, sm):  # type: ignore[no-untyped-def]
        if batch.batch_id in too_large:  # as the XSD check refuses a body over 10 MiB
            raise MessageRefusedError("oversized", "41100369 bytes exceeds the limit of 10485760")
        return _render(batch, debtor, cb, sm)

    h = BatcherHandler(store, FakeMerchants(ACCOUNTS), _Cal(), TOPICS,
                       BatcherSettings(seal_grace_s=5), ProcessorSettings(), render, "b",
                       clock=clock)
    h.assigned([(TOPICS.items, 0)])
    h.handle([log.rec(item("p1")), log.rec(item("p2", merchant="m-pay")),
              log.rec(item("p3", merchant="m-pay", amount=30, fee=30))])  # nets to zero
    cmd, [dlq] = _seal(h, log, clock)  # no exception: the command is dead-lettered
    assert dlq.topic == TOPICS.items_dlq
    assert header(dlq.headers, "dlq.reason") == "pacs008_oversized"
    assert "marked unsent" in header(dlq.headers, "dlq.detail")
    assert "Raise `shards` for bank MOCKDEFFXXX (now 1)" in header(dlq.headers, "dlq.detail")
    assert sorted(p[14] for p in store.payouts.values()) == ["nothing_to_pay", "unsent", "unsent"]
    assert store.messages == {} and store.expected == {}
    [index] = store.index.values()
    assert (index[0], index[1]) == ("oversized", 2)

    again = h.handle([cmd]).outputs  # a replayed command: the same outcome, nothing sent
    assert [header(o.headers, "dlq.reason") for o in again] == ["pacs008_oversized"]
    assert sorted(p[14] for p in store.payouts.values()) == ["nothing_to_pay", "unsent", "unsent"]

    # the next window's batch on the same partition seals and sends as usual
    h.handle([log.rec(item("p4", at=T0 + timedelta(hours=1, minutes=10)))])
    clock.now = T0 + timedelta(hours=2, seconds=6)
    [next_cmd] = h.tick([(TOPICS.items, 0)]).outputs
    [msg] = h.handle([log.from_output(next_cmd)]).outputs
    assert msg.topic == TOPICS.bank_outbound
    h.close()


def test_a_seal_command_lost_with_an_aborted_transaction_is_issued_again(env) -> None:
    # Regression for `settlement chaos` seed 1480177189: the command rode a transaction
    # that aborted (Cassandra timed out on the rows placed with it), and the batch stayed
    # open for good because the batcher remembered it as commanded.
    store, clock, log = env
    h = make(store, clock)
    h.handle([log.rec(item("p1"))])
    clock.now = T0 + timedelta(hours=1, seconds=6)
    first = h.tick([(TOPICS.items, 0)])
    assert len(first.outputs) == 1
    assert h.tick([(TOPICS.items, 0)]).outputs == []  # committed or in flight: not twice
    for undo in first.after_abort:  # the loop aborted that transaction
        undo()
    [again] = h.tick([(TOPICS.items, 0)]).outputs
    assert again.value == first.outputs[0].value and again.partition == 0
    [msg] = h.handle([log.from_output(again)]).outputs
    assert msg.topic == TOPICS.bank_outbound  # and the batch is sealed and sent


class _AddFailsOnce(FakeBatchStore):
    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def add(self, rows, epoch):  # type: ignore[no-untyped-def]
        if not self.failed:
            self.failed = True
            raise RetryableError("add rows to batch: NoHostAvailable (injected)")
        return super().add(rows, epoch)


def test_a_batch_created_by_an_attempt_whose_rows_failed_is_still_sealed(env) -> None:
    # Regression for `settlement chaos` seed 1213681672: the header was written, the rows
    # failed (Cassandra down), and the retry found the batch known but never noted it as
    # open, so no seal command was ever issued for it.
    _, clock, log = env
    store = _AddFailsOnce()
    h = make(store, clock)
    records = [log.rec(item("p1")), log.rec(item("p2", amount=500))]
    with pytest.raises(RetryableError):
        h.handle(records)
    h.handle(records)  # the loop's retry after the rewind
    clock.now = T0 + timedelta(hours=1, seconds=6)
    [cmd] = h.tick([(TOPICS.items, 0)]).outputs
    [msg] = h.handle([log.from_output(cmd)]).outputs
    assert msg.topic == TOPICS.bank_outbound


def test_merchant_accounts_load_ahead_of_a_seal_and_not_long_before(env) -> None:
    store, clock, log = env
    merchants = FakeMerchants(ACCOUNTS)
    h = make(store, clock, merchants)  # checks for seals every 1 s (the default)
    h.handle([log.rec(item("p1"))])
    due = T0 + timedelta(hours=1, seconds=5)  # cutoff 10:00 + grace
    clock.now = due - timedelta(seconds=2)  # more than one check interval + the lead away
    assert h.tick([(TOPICS.items, 0)]).outputs == []
    h.close()  # joins the helper threads, so a load submitted by the tick has run
    assert merchants.warmed == 0
    h = make(store, clock, merchants)
    h.handle([log.rec(item("p1"))])
    clock.now = due - timedelta(seconds=1)  # the next tick may be after the seal is due
    assert h.tick([(TOPICS.items, 0)]).outputs == []  # not sealed yet, but loaded
    h.close()
    assert merchants.warmed == 1


class _WarmFails(FakeMerchants):
    def warm(self) -> None:
        super().warm()
        raise RetryableError("read merchant accounts: NoHostAvailable (injected)")


def test_a_merchant_prewarm_that_fails_is_logged_when_it_fails(env) -> None:
    # The tick does not wait for the load it starts; its error used to surface only in
    # the seal that needed the accounts, a check interval later.
    from structlog.testing import capture_logs

    store, clock, log = env
    merchants = _WarmFails(ACCOUNTS)
    h = make(store, clock, merchants)
    h.handle([log.rec(item("p1"))])
    clock.now = T0 + timedelta(hours=1, seconds=4)  # within a check interval + lead of the seal
    with capture_logs() as logs:
        assert h.tick([(TOPICS.items, 0)]).outputs == []
        h.close()  # joins the helper threads: the load has run and failed
    assert merchants.warmed == 1
    [warning] = [x for x in logs if x["event"] == "batcher.merchant_prewarm_failed"]
    assert warning["log_level"] == "warning"
    assert "NoHostAvailable (injected)" in warning["error"]


def _on(partition: int, offset: int, value: bytes) -> InboundRecord:
    return InboundRecord(SourceRef(TOPICS.items, partition, offset), b"k", value, [])


def _usd(pid: str) -> bytes:
    it = SettlementItem.model_validate_json(item(pid))
    return it.model_copy(update={"currency": "USD"}).model_dump_json().encode()


def test_a_poll_over_two_partitions_is_placed_in_one_round_each_batch_under_its_epoch(env) -> None:
    store, clock, log = env
    h = make(store, clock)
    h.assigned([(TOPICS.items, 1)])
    store.epochs[1] = 4  # partition 1 had owners before: this batcher claims epoch 5
    h.handle([log.rec(item("p1")), _on(1, 0, _usd("p2")), log.rec(item("p3"))])
    assert store.add_calls == 1  # not one round of conditional batches per partition
    by_ccy = {b.head.currency: b for b in store.batches.values()}
    assert {c: (b.epoch, len(b.rows)) for c, b in by_ccy.items()} == {"EUR": (1, 2), "USD": (5, 1)}
    by_ccy["USD"].epoch = store.claim(TOPICS.items, 1, "newer")  # which wrote to the batch
    with pytest.raises(BatchOwnershipLostError, match="items partition 1"):
        h.handle([log.rec(item("p4")), _on(1, 1, _usd("p5"))])


def test_one_batch_fed_from_two_partitions_is_placed_in_two_rounds(env) -> None:
    # Only after the items topic's partition count changed: a bank and currency then
    # hashes to another partition, and both can hold items of the open window.
    store, clock, log = env
    h = make(store, clock)
    h.assigned([(TOPICS.items, 1)])
    h.handle([log.rec(item("p1")), _on(1, 0, item("p2")), _on(1, 1, _usd("p3"))])
    assert store.add_calls == 2
    rows = {b.head.currency: sorted(r.payment_id for r in b.rows.values())
            for b in store.batches.values()}
    assert rows == {"EUR": ["p1", "p2"], "USD": ["p3"]}
