"""Reconciliation benchmark: N statement entries against N expected payouts, one day.

Sets up a keyspace of its own with N expected payouts (as sealed batches of 10,000 write
them), writes a camt.053.001.08 of N entries booking them (with a few injected breaks, so
the run does real work on every path), then times `settlement reconcile --statement FILE`
as a child process: wall time, and its peak RSS from the kernel (wait4's ru_maxrss).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from settlement.config import Settings
from settlement.domain.batch import transaction_ids
from settlement.domain.money import format_minor
from settlement.domain.reconciliation import ExpectedBooking, ExpectedKind
from settlement.iso20022 import xsd
from settlement.store.expected import CassandraExpectedStore
from settlement.store.migrate import migrate
from settlement.store.session import connect

BIC = "BENCDEFFXXX"
ACCOUNT = "DE89370400440532013000"
DAY = date(2026, 11, 20)
BATCH = 10_000
NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"


@dataclass
class ReconBenchResult:
    entries: int
    expected: int
    injected_breaks: dict[str, int]
    found_breaks: dict[str, int]
    matched: int
    file_mb: float
    setup_s: float
    wall_s: float
    entries_per_s: float
    peak_rss_mb: float
    run_duration_ms: int


def _amount(i: int) -> int:
    return 100 + (i * 7919) % 1_000_000


def _payout(i: int) -> str:
    return f"PO{i:026d}"


def _entry(i: int, amount: int, *, e2e: str | None, uetr: str | None, credit: bool = False) -> str:
    refs = "" if e2e is None else (
        f"<NtryDtls><TxDtls><Refs><MsgId>M{i // BATCH:08d}</MsgId><EndToEndId>{e2e}</EndToEndId>"
        f"<UETR>{uetr}</UETR></Refs></TxDtls></NtryDtls>")
    return (f"<Ntry><Amt Ccy=\"EUR\">{format_minor(amount, 'EUR')}</Amt>"
            f"<CdtDbtInd>{'CRDT' if credit else 'DBIT'}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
            f"<BookgDt><Dt>{DAY}</Dt></BookgDt><ValDt><Dt>{DAY}</Dt></ValDt>"
            f"<AcctSvcrRef>BENC{i:012d}</AcctSvcrRef>"
            f"<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>{'RCDT' if credit else 'ICDT'}</Cd>"
            f"<SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>{refs}</Ntry>\n")


def write_statement(path: Path, n: int, breaks_each: int) -> dict[str, int]:
    """A camt.053 of n entries booking payouts 0..n-1: the first `breaks_each` amounts
    altered by +1, the next `breaks_each` replaced by unknown credits (so they are missing
    at the bank, and unexpected). Returns the breaks the reconciliation must find."""
    opening, true_total = 10**15, sum(_amount(i) for i in range(n))
    head = (f"<?xml version='1.0' encoding='UTF-8'?>\n<Document xmlns=\"{NS}\"><BkToCstmrStmt>"
            f"<GrpHdr><MsgId>BENCHSTMT</MsgId><CreDtTm>{DAY}T23:00:00+00:00</CreDtTm></GrpHdr>"
            f"<Stmt><Id>BENCH{DAY:%Y%m%d}</Id><ElctrncSeqNb>1</ElctrncSeqNb>"
            f"<CreDtTm>{DAY}T23:00:00+00:00</CreDtTm><FrToDt><FrDtTm>{DAY}T00:00:00+00:00</FrDtTm>"
            f"<ToDtTm>{DAY}T23:59:59+00:00</ToDtTm></FrToDt><Acct><Id><IBAN>{ACCOUNT}</IBAN></Id>"
            f"<Ccy>EUR</Ccy><Svcr><FinInstnId><BICFI>{BIC}</BICFI></FinInstnId></Svcr></Acct>")

    def balance(code: str, minor: int) -> str:
        return (f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy=\"EUR\">"
                f"{format_minor(abs(minor), 'EUR')}</Amt><CdtDbtInd>{'CRDT' if minor >= 0 else 'DBIT'}"
                f"</CdtDbtInd><Dt><Dt>{DAY}</Dt></Dt></Bal>")

    # the bank's closing counts what it really booked: the unknown credits instead of the
    # payouts they replace, and the altered entries' true amounts (so exactly one balance break)
    replaced = range(breaks_each, 2 * breaks_each)
    closing = opening - true_total + sum(_amount(i) + 4242 for i in replaced)
    with path.open("w", encoding="utf-8") as f:
        f.write(head + balance("OPBD", opening) + balance("CLBD", closing))
        buf: list[str] = []
        for i in range(n):
            _, e2e, uetr = transaction_ids(_payout(i))
            if i < breaks_each:
                buf.append(_entry(i, _amount(i) + 1, e2e=e2e, uetr=uetr))
            elif i in replaced:
                buf.append(_entry(i, 4242, e2e=None, uetr=None, credit=True))
            else:
                buf.append(_entry(i, _amount(i), e2e=e2e, uetr=uetr))
            if len(buf) >= 5000:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf) + "</Stmt></BkToCstmrStmt></Document>\n")
    return {"amount_mismatch": breaks_each, "balance_mismatch": 1 if breaks_each else 0,
            "missing_at_bank": breaks_each, "unexpected_at_bank": breaks_each}


def run_recon_bench(base: Settings, n: int, breaks_each: int, workdir: Path, tag: str,
                    say: Callable[[str], None]) -> ReconBenchResult:
    keyspace = f"benchr_{tag}"
    s = base.model_copy(update={"cassandra": base.cassandra.model_copy(update={"keyspace": keyspace})})
    t0 = time.monotonic()
    session = connect(s.cassandra)
    try:
        migrate(session, s.cassandra)
        session.set_keyspace(keyspace)
        store = CassandraExpectedStore(session, concurrency=32)
        say(f"writing {n:,} expected payouts ...")
        for start in range(0, n, BATCH):
            store.save_payouts(f"B{start // BATCH:06d}", [ExpectedBooking(
                ExpectedKind.PAYOUT, BIC, DAY, "EUR", transaction_ids(_payout(i))[1], _amount(i),
                f"M{start // BATCH:08d}", f"merchant-{i % 5000}", _amount(i) + 25, 25)
                for i in range(start, min(n, start + BATCH))])
        workdir.mkdir(parents=True, exist_ok=True)
        sample = workdir / "sample.xml"
        write_statement(sample, 200, 2)
        xsd.validate(sample.read_bytes(), "camt.053.001.08")  # the generator emits valid files
        path = workdir / f"camt053-{n}.xml"
        say(f"writing a camt.053 of {n:,} entries to {path} ...")
        injected = write_statement(path, n, breaks_each)
        setup_s = time.monotonic() - t0
        say("reconciling (child process) ...")
        env = {**os.environ, "SETTLEMENT_CASSANDRA__KEYSPACE": keyspace,
               "SETTLEMENT_CASSANDRA__PORT": str(s.cassandra.port),
               "SETTLEMENT_LOG__LEVEL": "warning"}
        t1 = time.monotonic()
        with (workdir / "report.json").open("w+b") as out, (workdir / "stderr.txt").open("w+b") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "settlement", "reconcile", "--date", DAY.isoformat(),
                 "--statement", str(path), "--bank", BIC, "--format", "json"],
                stdout=out, stderr=err, env=env)
            _, status, usage = os.wait4(proc.pid, 0)  # the child's own peak RSS, from the kernel
            proc.returncode = os.waitstatus_to_exitcode(status)
            wall = time.monotonic() - t1
            out.seek(0)
            err.seek(0)
            report_bytes, err_text = out.read(), err.read().decode(errors="replace")
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"reconcile failed ({proc.returncode}): {err_text[-2000:]}")
        # the reconcile process (its own VmHWM, as it reports it, not more than the kernel's
        # ru_maxrss), plus its parser process: they run at the same time
        resources = json.loads(report_bytes)["resources"]
        rss_kb = (min(usage.ru_maxrss, 1024 * resources["peak_rss_mb"])
                  + 1024 * resources["parser_peak_rss_mb"])
        report = json.loads(report_bytes)
        return ReconBenchResult(
            entries=n, expected=report["run"]["expected"], injected_breaks=injected,
            found_breaks=report["run"]["break_counts"], matched=report["run"]["matched"],
            file_mb=round(path.stat().st_size / 2**20, 1), setup_s=round(setup_s, 1),
            wall_s=round(wall, 2), entries_per_s=round(n / wall), peak_rss_mb=round(rss_kb / 1024, 1),
            run_duration_ms=report["run"]["duration_ms"])
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        session.cluster.shutdown()

