"""A real ledger worker's HTTP surface, scraped over HTTP: probes, and metrics that match Kafka."""

from __future__ import annotations

import json
import signal
from collections import Counter
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from settlement import metrics
from settlement.domain.merchant import MerchantAccount
from settlement.runtime.local import WorkerProc
from settlement.runtime.mockbank_proc import free_port
from settlement.store.session import connect, live_hosts
from tests.conftest import InProcessWorker, Namespace, wait_until
from tests.integration.helpers import committed, produce_raw, register
from tests.unit.test_payment_contract import BAD_CASES, GOOD

ACCOUNT = MerchantAccount(
    merchant_id="m-1", currency="EUR", creditor_name="Acme", account_id="DE89370400440532013000",
    bank_bic="MOCKDEFFXXX",
)
GOOD_N = 60

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert resp.status_code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(resp.text) for s in fam.samples}


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def probe(port: int, path: str) -> tuple[int, dict[str, Any]]:
    resp = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)
    return resp.status_code, json.loads(resp.content)


def test_probes_and_metrics_of_a_real_worker_match_what_kafka_holds(ns: Namespace) -> None:
    register(ns.settings, [ACCOUNT])
    good = [dict(GOOD, event_id=f"evt-http-{n}", payment_id=f"pay-http-{n}") for n in range(GOOD_N)]
    records: list[tuple[bytes | None, bytes]] = [
        (g["payment_id"].encode(), json.dumps(g).encode()) for g in good]
    records += [(f"bad-{n}".encode(), raw) for n, (_name, raw, _reason) in enumerate(BAD_CASES)]
    produce_raw(ns.settings, records)
    reasons = Counter(reason for _name, _raw, reason in BAD_CASES)
    payments, dlq, items = (ns.settings.topics.payments, ns.settings.topics.payments_dlq,
                            ns.settings.topics.items)

    port = free_port()
    worker = ns.build_worker(health_port=port, health_host="127.0.0.1")
    assert worker.http is not None
    with worker.http:  # up before the loop runs: live, but not in the group yet
        assert probe(port, "/healthz")[0] == 200
        status, body = probe(port, "/readyz")
        assert status == 503 and body["failed"] == ["assignment"]
        assert body["checks"]["cassandra"]["ok"] is True

    committed_before = metrics.REGISTRY.get_sample_value(
        "settlement_transactions_committed_total", {"role": "ledger"}) or 0.0
    with InProcessWorker(worker):
        wait_until(lambda: probe(port, "/readyz")[0] == 200, 60, "ready after the assignment")
        wait_until(lambda: total(scrape(port), "settlement_records_consumed_total",
                                 topic=payments) >= len(records), 90, "every record consumed")
        wait_until(lambda: total(scrape(port), "settlement_records_produced_total", topic=items)
                   >= GOOD_N, 60, "every item committed")
        wait_until(lambda: _lags(scrape(port), payments) == [0] * 6, 30, "lag 0 on 6 partitions")
        status, body = probe(port, "/readyz")
        assert status == 200 and body["failed"] == []
        assert {name: c["ok"] for name, c in body["checks"].items()} == {
            "loop": True, "assignment": True, "kafka": True, "cassandra": True}
        status, body = probe(port, "/healthz")
        assert status == 200 and body["live"] is True
        m = scrape(port)

    assert total(m, "settlement_records_consumed_total", role="ledger", topic=payments) == len(records)
    assert total(m, "settlement_records_produced_total", role="ledger", topic=items) == GOOD_N
    assert total(m, "settlement_dlq_records_total", role="ledger", topic=dlq) == len(BAD_CASES)
    for reason, n in reasons.items():
        assert total(m, "settlement_dlq_records_total", topic=dlq, reason=reason) == n, reason
    assert total(m, "settlement_transactions_committed_total", role="ledger") > committed_before
    assert total(m, "settlement_assigned_partitions", role="ledger") == 6
    assert total(m, "settlement_loop_heartbeat_timestamp_seconds", role="ledger") > 0
    # the metrics say what a read_committed reader finds
    assert len(committed(ns.settings, dlq)) == len(BAD_CASES)
    assert len(committed(ns.settings, items)) == GOOD_N


def _lags(samples: Samples, topic: str) -> list[float]:
    return [v for (n, ls), v in sorted(samples.items())
            if n == "settlement_consumer_lag" and ("topic", topic) in ls]


def test_the_cassandra_readiness_check_fails_once_the_session_is_closed(ns: Namespace) -> None:
    session = connect(ns.settings.cassandra, keyspace=ns.settings.cassandra.keyspace)
    try:
        assert live_hosts(session) != []
    finally:
        session.cluster.shutdown()
    assert live_hosts(session) == []


def test_a_worker_process_serves_its_probes_and_stops_serving_when_drained(ns: Namespace) -> None:
    register(ns.settings, [ACCOUNT])
    produce_raw(ns.settings, [(b"pay-proc", json.dumps(dict(GOOD, payment_id="pay-proc")).encode())])
    port = free_port()
    w = WorkerProc("ledger", "http-0", [], ns.env, ns.log_dir / "http.log", health_port=port)
    w.start()
    try:
        wait_until(lambda: _answers(port, "/readyz") == 200, 60, "the process is ready")
        wait_until(lambda: total(scrape(port), "settlement_records_consumed_total",
                                 topic=ns.settings.topics.payments) == 1, 60, "the record consumed")
        assert w.proc is not None
        w.proc.send_signal(signal.SIGTERM)
        assert w.proc.wait(timeout=30) == 0
    finally:
        w.kill(signal.SIGKILL)
    assert _answers(port, "/healthz") is None  # the server went with the process
    assert '"worker.http_started"' in w.log_path.read_text()


def _answers(port: int, path: str) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code
    except httpx.TransportError:
        return None
