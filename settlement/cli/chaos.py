"""`settlement chaos`: the whole pipeline on the local stack under seeded faults, then checked.

Each run: a fresh namespace, the mock banks, every role as >= 2 processes, payments
produced over a few seconds while the seed's fault schedule is carried out (SIGKILL,
zombie workers, broker and Cassandra kill -9, a Cassandra stall past the transaction
timeout, bank 5xx and timeout storms, rebalance storms); the run then waits, without
any operator step, for every payment to be recorded, paid, answered and booked, and the
independent checker (settlement/chaos/checker.py) verifies I1-I7.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from cassandra.cluster import Session
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from settlement import bootstrap, loadgen
from settlement.chaos import checker
from settlement.chaos.inject import Banks, Injector, Stack
from settlement.chaos.plan import ALL_KINDS, STACK_KINDS, Kind, Timeouts, plan, run_seed
from settlement.cli.context import console, fail, run, state
from settlement.cli.demo import (
    MERCHANTS,
    PER_PAYMENT_SHARE,
    drop_quietly,
    sigterm_interrupts,
    stage_env,
    start_banks,
    stored_statements,
    unwritten_payouts,
)
from settlement.cli.demo_banks import CURRENCIES, DEMO_BANKS, clock_plan, validated
from settlement.config import Settings
from settlement.kafka.reader import group_lag, pending_records, ready_members
from settlement.runtime.local import Fleet, WorkerProc, child_env
from settlement.runtime.mockbank_proc import MockBankProcess, bank_outcome
from settlement.runtime.namespace import Namespace, namespace
from settlement.runtime.stack import ensure_stack, find_infra

ROLES = ("ledger", "batcher", "gateway", "inbound")
FINAL = frozenset({"settled", "rejected", "returned"})
# Worker timeouts for chaos runs: short enough that a fault can exceed them in seconds.
TRANSACTION_TIMEOUT_MS = 20_000
SESSION_TIMEOUT_MS = 10_000
SEAL_GRACE_S = 5.0


def register(app: typer.Typer) -> None:
    app.command("chaos")(chaos)


@dataclass
class RunResult:
    run: int
    seed: int
    payments: int
    faults: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    namespace: str = ""
    log_dir: str = ""

    @property
    def ok(self) -> bool:
        return not self.violations


def _kinds(text: str) -> tuple[Kind, ...]:
    if text == "all":
        return ALL_KINDS
    names = {k.value: k for k in Kind}
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part not in names:
            raise typer.BadParameter(f"unknown fault {part!r}; one of: all, {', '.join(names)}")
        out.append(names[part])
    if not out:
        raise typer.BadParameter("no fault kind given")
    return tuple(out)


def chaos(
    ctx: typer.Context,
    runs: Annotated[int, typer.Option(min=1, help="Runs in the campaign.")] = 1,
    payments: Annotated[int, typer.Option(min=100, help="Payments per run.")] = 5_000,
    faults: Annotated[int, typer.Option(min=0, help="Faults per run.")] = 3,
    seed: Annotated[Optional[int], typer.Option(  # noqa: UP045 - typer needs Optional
        help="Campaign seed (random if not given; always printed). Run i uses a seed "
             "derived from it, also printed.")] = None,
    run_seed_: Annotated[Optional[int], typer.Option(  # noqa: UP045
        "--run-seed", help="Replay one run with this run seed (as printed).")] = None,
    first_run: Annotated[int, typer.Option(
        min=0, help="Index of the first run (to continue a campaign with the same seed).")] = 0,
    kinds: Annotated[str, typer.Option(
        help="Fault menu, comma-separated, or 'all': " + ", ".join(k.value for k in Kind))] = "all",
    window_s: Annotated[float, typer.Option(
        min=5, help="Seconds after the first payment over which the faults are spread.")] = 45,
    produce_s: Annotated[float, typer.Option(
        min=1, help="Seconds over which each run's payments are produced.")] = 15,
    processes: Annotated[int, typer.Option(min=1, max=4, help="Processes per role.")] = 2,
    timeout_s: Annotated[float, typer.Option(
        help="A run that has not settled this long after its last fault fails (I6).")] = 420,
    out: Annotated[Path, typer.Option(help="Reports (JSON) and logs go here.")] = Path("chaos-out"),
    keep: Annotated[bool, typer.Option(
        help="Keep every run's namespace (failed runs are always kept).")] = False,
) -> None:
    """Run the whole pipeline under seeded faults and check invariants I1-I7 after each run.

    Needs the local stack that infra/ runs (it is started if down): the broker and
    Cassandra are killed and restarted through infra/up.sh. Each run provisions its own
    namespace, starts 3 mock banks and every role (ledger, batcher, gateway, inbound) as
    --processes processes, produces --payments payments (with bad records and
    redeliveries) while carrying out --faults faults from the menu, waits for the
    pipeline to settle by itself, then runs the independent checker. Exit 1 if any run
    broke an invariant or did not settle; every violation names the payment or payout
    ids. A run's seed fixes its payments, its banks' decisions and its fault schedule.

    Examples:
      settlement chaos --runs 3 --payments 5000 --faults 4 --seed 7
      settlement chaos --run-seed 1234567 --payments 5000 --faults 4   # replay one run
    """
    app = state(ctx)
    base = app.settings(**({} if app.log_level or app.log_format else {"log": {"level": "warning"}}))
    base = base.model_copy(update={"kafka": base.kafka.model_copy(
        update={"extra": {"log_level": "2", **base.kafka.extra}})})  # not every refused connect
    menu = _kinds(kinds)
    # this process's own driver complains through every Cassandra fault it causes
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    infra = find_infra()
    if infra is None and STACK_KINDS & set(menu):
        fail("chaos kills and restarts the stack's servers through infra/up.sh: run it from a "
             "checkout, or leave the stack faults out (--kinds kill,zombie,bank-5xx,...)")
    run(lambda: ensure_stack(base))
    stack = Stack(infra or Path("infra"), child_env({}))
    if STACK_KINDS & set(menu):
        run(stack.check)
    campaign = seed if seed is not None else random.SystemRandom().randrange(1, 2**31)
    seeds = ([(first_run, run_seed_)] if run_seed_ is not None else
             [(i, run_seed(campaign, i)) for i in range(first_run, first_run + runs)])
    console.print(f"[bold]chaos campaign seed={campaign}[/bold]: {len(seeds)} run(s) x "
                  f"{payments:,} payments x {faults} faults from {{{', '.join(k.value for k in menu)}}}; "
                  f"{processes} processes per role; reports in {out}/")
    out.mkdir(parents=True, exist_ok=True)
    results: list[RunResult] = []
    t0 = time.monotonic()
    for i, rs in seeds:
        console.rule(f"run {i} seed={rs}")
        console.print(f"replay: settlement chaos --run-seed {rs} --payments {payments} "
                      f"--faults {faults} --kinds {kinds} --window-s {window_s:g} "
                      f"--produce-s {produce_s:g} --processes {processes}")
        r = _one_run(base, stack, i, rs, payments, faults, menu, window_s, produce_s,
                     processes, timeout_s, out, keep)
        results.append(r)
        (out / f"run-{i}-{rs}.json").write_text(json.dumps(asdict(r), indent=2, default=str))
        _print_run(r)
    _print_campaign(campaign, results, time.monotonic() - t0)
    (out / f"campaign-{campaign}.json").write_text(json.dumps(
        {"seed": campaign, "runs": [asdict(r) for r in results]}, indent=2, default=str))
    if not all(r.ok for r in results):
        raise typer.Exit(1)


# -- one run -----------------------------------------------------------------


@dataclass
class Ctx:
    ns: Namespace
    session: Session
    bank: MockBankProcess
    fleet: dict[str, list[WorkerProc]]
    manifest: list[loadgen.SampleRecord]
    deadline: float = 0.0
    statements_sent: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.ns.settings


def _one_run(base: Settings, stack: Stack, index: int, seed: int, payments: int, faults: int,
             menu: tuple[Kind, ...], window_s: float, produce_s: float, processes: int,
             timeout_s: float, out: Path, keep: bool) -> RunResult:
    run_id = f"{datetime.now(UTC):%m%d%H%M%S}-{index}"
    ns = run(lambda: namespace(base, f"chaos-{run_id}"))
    log_dir = out / "logs" / run_id
    result = RunResult(index, seed, payments, namespace=ns.prefix, log_dir=str(log_dir))
    timeouts = Timeouts(SESSION_TIMEOUT_MS / 1000, TRANSACTION_TIMEOUT_MS / 1000,
                        base.gateway.read_timeout_s)
    workers = dict.fromkeys(ROLES, processes)
    schedule = plan(seed, faults=faults, window_s=window_s, kinds=menu, workers=workers,
                    timeouts=timeouts)
    for line in schedule.describe():
        console.print(f"  planned: {line}")
    bank_dir = log_dir / "banks"
    with ExitStack() as cleanup, sigterm_interrupts():
        bank, session, token = start_banks(cleanup, ns, bank_dir, log_dir, seed)
        env = child_env({**ns.env, **stage_env(bank.url, token),
                         "SETTLEMENT_BATCHER__SEAL_GRACE_S": str(SEAL_GRACE_S),
                         "SETTLEMENT_KAFKA__TRANSACTION_TIMEOUT_MS": str(TRANSACTION_TIMEOUT_MS),
                         "SETTLEMENT_KAFKA__TXN_CALL_TIMEOUT_S": "15",
                         "SETTLEMENT_KAFKA__SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS)})
        fleet = {role: Fleet.of(role, n, env=env, log_dir=log_dir).workers for role, n in workers.items()}
        everyone = Fleet([w for ws in fleet.values() for w in ws])
        cleanup.callback(everyone.stop, 60)
        accounts = loadgen.merchants(MERCHANTS, len(DEMO_BANKS), list(CURRENCIES), seed,
                                     per_payment_share=PER_PAYMENT_SHARE)
        run(lambda: bootstrap.merchant_registry(ns.settings, session).upsert(accounts))
        everyone.start()
        bank.wait_ready(60)
        start = datetime.now(UTC) + timedelta(seconds=1)
        manifest = list(loadgen.generate(
            payments, merchants_n=MERCHANTS, currencies=list(CURRENCIES), seed=seed,
            invalid_ratio=0.01, duplicate_ratio=0.01, start=start, span=timedelta(seconds=produce_s)))
        c = Ctx(ns, session, bank, fleet, manifest)
        _wait_joined(c, sum(workers.values()))
        injector = Injector(schedule, fleet, stack, Banks(bank.admin, [b[0] for b in DEMO_BANKS]),
                            env, log_dir, base.gateway.read_timeout_s)
        cleanup.callback(injector.close)
        t0 = time.monotonic()
        injector.start(t0)
        producer = _Producer(ns.settings, manifest, produce_s)
        producer.start()
        _settle(c, injector, producer, t0, timeout_s, result)
        injector.close()
        result.faults = [{"planned": a.fault.describe(), "started_s": round(a.started_s, 1),
                          "took_s": round(a.took_s, 1), "note": a.note} for a in injector.applied]
        result.violations += [f"injector: {e}" for e in injector.errors]
        # every worker must still be running by itself (work resumes without an operator)
        dead = [f"{w.instance_id} (exit {w.proc.returncode if w.proc else None})"
                for ws in fleet.values() for w in ws if not w.alive]
        if dead:
            result.violations.append(f"I6 worker(s) exited by themselves: {dead}")
        codes = everyone.stop(90)
        unclean = {w.instance_id: code for w, code in zip(everyone.workers, codes, strict=True)
                   if code not in (0, None)}
        if unclean and not dead:
            result.violations.append(f"I6 worker(s) did not drain cleanly on SIGTERM: {unclean}")
        result.timings_s["settle"] = round(time.monotonic() - t0, 1)
        # checked even when it did not settle: the violations show what is missing
        mark = time.monotonic()
        try:
            verdict = checker.check(_sources(c), _sent(manifest))
            result.violations += verdict.violations
            result.figures.update(verdict.figures)
        except Exception as exc:  # the checker could not read something: the run fails
            result.violations.append(f"checker could not complete: {exc!r}")
        result.timings_s["check"] = round(time.monotonic() - mark, 1)
        result.timings_s.update({k: round(v, 1) for k, v in c.timings.items()})
        if result.ok and not keep:
            cleanup.callback(shutil.rmtree, log_dir, ignore_errors=True)
            cleanup.callback(drop_quietly, ns)
        else:
            console.print(f"kept namespace {ns.prefix} and logs in {log_dir}/")
    return result


class _Producer(threading.Thread):
    """Produce the manifest over `span_s` seconds, as the payments' captured_at says."""

    def __init__(self, settings: Settings, manifest: list[loadgen.SampleRecord], span_s: float) -> None:
        super().__init__(name="chaos-producer", daemon=True)
        self.settings, self.manifest, self.span_s = settings, manifest, span_s
        self.error: str | None = None
        self.sent = 0

    def run(self) -> None:
        p = Producer({**self.settings.kafka.client_config(), "enable.idempotence": True,
                      "linger.ms": 20, "message.timeout.ms": 600_000})
        topic, t0, n = self.settings.topics.payments, time.monotonic(), len(self.manifest)
        for i, rec in enumerate(self.manifest):
            while True:
                try:
                    p.produce(topic, value=rec.value, key=rec.key)
                    break
                except BufferError:
                    p.poll(0.05)
            self.sent = i + 1
            ahead = (i + 1) * self.span_s / n - (time.monotonic() - t0)
            if ahead > 0.01:
                p.poll(0)
                time.sleep(ahead)
        left = p.flush(600)
        if left:
            self.error = f"{left} record(s) not acknowledged by Kafka"


