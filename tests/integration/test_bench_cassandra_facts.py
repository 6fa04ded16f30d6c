"""The benchmarks name the Cassandra node's commit log mode, read from the node itself:
on the local stack it is the mode infra/cassandra/cassandra.yaml sets."""

from __future__ import annotations

import re
from pathlib import Path

from settlement.bench_kit import cassandra_facts, describe_cassandra
from settlement.store.session import connect
from tests.conftest import Namespace

YAML = Path(__file__).resolve().parents[2] / "infra" / "cassandra" / "cassandra.yaml"


def _configured(key: str) -> str:
    m = re.search(rf"^{key}:\s*(\S+)", YAML.read_text(), re.MULTILINE)
    assert m is not None, f"{key} not set in {YAML}"
    return m.group(1)


def test_the_node_reports_the_commit_log_mode_the_stack_configures(ns: Namespace) -> None:
    session = connect(ns.settings.cassandra)
    try:
        facts = cassandra_facts(session)
    finally:
        session.cluster.shutdown()
    assert facts["commitlog_sync"] == _configured("commitlog_sync")
    assert facts["concurrent_writes"] == _configured("concurrent_writes")
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", facts["release_version"])
    line = describe_cassandra(facts)
    assert f"Cassandra {facts['release_version']}, commitlog_sync {facts['commitlog_sync']}" in line
