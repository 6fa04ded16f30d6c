"""`settlement demo`: the whole pipeline end to end on the local stack, with a checked summary.

payments -> ledger -> batcher -> pacs.008 -> gateway -> mock banks -> pacs.002, camt.054,
pacs.004, camt.053 -> inbound -> payouts; every stage a separate process, in a fresh
namespace (keyspace, topics, groups) per run.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Annotated, Optional

import typer
from cassandra.cluster import Session
from confluent_kafka.admin import AdminClient

from settlement import bootstrap, loadgen
from settlement.cli.context import console, fail, run, state
from settlement.cli.demo_banks import CURRENCIES, DEMO_BANKS, bank_config, clock_plan, validated
from settlement.cli.demo_report import ReconSummary, add_check, collect, render
from settlement.cli.sample import _progress, produce
from settlement.config import Settings
from settlement.kafka.reader import group_lag, pending_records, ready_members
from settlement.recon.run import Reconciliation, ReconRequest
from settlement.runtime.local import Fleet, child_env
from settlement.runtime.mockbank_proc import MockBankProcess, bank_outcome
from settlement.runtime.namespace import Namespace, drop, namespace, provision
from settlement.runtime.stack import ensure_stack

MERCHANTS = 100
PER_PAYMENT_SHARE = 0.05  # merchants paid per payment; the others once per window
FINAL = frozenset({"settled", "rejected", "returned"})
# For the batchers' seal (see _start_batchers): their start-up, how fast they place a
# backlog, and the ledger's pace when it has shown none yet.
MIN_BATCHER_START_S = 8.0
BATCHER_RATE = 3000.0
FALLBACK_LEDGER_RATE = 300.0
_NOT_YET = datetime.max.replace(tzinfo=UTC)
DEMO_BANK = {"bic": "DEFAULT", "timezone": "UTC", "holiday_calendar": "none", "weekend": [],
             "cutoffs": [f"{h:02d}:{m:02d}" for h in range(24) for m in range(60)]}


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


@dataclass
class DemoRun:
    """What the steps of one run share."""

    run_id: str
    ns: Namespace
    session: Session
    bank: MockBankProcess
    fleet: Fleet
    env: dict[str, str]  # the workers' environment
    log_dir: Path
    timeout_s: float
    manifest: list[loadgen.SampleRecord] = field(default_factory=list)
    cutoff: datetime = _NOT_YET  # set when the payments are generated
    seal_at: datetime = _NOT_YET  # set when the batchers start
    settlement_date: date = date.min
    timings: dict[str, float] = field(default_factory=dict)
    statements_sent: int = 0
    statement_days: list[date] = field(default_factory=list)  # the camt.053s' dates

    @property
    def settings(self) -> Settings:
        return self.ns.settings


def demo(
    ctx: typer.Context,
    payments: Annotated[int, typer.Option(min=100, help="Sample payments to produce.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the payments and the banks' decisions.")] = 42,
    keep: Annotated[bool, typer.Option(
        help="Keep the run's keyspace, topics and mock bank state (to inspect them after).")] = False,
    json_out: Annotated[Optional[Path], typer.Option(  # noqa: UP045 - typer needs Optional
        "--json", help="Also write the summary as JSON to this file.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=8, help="Ledger worker processes.")] = 2,
    batchers: Annotated[int, typer.Option(min=1, max=8, help="Batcher processes.")] = 2,
    gateways: Annotated[int, typer.Option(min=1, max=4, help="Gateway processes.")] = 1,
    inbound: Annotated[int, typer.Option(min=1, max=4, help="Inbound processes.")] = 2,
    invalid_ratio: Annotated[float, typer.Option(min=0, max=0.5, help="Share of bad records.")] = 0.01,
    log_dir: Annotated[Path, typer.Option(help="Worker and mock bank logs.")] = Path(".demo/logs"),
    timeout_s: Annotated[float, typer.Option(help="Give up on a step after this long.")] = 300,
) -> None:
    """Run the whole pipeline end to end and check it: start the local stack if needed,
    provision a fresh namespace, start the mock banks and every stage (ledger, batcher,
    gateway, inbound) as separate processes, produce sample payments across 3 banks and
    2 currencies (with bad records and redeliveries), let the next cutoff seal the batches,
    move the banks' clock through booking, returns and end of day, reconcile, and print
    what happened, checked against what was sent (exit 1 if a check fails).

    The batchers have a cutoff every minute: the payments are captured just before one,
    and the batchers' seal grace ends when they are placed, so the run takes well under
    a minute. The run's namespace is dropped at the end unless --keep.

    Example: settlement demo --payments 2000 --seed 7 --json demo.json
    """
    app = state(ctx)
    quiet = {} if app.log_level or app.log_format else {"log": {"level": "warning"}}
    base = app.settings(**quiet)
    # The demo's own Kafka clients log notices and worse, so librdkafka's info lines
    # (e.g. an admin client's leftover event at close) stay out of the summary.
    base = base.model_copy(update={"kafka": base.kafka.model_copy(
        update={"extra": {"log_level": "5", **base.kafka.extra}})})
    t0 = time.monotonic()
    started = run(lambda: ensure_stack(base))
    stack_s = time.monotonic() - t0
    kafka_at, cassandra_at = base.kafka.bootstrap_servers, base.cassandra.contact_points[0]
    console.print(f"stack: Kafka {kafka_at}, Cassandra {cassandra_at}:{base.cassandra.port} "
                  + ("(started)" if started else "(already running)"))
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    ns = run(lambda: namespace(base, f"demo-{run_id}"))
    bank_dir = log_dir.parent / f"mockbank-{run_id}"
    roles = {"ledger": workers, "batcher": batchers, "gateway": gateways, "inbound": inbound}
    console.print(
        f"[bold]demo run {run_id}[/bold]: {payments:,} payments to 3 banks in "
        f"{' and '.join(CURRENCIES)}; processes: "
        + ", ".join(f"{n} {role}" for role, n in roles.items())
        + f", 1 mock bank server; namespace {ns.prefix}; logs in {log_dir}/")
    with ExitStack() as cleanup, sigterm_interrupts():
        if keep:
            cleanup.callback(_kept, ns, bank_dir, log_dir)
        else:
            cleanup.callback(shutil.rmtree, bank_dir, ignore_errors=True)
            cleanup.callback(drop_quietly, ns)
        bank, session, token = start_banks(cleanup, ns, bank_dir, log_dir, seed)
        provisioned = time.monotonic() - t0 - stack_s
        env = child_env({**ns.env, **stage_env(bank.url, token)}
                        | ({"SETTLEMENT_CONFIG_FILE": str(app.config_file)} if app.config_file else {}))
        # The batchers start once the payments' window is chosen (see _plan_seal).
        early = {role: n for role, n in roles.items() if role != "batcher"}
        fleet = Fleet([])
        for role, n in early.items():
            fleet.workers += Fleet.of(role, n, env=env, log_dir=log_dir, prefix="demo-").workers
        cleanup.callback(fleet.stop)
        fleet.start()
        d = DemoRun(run_id, ns, session, bank, fleet, env, log_dir, timeout_s)
        _register_merchants(d, seed)
        _wait_started(d, early)
        if started:
            d.timings["stack"] = stack_s
        d.timings["provision"] = provisioned
        d.timings["start_processes"] = time.monotonic() - t0 - stack_s - provisioned
        _pipeline(d, payments, seed, invalid_ratio, batchers)
        fleet.terminate()  # they drain while the summary is collected
        recon = _reconcile(d, d.settlement_date)
        mark = time.monotonic()
        report = run(lambda: collect(d.settings, session, d.manifest, bank, d.statements_sent, recon))
        add_check(report, "reconciliation: the banks' statements book exactly what was sent "
                  "and returned (0 breaks)", recon.breaks == 0, str(recon.by_kind))
        codes = fleet.wait()
        add_check(report, "workers: every process exited cleanly", all(c == 0 for c in codes),
                  str({w.instance_id: c for w, c in zip(fleet.workers, codes, strict=True) if c}))
        d.timings["checks"] = time.monotonic() - mark
        report["run"] = {"run_id": run_id, "namespace": ns.prefix, "seed": seed,
                         "payments": payments, "cutoff": d.cutoff.isoformat(),
                         "seal_at": d.seal_at.isoformat(),
                         "settlement_date": d.settlement_date.isoformat(), "kept": keep}
        report["timings_s"] = {k: round(v, 1) for k, v in d.timings.items()}
        render(report)
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(report, indent=2, sort_keys=True))
    console.print(f"demo finished in {time.monotonic() - t0:.0f}s")
    if not report["exactly_once"]:
        raise typer.Exit(1)


def start_banks(cleanup: ExitStack, ns: Namespace, bank_dir: Path, log_dir: Path,
                seed: int) -> tuple[MockBankProcess, Session, str]:
    """The demo's three mock banks spawned and the namespace provisioned meanwhile, both
    undone by `cleanup`: (the bank process, a session on the namespace, the banks' token).

    The banks' clock starts at 07:00 on the settlement day (today, UTC, or earlier).
    """
    token = secrets.token_urlsafe(18)
    config = bank_config(bank_dir / "state", token, seed, datetime.now(UTC).date())
    run(lambda: validated(config))
    bank = MockBankProcess(config, bank_dir / "banks.yaml", log_dir / "mockbank.log")
    cleanup.callback(bank.stop)
    bank.spawn()
    run(lambda: provision(ns))
    session = run(lambda: bootstrap.cassandra(ns.settings))
    cleanup.callback(session.cluster.shutdown)
    return bank, session, token


def _pipeline(d: DemoRun, payments: int, seed: int, invalid_ratio: float, batchers: int) -> None:
    """Produce the payments and start the batchers, then follow the payments stage by stage,
    moving the banks' clock as soon as the banks have every pacs.008."""
    mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        d.timings[name] = time.monotonic() - mark
        mark = time.monotonic()

    d.cutoff = (datetime.now(UTC) - timedelta(seconds=1)).replace(second=0, microsecond=0)
    d.settlement_date = d.cutoff.date()
    d.manifest = _payments(d.cutoff, payments, seed, invalid_ratio)
    console.print(f"payments captured just before the {d.cutoff:%H:%M} UTC cutoff "
                  "(the demo's batchers have one every minute)")
    produce(d.settings, d.manifest, rate=0)
    lap("produce")
    _wait_ledger(d, partial(_start_batchers, d, batchers))
    lap("ledger")
    _wait_sealed(d)
    lap("seal")
    _wait_delivered(d)
    lap("delivery")
    _move_bank_clock(d)
    lap("bank_clock")
    _wait_final(d)
    lap("bank_answers_applied")


def _reconcile(d: DemoRun, day: date) -> ReconSummary:
    """Reconcile the settlement day and every day a statement ended on (returns are booked
    days later, and a weekend's bookings arrive in Monday's statement), as the reconcile
    CronJob would, into the report tables."""
    mark = time.monotonic()
    days = sorted({day, *d.statement_days})
    store = bootstrap.recon_store(d.settings, d.session)
    matched = breaks = expected = 0
    kinds: Counter[str] = Counter()
    runs = []
    for each in days:
        out = run(lambda each=each: Reconciliation(store, ReconRequest(day=each)).run())  # type: ignore[misc]
        matched += out.record.matched_count
        expected += out.record.expected_count
        breaks += out.record.breaks_count
        kinds.update(out.record.break_counts)
        runs.append(out.record.run_id)
        console.print(f"reconciled {each}: {out.record.expected_count:,} expected, "
                      f"{out.record.matched_count:,} matched, {out.record.breaks_count} break(s) "
                      f"(run {out.record.run_id})")
    d.timings["reconcile"] = time.monotonic() - mark
    return ReconSummary(matched=matched, breaks=breaks, by_kind=dict(kinds), expected=expected,
                        days=[x.isoformat() for x in days], runs=runs)


# -- set-up ----------------------------------------------------------------


def _start_batchers(d: DemoRun, n: int, done: int, elapsed_s: float) -> None:
    """Start the batchers, with a seal grace (how long they wait for payments still in
    flight after a cutoff) that ends when every payment will have been placed.

    The payments were captured before a cutoff that has passed: rather than wait for
    the next one after they are placed (up to a minute idle), the seal follows the
    ledger's pace so far, with room to spare, or the batchers' start-up when that is
    longer. A payment placed after the seal anyway is not lost: it is late, and goes
    into the next window.
    """
    total = len(d.manifest)
    rate = done / elapsed_s if done else FALLBACK_LEDGER_RATE
    ledger_left_s = (total - done) / max(rate, 1.0)
    boot_s = max(MIN_BATCHER_START_S, 0.8 * d.timings["start_processes"]) + done / BATCHER_RATE
    d.seal_at = datetime.now(UTC) + timedelta(seconds=max(1.25 * ledger_left_s + 2, boot_s) + 2)
    grace = (d.seal_at - d.cutoff).total_seconds()
    env = {**d.env, "SETTLEMENT_BATCHER__SEAL_GRACE_S": f"{grace:.1f}"}
    batchers = Fleet.of("batcher", n, env=env, log_dir=d.log_dir, prefix="demo-")
    d.fleet.workers += batchers.workers
    batchers.start()
    console.print(f"batchers started: they wait {grace:.0f}s after the {d.cutoff:%H:%M} cutoff for "
                  f"its payments and seal the window at {d.seal_at:%H:%M:%S} UTC (from the "
                  f"ledger's pace so far, {rate:,.0f}/s)")


def _register_merchants(d: DemoRun, seed: int) -> None:
    accounts = loadgen.merchants(MERCHANTS, len(DEMO_BANKS), list(CURRENCIES), seed,
                                 per_payment_share=PER_PAYMENT_SHARE)
    run(lambda: bootstrap.merchant_registry(d.settings, d.session).upsert(accounts))


def _payments(cutoff: datetime, n: int, seed: int, invalid_ratio: float) -> list[loadgen.SampleRecord]:
    """Payments captured in the last seconds before `cutoff`."""
    return list(loadgen.generate(n, merchants_n=MERCHANTS, currencies=list(CURRENCIES), seed=seed,
                                 invalid_ratio=invalid_ratio, duplicate_ratio=0.005,
                                 start=cutoff - timedelta(seconds=6), span=timedelta(seconds=5)))


def stage_env(bank_url: str, token: str) -> dict[str, str]:
    return {
        "SETTLEMENT_BATCHER__DEFAULT_BANK": json.dumps(DEMO_BANK),
        "SETTLEMENT_BATCHER__SEAL_CHECK_INTERVAL_S": "0.5",
        "SETTLEMENT_GATEWAY__DEFAULT_ENDPOINT": bank_url,
        "SETTLEMENT_GATEWAY__DEFAULT_TOKEN": token,
        "SETTLEMENT_GATEWAY__POLL_INTERVAL_S": "0.5",
        "SETTLEMENT_GATEWAY__BREAKER_RESET_S": "2",
    }


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the workers, the bank and the namespace are cleaned up."""
    def _interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def drop_quietly(ns: Namespace) -> None:
    try:
        drop(ns)
    except Exception as exc:  # cleanup must not hide the run's own outcome
        console.print(f"[yellow]could not drop namespace {ns.prefix}: {exc}[/yellow]")


def _kept(ns: Namespace, bank_dir: Path, log_dir: Path) -> None:
    env_file = log_dir.parent / f"{ns.prefix}.env"
    env_file.write_text("".join(f"export {k}={v}\n" for k, v in sorted(ns.env.items())))
    console.print(f"kept namespace {ns.prefix} and the banks' state in {bank_dir}/; inspect with\n"
                  f"  source {env_file} && settlement batches list")


# -- waiting for the stages --------------------------------------------------


@dataclass
class Progressed:
    done: int
    total: int | None
    note: str = ""
    finished: bool = False


def _wait(what: str, poll: Callable[[], Progressed], timeout_s: float, every_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    with _progress() as progress:
        task = progress.add_task(what, total=None, rate="")
        while True:
            st = run(poll)
            progress.update(task, completed=st.done, total=st.total, rate=st.note)
            if st.finished:
                return
            if time.monotonic() > deadline:
                fail(f"{what}: still {st.done}/{st.total} {st.note} after {timeout_s:.0f}s; "
                     "see the logs")
            time.sleep(every_s)


def _wait_started(d: DemoRun, roles: dict[str, int]) -> None:
    s, want = d.settings, sum(roles.values())
    groups = {f"{s.worker.group_prefix}-{role}": n for role, n in roles.items()}
    admin = AdminClient(s.kafka.client_config())

    def poll() -> Progressed:
        joined = ready_members(admin, list(groups))
        up = d.bank.ready()
        done = sum(min(joined.get(g, 0), n) for g, n in groups.items())
        return Progressed(done + up, want + 1, "workers in their groups, mock bank up",
                          done == want and up)

    _wait("starting processes", poll, d.timeout_s)


def _wait_ledger(d: DemoRun, start_batchers: Callable[[int, float], None]) -> None:
    """Until every record is recorded or dead-lettered; the batchers start on the way, once
    the ledger's pace shows (a fifth of the records, or a few seconds)."""
    s, total, t0 = d.settings, len(d.manifest), time.monotonic()
    started = False

    def poll() -> Progressed:
        nonlocal started
        left = group_lag(s.kafka, f"{s.worker.group_prefix}-ledger", s.topics.payments)
        done, elapsed = max(total - left, 0), time.monotonic() - t0
        if not started and (done >= total / 5 or elapsed >= 6 or left == 0):
            start_batchers(done, elapsed)
            started = True
        return Progressed(done, total, f"{done / max(elapsed, 1e-9):,.0f}/s", left == 0)

    _wait("ledger: recorded or dead-lettered", poll, d.timeout_s)


def _wait_sealed(d: DemoRun) -> None:
    s = d.settings

    def poll() -> Progressed:
        rows = list(d.session.execute("SELECT status, settlement_date FROM batches PER PARTITION "
                                      "LIMIT 1"))
        sealed = [r for r in rows if r.status == "sealed"]
        to_seal = (d.seal_at - datetime.now(UTC)).total_seconds()
        if to_seal > 0:
            return Progressed(0, len(rows) or None, f"seal in {to_seal:.0f}s")
        unwritten = unwritten_payouts(d.session)
        done = bool(rows) and len(sealed) == len(rows) and unwritten == 0 and pending_records(
            s.kafka, f"{s.worker.group_prefix}-batcher", s.topics.items) == 0
        if done:
            d.settlement_date = max(r.settlement_date.date() for r in sealed)
        note = "pacs.008 sealed" + (f", payouts of {unwritten} being written" if unwritten else "")
        return Progressed(len(sealed), len(rows), note, done)

    _wait("batcher: batches per bank and currency", poll, d.timeout_s)


def _wait_delivered(d: DemoRun) -> None:
    def poll() -> Progressed:
        sealed = sum(1 for r in d.session.execute(
            "SELECT status FROM batches PER PARTITION LIMIT 1") if r.status == "sealed")
        delivered = sum(1 for r in d.session.execute("SELECT status FROM deliveries")
                        if r.status == "delivered")
        return Progressed(delivered, sealed, "pacs.008 answered by their bank",
                          sealed > 0 and delivered >= sealed)

    _wait("gateway: pacs.008 to the banks", poll, d.timeout_s)


def _move_bank_clock(d: DemoRun) -> None:
    """The banks have decided every transaction: move their clock through booking time, the
    returns and the end of each day they still owe, without waiting for our side between."""
    config = validated(d.bank.config)
    for step in clock_plan(config, d.settlement_date):
        if step.to <= run(d.bank.clock):
            continue
        move = run(partial(d.bank.move_clock, to=step.to))
        d.statements_sent += move.count("camt.053")
        sent = ", ".join(f"{n} {family}" for family, n in sorted(move.families().items()))
        local = move.now.astimezone(config.banks[0].zone)
        console.print(f"bank clock -> {local:%a %Y-%m-%d %H:%M:%S %Z} ({step.what}): "
                      f"{sent or 'nothing due'}")


def _wait_final(d: DemoRun) -> None:
    """Until every payout is where the banks' own records say, and every statement is stored."""
    theirs = run(d.bank.records)
    want = {e2e: bank_outcome(rec) for e2e, rec in theirs.items()}

    def poll() -> Progressed:
        ours = _payout_statuses(d.session)
        st = Counter(v[0] for v in ours.values())
        done = sum(1 for e2e, v in ours.items() if v[0] in FINAL and want.get(e2e) == v[0])
        stored = stored_statements(d.session)
        note = (f"answered {len(ours) - st['sent']}, booked {st['settled'] + st['returned']}, "
                f"returned {st['returned']}, statements {stored}/{d.statements_sent}")
        return Progressed(done, len(ours), note, done == len(ours) and stored >= d.statements_sent)

    _wait("inbound: payouts final", poll, d.timeout_s)
    d.statement_days = sorted({r.to_date.date() for r in d.session.execute(
        "SELECT to_date FROM bank_statements")})


def stored_statements(session: Session) -> int:
    """The camt.053s the inbound stage has stored. Counted here, not with count(*): an
    aggregate over the table makes Cassandra warn, and the driver logs it on every poll."""
    return sum(1 for _ in session.execute("SELECT bank_bic FROM bank_statements"))


def unwritten_payouts(session: Session) -> int:
    """Sealed batches whose payout rows are not written yet: they follow the commit that
    publishes the batch's pacs.008, so "every payout" is not there before this is 0."""
    return sum(1 for _ in session.execute("SELECT batch_id FROM payouts_pending"))


def _payout_statuses(session: Session) -> dict[str, tuple[str, str, int]]:
    """EndToEndId -> (status, payout id, amount) of every payout that was sent."""
    return {r.end_to_end_id: (r.status, r.payout_id, r.amount_minor) for r in session.execute(
        "SELECT end_to_end_id, status, payout_id, amount_minor FROM payouts")
        if r.status != "nothing_to_pay"}