def _sent(manifest: list[loadgen.SampleRecord]) -> list[checker.Sent]:
    return [checker.Sent(r.payment_id, r.expect, r.value, r.amount_minor, r.fee_minor, r.currency)
            for r in manifest]


def _sources(c: Ctx) -> checker.Sources:
    s = c.settings
    pw = s.cassandra.password.get_secret_value() if s.cassandra.password else None
    return checker.Sources(
        kafka={k: str(v) for k, v in s.kafka.client_config().items()},
        topics={"payments_dlq": s.topics.payments_dlq, "items": s.topics.items,
                "bank_outbound": s.topics.bank_outbound},
        cassandra_hosts=list(s.cassandra.contact_points), cassandra_port=s.cassandra.port,
        keyspace=s.cassandra.keyspace, bank_url=c.bank.url, bank_bics=[b[0] for b in DEMO_BANKS],
        cassandra_user=s.cassandra.username, cassandra_password=pw)


# -- waiting for the pipeline to settle by itself ---------------------------------


DEAD_GRACE_S = 10.0  # a worker found dead this long (and not held down by a fault) ends the wait


def _poll(what: str, probe: Callable[[], tuple[bool, str]], deadline: float,
          every_s: float = 1.0, dead: Callable[[], list[str]] = list) -> bool:
    """Until `probe` says done; errors (a server restarting) are retried. False on timeout,
    or when a worker has died by itself (no use waiting: nothing restarts it)."""
    t0, last, note = time.monotonic(), 0.0, ""
    dead_since: float | None = None
    while True:
        gone = dead()
        dead_since = (dead_since or time.monotonic()) if gone else None
        if dead_since is not None and time.monotonic() - dead_since > DEAD_GRACE_S:
            console.print(f"  [red]{what}: worker(s) died by themselves: {gone}[/red]")
            return False
        try:
            done, note = probe()
        except Exception as exc:  # a fault in progress: look again
            done, note = False, f"({type(exc).__name__}: {str(exc)[:80]})"
        if done:
            console.print(f"  {what}: done in {time.monotonic() - t0:.1f}s ({note})")
            return True
        if time.monotonic() > deadline:
            console.print(f"  [red]{what}: not done at the deadline ({note})[/red]")
            return False
        if time.monotonic() - last > 10:
            console.print(f"  {what}: {note}")
            last = time.monotonic()
        time.sleep(every_s)


