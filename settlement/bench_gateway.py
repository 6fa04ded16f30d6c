"""Gateway + inbound benchmark against a real mock bank process (no faults).

Items are pre-produced for 3 banks, per-payment merchants, with `shards`
batches per bank, all in one minute window; one batcher seals them at the
cutoff, one gateway delivers them, one inbound applies the answers. Measured
per pacs.008: from its record timestamp on bank.outbound to the moment the
last of its payouts was moved by the bank's pacs.002 (payout_transitions.at);
throughput: batches and transactions per second over the delivery burst.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from settlement.bench_batcher import _env as batcher_env
from settlement.bench_batcher import drop_namespace, namespace_settings, next_cutoff, produce_items
from settlement.config import Settings
from settlement.domain.merchant import MerchantAccount
from settlement.domain.payment import SettlementItem
from settlement.kafka.admin import ensure_topics
from settlement.kafka.reader import read_all
from settlement.runtime.local import Fleet, child_env
from settlement.store.merchants import CassandraMerchantRegistry
from settlement.store.migrate import migrate
from settlement.store.session import connect

BANKS = ["MOCKDEFFXXX", "MOCKFRPPXXX", "MOCKNL2AXXX"]
TOKEN = "bench-token"  # local mock bank only


@dataclass
class GatewayResult:
    batches: int
    transactions: int
    burst_s: float
    batches_per_s: float
    txs_per_s: float
    p50_s: float
    p99_s: float
    max_s: float


def _mock_bank(state: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = {"state_dir": str(state), "clock": {"follow_real_time": False}, "banks": [
        {"bic": b, "token": TOKEN, "timezone": "UTC", "accept_unknown_accounts": True,
         "processor_accounts": [{"id": "DE89370400440532013000", "currency": "EUR",
                                 "balance_minor": 10**15}],
         "faults": {"seed": 1, "reject_rate": 0.0, "return_rate": 0.0, "latency_ms": [0, 0]}}
        for b in BANKS]}
    (state / "banks.yaml").write_text(json.dumps(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "settlement.bank.mockbank", "--config",
                             str(state / "banks.yaml"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("mock bank did not start")


def run_gateway_bench(base: Settings, shards: int, txs_per_batch: int, log_dir: Path,
                      tag: str) -> GatewayResult:
    prefix = f"benchg-{tag}"
    env = batcher_env(prefix, 1.0)
    bank_cfg = json.loads(env["SETTLEMENT_BATCHER__DEFAULT_BANK"]) | {"shards": shards}
    env["SETTLEMENT_BATCHER__DEFAULT_BANK"] = json.dumps(bank_cfg)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _mock_bank(Path(tmp))
        env |= {"SETTLEMENT_GATEWAY__DEFAULT_ENDPOINT": url,
                "SETTLEMENT_GATEWAY__DEFAULT_TOKEN": TOKEN}
        s = namespace_settings(base, env, prefix)
        ensure_topics(s.kafka, s.topics)
        session = connect(s.cassandra)
        fleet = Fleet([])
        try:
            migrate(session, s.cassandra)
            cutoff = next_cutoff(30)
            n = shards * txs_per_batch * len(BANKS)
            CassandraMerchantRegistry(session).upsert(MerchantAccount(
                merchant_id=f"gm-{i:06d}", currency="EUR", creditor_name=f"Merchant {i}",
                account_id="DE89370400440532013000", bank_bic=BANKS[i % len(BANKS)],
                payout_mode="payment") for i in range(n))
            produce_items(s, (SettlementItem(
                payment_id=f"gp-{tag}-{i:06d}", event_id=f"ge-{i}", merchant_id=f"gm-{i:06d}",
                amount_minor=1000 + i, fee_minor=30, currency="EUR",
                captured_at=cutoff - timedelta(seconds=20), bank_bic=BANKS[i % len(BANKS)],
                payout_mode="payment") for i in range(n)))
            for role in ("batcher", "gateway", "inbound"):
                fleet.workers += Fleet.of(role, 1, env=child_env(env), log_dir=log_dir,
                                          prefix=f"{prefix}-").workers
            fleet.start()
            deadline = time.monotonic() + (cutoff - datetime.now(UTC)).total_seconds() + 180
            while time.monotonic() < deadline:
                done = session.execute("SELECT payout_id, status FROM payouts")
                statuses = [r.status for r in done]
                if len(statuses) == n and all(x != "sent" for x in statuses):
                    break
                time.sleep(0.5)
            else:
                raise TimeoutError("payouts did not all get their pacs.002 in time")
        finally:
            fleet.stop()
            proc.terminate()
            proc.wait(10)
        applied: dict[str, float] = {}
        by_batch: dict[str, list[str]] = {}
        for r in session.execute("SELECT payout_id, batch_id FROM payouts"):
            by_batch.setdefault(r.batch_id, []).append(r.payout_id)
        for r in session.execute("SELECT payout_id, status, at FROM payout_transitions"):
            if r.status in ("accepted", "rejected"):
                applied[r.payout_id] = r.at.replace(tzinfo=UTC).timestamp()
        latencies, first_out, last_applied = [], float("inf"), 0.0
        for msg in read_all(s.kafka, s.topics.bank_outbound):
            batch_id = dict(msg.headers() or [])["batch_id"].decode()  # type: ignore[union-attr]
            out_at = msg.timestamp()[1] / 1000
            done_at = max(applied[p] for p in by_batch[batch_id])
            latencies.append(done_at - out_at)
            first_out, last_applied = min(first_out, out_at), max(last_applied, done_at)
        drop_namespace(s, session)
        session.cluster.shutdown()
    latencies.sort()
    burst = max(last_applied - first_out, 1e-3)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return GatewayResult(len(latencies), n, round(burst, 2), round(len(latencies) / burst, 1),
                         round(n / burst, 1), round(statistics.median(latencies), 3),
                         round(p99, 3), round(latencies[-1], 3))


