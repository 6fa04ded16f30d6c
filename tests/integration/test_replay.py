"""Replays through real workers: a replayed range changes nothing downstream, however often,
a reset waits for the group to be empty, and a DLQ replay settles a fixed record once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from settlement import bootstrap, loadgen
from settlement.config import Settings, load_settings
from settlement.domain.merchant import MerchantAccount
from settlement.kafka.reader import headers_dict, pending_records
from settlement.kafka.replay import KafkaAdmin
from settlement.runtime.local import WorkerProc
from settlement.store.session import connect
from tests.conftest import InProcessWorker, Namespace, wait_until
from tests.e2e.pipeline import minute_calendar_env, open_batches
from tests.integration.helpers import committed, item_counts, ledger_rows, produce_raw, register


def cli(ns: Namespace, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "settlement", *args], env={**ns.env, **(env or {})},
                          capture_output=True, text=True, timeout=180)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def calendar(ns: Namespace, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = minute_calendar_env(1.0)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    ns.settings = load_settings()
    return env


@contextmanager
def pipeline(ns: Namespace, settings: Settings | None = None) -> Iterator[None]:
    """A real ledger and batcher, each a StageLoop on a thread; stopped (drained) on exit."""
    s = settings or ns.settings
    workers = [InProcessWorker(bootstrap.build_worker(
        s.model_copy(update={"worker": s.worker.model_copy(update={"instance_id": f"{r}-0"})}), r))
        for r in ("ledger", "batcher")]
    for w in workers:
        w.__enter__()
    try:
        yield
    finally:
        for w in workers:
            w.__exit__(None, None, None)


def settled(s: Settings) -> bool:
    """Both groups have nothing left to read, in this order (items commit with ledger offsets),
    and no batch is open."""
    prefix = s.worker.group_prefix
    return (pending_records(s.kafka, f"{prefix}-ledger", s.topics.payments) == 0
            and pending_records(s.kafka, f"{prefix}-batcher", s.topics.items) == 0
            and open_batches(s) == 0)


def wait_settled(s: Settings, what: str, timeout_s: float = 120) -> None:
    def still_settled_a_moment_later() -> bool:
        if not settled(s):
            return False
        time.sleep(1.5)  # a seal command or a late item may be on its way
        return settled(s)

    wait_until(still_settled_a_moment_later, timeout_s, what, every_s=1)


def snapshot(s: Settings) -> dict[str, Any]:
    """Everything downstream of payments.succeeded that a replay must not change."""
    session = connect(s.cassandra, keyspace=s.cassandra.keyspace)
    try:
        tables = {t: sorted(tuple(r) for r in session.execute(f"SELECT * FROM {t}"))
                  for t in ("ledger_buckets", "parked_payments", "payouts", "batches", "batch_index",
                            "batch_messages")}
    finally:
        session.cluster.shutdown()
    outbound = sorted(((m.partition(), m.offset(), m.key(), m.value(), m.headers())
                       for m in committed(s, s.topics.bank_outbound)), key=lambda r: r[:2])
    return {**tables, "bank.outbound": outbound, "items": set(item_counts(s))}


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    out = []
    for k in before:
        if before[k] != after[k]:
            old, new = list(before[k]), list(after[k])
            gone, came = [r for r in old if r not in new], [r for r in new if r not in old]
            out.append(f"{k}: {len(old)} -> {len(new)} entries; {len(gone)} gone, {len(came)} new")
            out.extend(f"  - {r}" for r in gone[:3])
            out.extend(f"  + {r}" for r in came[:3])
    return out


def end_offsets(s: Settings) -> dict[int, int]:
    admin = KafkaAdmin(s.kafka)
    parts = admin.partitions(s.topics.payments)
    return {p: b.stable for p, b in admin.bounds(s.topics.payments, parts).items()}


def pick_range(rng: random.Random, ends: dict[int, int]) -> tuple[list[int], int, int]:
    """Some partitions with records, and a non-empty [from, to) inside every one of them."""
    full = sorted(p for p, end in ends.items() if end > 0)
    parts = sorted(rng.sample(full, rng.randint(1, len(full))))
    top = min(ends[p] for p in parts)
    start = rng.randint(0, top - 1)
    return parts, start, rng.randint(start + 1, top)


@pytest.mark.timeout(600)
def test_replaying_a_range_twice_in_either_mode_changes_nothing_downstream(
    ns: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = int(os.environ.get("SETTLEMENT_REPLAY_SEED", random.randrange(2**32)))
    print(f"replay seed {seed} (SETTLEMENT_REPLAY_SEED={seed} repeats this run)")
    rng = random.Random(seed)
    calendar(ns, monkeypatch)
    register(ns.settings, loadgen.merchants(6, 2, ["EUR", "JPY"], seed=seed % 1000))
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
    records = list(loadgen.generate(120, merchants_n=6, currencies=["EUR", "JPY"], seed=seed,
                                    start=start, span=timedelta(seconds=100)))
    produce_raw(ns.settings, [(r.key, r.value) for r in records])
    with pipeline(ns):
        wait_settled(ns.settings, "first settlement")
    before = snapshot(ns.settings)
    assert len(before["ledger_buckets"]) == len(records) and before["bank.outbound"], "nothing settled"
    ends = end_offsets(ns.settings)
    topic = ns.settings.topics.payments

    parts, frm, _ = pick_range(rng, ends)
    plist = [a for p in parts for a in ("-p", str(p))]
    for n in (1, 2):  # reset: the workers are stopped, the ledger re-reads [from, end)
        out = ok(cli(ns, "replay", "--topic", topic, "--from", str(frm), *plist))
        assert f"reset group {ns.name}-ledger on {topic}" in " ".join(out.split())
        with pipeline(ns):
            wait_settled(ns.settings, f"reset replay {n} of {parts} from {frm}")
        changes = diff(before, snapshot(ns.settings))
        assert not changes, f"reset replay {n} changed something:\n" + "\n".join(changes)

    parts, frm, to = pick_range(rng, ends)
    plist = [a for p in parts for a in ("-p", str(p))]
    expected = sum(1 for _p in parts for _o in range(frm, to))
    with pipeline(ns):  # republish: live, copies go to the end of the topic
        for n in (1, 2):
            out = ok(cli(ns, "replay", "--topic", topic, "--mode", "republish", "--from", str(frm),
                         "--to", str(to), *plist))
            assert f"republished {expected} record(s)" in out
            wait_settled(ns.settings, f"republish {n} of {parts} [{frm}, {to})")
    changes = diff(before, snapshot(ns.settings))
    assert not changes, "republishing changed something:\n" + "\n".join(changes)
    copies = [m for m in committed(ns.settings, topic) if "replayed-from" in headers_dict(m)]
    assert len(copies) == 2 * expected
    assert all(m.partition() == int(headers_dict(m)["replayed-from"].rsplit("@", 1)[0]
                                    .rsplit("/", 1)[1]) for m in copies), "a copy left its partition"


def _committed(ns: Namespace) -> dict[int, int | None]:
    return KafkaAdmin(ns.settings.kafka).committed(
        f"{ns.name}-ledger", ns.settings.topics.payments, end_offsets(ns.settings))


def test_a_reset_is_refused_while_the_group_has_live_members(ns: Namespace) -> None:
    records = list(loadgen.generate(30, merchants_n=2, currencies=["EUR"], seed=3))
    register(ns.settings, loadgen.merchants(2, 1, ["EUR"], seed=3))
    produce_raw(ns.settings, [(r.key, r.value) for r in records])
    topic = ns.settings.topics.payments
    with InProcessWorker(ns.build_worker("ledger", instance_id="live-0")):
        wait_until(lambda: sum(item_counts(ns.settings).values()) == 30, 60, "processed")
        done = _committed(ns)
        refused = cli(ns, "replay", "--topic", topic, "--from", "earliest")
        assert refused.returncode == 2
        says = " ".join(refused.stderr.split())
        assert f"group {ns.name}-ledger has 1 live member(s): {ns.name}-ledger-live-0@" in says
        forced = cli(ns, "replay", "--topic", topic, "--from", "earliest", "--force", "--wait", "2")
        assert forced.returncode == 2
        assert "still has live member(s)" in " ".join(forced.stderr.split())
        assert _committed(ns) == done, "a refused reset moved offsets"
    # stopped (it left the group): the reset goes through
    assert "0 record(s) to read again" in ok(cli(ns, "replay", "--topic", topic, "--from", "latest"))
    ok(cli(ns, "replay", "--topic", topic, "--from", "earliest"))
    assert set(_committed(ns).values()) == {0}
    ahead = cli(ns, "replay", "--topic", topic, "--from", "latest")  # would skip, not replay
    assert ahead.returncode == 2
    assert "would skip 30 record(s) it has not processed" in " ".join(ahead.stderr.split())
    assert set(_committed(ns).values()) == {0}

    # a SIGKILLed worker stays a member until its session times out: --force waits it out
    w = WorkerProc("ledger", "killed-0", [], ns.env, ns.log_dir / "killed.log")
    w.start()
    admin = KafkaAdmin(ns.settings.kafka)
    try:
        wait_until(lambda: bool(admin.members(f"{ns.name}-ledger")), 60, "the worker joined")
        wait_until(lambda: set(_committed(ns).values()) != {0}, 60, "the worker committed")
    finally:
        w.kill(signal.SIGKILL)
    assert cli(ns, "replay", "--topic", topic, "--from", "earliest").returncode == 2
    t0 = time.monotonic()
    ok(cli(ns, "replay", "--topic", topic, "--from", "earliest", "--force", "--wait", "60"))
    print(f"--force waited {time.monotonic() - t0:.1f}s for the killed member to time out")
    assert set(_committed(ns).values()) == {0}


def _payment(pid: str, at: datetime, amount: int = 10_000, pad: int = 0) -> bytes:
    ev = {"schema_version": 1, "event_id": f"e-{pid}", "payment_id": pid, "merchant_id": "m-dlq",
          "amount_minor": amount, "fee_minor": 100, "currency": "EUR", "captured_at": at.isoformat()}
    return orjson.dumps(ev) + b" " * pad  # JSON allows trailing whitespace: still the same event


def _dlq(ns: Namespace) -> Counter[str]:
    return Counter(headers_dict(m).get("dlq.reason", "?")
                   for m in committed(ns.settings, ns.settings.topics.payments_dlq))


def _batch_rows(ns: Namespace) -> Counter[str]:
    s = connect(ns.settings.cassandra, keyspace=ns.settings.cassandra.keyspace)
    try:
        return Counter(r.payment_id for r in s.execute("SELECT payment_id FROM batches")
                       if r.payment_id is not None)
    finally:
        s.cluster.shutdown()


@pytest.mark.timeout(400)
def test_dlq_replay_after_a_fix_settles_the_record_once_however_often_it_runs(
    ns: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = calendar(ns, monkeypatch)
    register(ns.settings, [MerchantAccount(
        merchant_id="m-dlq", currency="EUR", creditor_name="DLQ Shop",
        account_id="DE89370400440532013000", bank_bic="MOCKDEFFXXX")])
    at = datetime.now(UTC) - timedelta(minutes=3)
    produce_raw(ns.settings, [
        (b"p-big", _payment("p-big", at, 25_000, pad=400)),   # too big for the strict limit
        (b"p-bad", b"{not json"),                             # bad whatever the settings
        (b"p-ok", _payment("p-ok", at)),
        (b"p-ok", _payment("p-ok", at, amount=99_999)),       # same payment, other payload
    ])
    strict = ns.settings.model_copy(update={
        "ledger": ns.settings.ledger.model_copy(update={"max_event_bytes": 300})})
    with pipeline(ns, strict):
        wait_settled(ns.settings, "first run")
    assert _dlq(ns) == {"oversized": 1, "not_json": 1, "event_conflict": 1}
    assert set(ledger_rows(ns.settings)) == {"p-ok"}

    # the fix: the ledger accepts bigger events (default max_event_bytes); then replay
    with pipeline(ns):
        for n in (1, 2):
            out = " ".join(ok(cli(ns, "dlq", "replay", "--reason", "oversized", env=env)).split())
            assert "1 dead letter(s) of 3 to send back" in out
            assert "1 not_json (not selected)" in out and "1 event_conflict (not selected)" in out
            wait_settled(ns.settings, f"dlq replay {n}")
            assert ledger_rows(ns.settings)["p-big"][0] == 25_000
            assert item_counts(ns.settings) == {"p-ok": 1, "p-big": 1}
            assert _batch_rows(ns) == {"p-ok": 1, "p-big": 1}
            assert _dlq(ns) == {"oversized": 1, "not_json": 1, "event_conflict": 1}

        # everything replayable, twice: the still-bad record comes back once per run, not
        # once per dead letter; the conflict is never sent; p-big is skipped as a duplicate
        for n, superseded in ((1, 0), (2, 1)):
            dry = " ".join(ok(cli(ns, "dlq", "replay", "--dry-run", env=env)).split())
            assert "2 dead letter(s)" in dry and "dry run: nothing changed" in dry
            out = " ".join(ok(cli(ns, "dlq", "replay", env=env)).split())
            assert "1 event_conflict (never replayed by default" in out
            assert ("older dead letter" in out) == bool(superseded)
            wait_settled(ns.settings, f"full dlq replay {n}")
            assert _dlq(ns) == {"oversized": 1, "not_json": 1 + n, "event_conflict": 1}
    assert set(ledger_rows(ns.settings)) == {"p-ok", "p-big"}
    assert ledger_rows(ns.settings)["p-ok"][0] == 10_000  # the first event won
    assert item_counts(ns.settings) == {"p-ok": 1, "p-big": 1}
    assert _batch_rows(ns) == {"p-ok": 1, "p-big": 1}