def _wait_joined(c: Ctx, want: int) -> None:
    s = c.settings
    groups = [f"{s.worker.group_prefix}-{role}" for role in ROLES]
    admin = AdminClient(s.kafka.client_config())

    def probe() -> tuple[bool, str]:
        joined = sum(ready_members(admin, groups).values())
        return joined >= want and c.bank.ready(), f"{joined}/{want} workers in their groups"

    if not _poll("start", probe, time.monotonic() + 120):
        fail("the workers did not join their groups in 120 s; see the logs")


def _settle(c: Ctx, injector: Injector, producer: _Producer, t0: float, timeout_s: float,
            result: RunResult) -> bool:
    s, total = c.settings, len(c.manifest)
    group = s.worker.group_prefix

    def dead() -> list[str]:
        return [w.instance_id for ws in c.fleet.values() for w in ws
                if not w.alive and w.instance_id not in injector.down]

    def stage(name: str, probe: Callable[[], tuple[bool, str]]) -> bool:
        # the deadline counts from the last fault: faults may hold a stage back
        mark = time.monotonic()
        ok = _poll(name, probe, c.deadline or time.monotonic() + timeout_s, dead=dead)
        c.timings[name] = time.monotonic() - mark
        if not ok:
            result.violations.append(f"I6 {name}: did not settle by itself within "
                                     f"{timeout_s:.0f}s of the last fault")
        return ok

    def ledger() -> tuple[bool, str]:
        left = group_lag(s.kafka, f"{group}-ledger", s.topics.payments)
        return (producer.sent == total and not producer.is_alive() and left == 0,
                f"produced {producer.sent:,}/{total:,}, ledger lag {left:,}")

    def faults_done() -> tuple[bool, str]:
        return injector.done, f"{len(injector.applied)}/{len(injector.schedule.faults)} faults"

    def sealed() -> tuple[bool, str]:
        rows = list(c.session.execute("SELECT status FROM batches PER PARTITION LIMIT 1"))
        open_ = sum(1 for r in rows if r.status != "sealed")
        items = pending_records(s.kafka, f"{group}-batcher", s.topics.items)
        unwritten = unwritten_payouts(c.session)
        return (bool(rows) and open_ == 0 and items == 0 and unwritten == 0,
                f"{len(rows) - open_}/{len(rows)} batches sealed, {items} items to place, "
                f"{unwritten} sealed batches' payouts to write")

    def delivered() -> tuple[bool, str]:
        batches = {r.msg_id for r in c.session.execute(
            "SELECT status, msg_id FROM batches PER PARTITION LIMIT 1") if r.msg_id}
        done = {r.msg_id for r in c.session.execute("SELECT msg_id, status FROM deliveries")
                if r.status == "delivered"}
        return batches <= done, f"{len(batches & done)}/{len(batches)} pacs.008 answered"

    def final() -> tuple[bool, str]:
        theirs = c.bank.records()
        ours = {r.end_to_end_id: r.status for r in c.session.execute(
            "SELECT end_to_end_id, status FROM payouts") if r.status != "nothing_to_pay"}
        agree = sum(1 for e, st in ours.items() if st in FINAL and e in theirs
                    and bank_outcome(theirs[e]) == st)
        stored = stored_statements(c.session)
        return (agree == len(ours) and stored >= c.statements_sent,
                f"{agree}/{len(ours)} payouts final as the banks say, statements "
                f"{stored}/{c.statements_sent}")

    if not stage("produce+ledger", ledger):
        return False
    if producer.error:
        result.violations.append(f"producer: {producer.error}")
    ok = stage("faults", faults_done)
    c.deadline = time.monotonic() + timeout_s
    ok = ok and stage("seal", sealed) and stage("deliver", delivered)
    if not ok:
        return False
    try:
        _move_clock(c)
    except Exception as exc:  # a bank API call failed: the run fails, with the reason
        result.violations.append(f"moving the banks' clock failed: {exc!r}")
        return False
    return stage("bank answers applied", final)


def _move_clock(c: Ctx) -> None:
    config = validated(c.bank.config)
    days = sorted({r.settlement_date.date() for r in c.session.execute(
        "SELECT settlement_date FROM batches PER PARTITION LIMIT 1") if r.settlement_date})
    for day in days:
        for step in clock_plan(config, day):
            if step.to <= c.bank.clock():
                continue
            c.statements_sent += c.bank.move_clock(to=step.to).count("camt.053")


# -- output ------------------------------------------------------------------


def _print_run(r: RunResult) -> None:
    for f in r.faults:
        console.print(f"  fault {f['planned']}: at t+{f['started_s']}s, took {f['took_s']}s, {f['note']}")
    figs = ", ".join(f"{k} {v:,}" for k, v in r.figures.items())
    console.print(f"  figures: {figs}")
    console.print(f"  timings: {r.timings_s}")
    if r.ok:
        console.print(f"[green]run {r.run} seed={r.seed}: I1-I7 hold[/green]")
    else:
        console.print(f"[red]run {r.run} seed={r.seed}: {len(r.violations)} violation(s)[/red]")
        for line in r.violations:
            console.print(f"  {line}", style="red", markup=False, highlight=False)


def _print_campaign(seed: int, results: list[RunResult], took_s: float) -> None:
    bad = [r for r in results if not r.ok]
    faults = sum(len(r.faults) for r in results)
    payments = sum(r.payments for r in results)
    console.rule("campaign")
    console.print(f"campaign seed={seed}: {len(results)} run(s), {payments:,} payments, "
                  f"{faults} faults, {took_s / 60:.1f} min; "
                  + ("[green]no violation[/green]" if not bad else
                     f"[red]{len(bad)} run(s) with violations: seeds {[r.seed for r in bad]}[/red]"))


