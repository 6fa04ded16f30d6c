"""How a benchmark names the Cassandra node's commit log mode, and what it says when it
cannot tell (no session, or a node without system_views)."""

from __future__ import annotations

from typing import Any

from settlement.bench_kit import cassandra_facts, describe_cassandra


class _OldNode:
    """A session whose node has no system_views (Cassandra 3.x) and one local row."""

    def execute(self, query: str, *_args: Any) -> Any:
        if "system_views" in query:
            raise RuntimeError("unconfigured table settings")

        class _Rows:
            def one(self) -> Any:
                return type("Row", (), {"release_version": "3.11.17"})()
        return _Rows()


def test_no_session_gives_unknown_for_everything() -> None:
    assert set(cassandra_facts(None).values()) == {"unknown"}


def test_a_node_without_system_views_gives_its_release_and_unknown_settings() -> None:
    facts = cassandra_facts(_OldNode())  # type: ignore[arg-type]
    assert facts["release_version"] == "3.11.17"
    assert facts["commitlog_sync"] == facts["concurrent_writes"] == "unknown"


def test_the_line_says_what_each_mode_means_for_an_ack() -> None:
    base = {"release_version": "5.0.8", "concurrent_writes": "8", "commitlog_sync_period": "0ms"}
    assert describe_cassandra({**base, "commitlog_sync": "batch"}) == (
        "Cassandra 5.0.8, commitlog_sync batch (fsync before each write's ack), "
        "concurrent_writes 8")
    periodic = describe_cassandra({**base, "commitlog_sync": "periodic",
                                   "commitlog_sync_period": "10000ms"})
    assert "fsync every 10000ms, acks before it" in periodic
    assert describe_cassandra(cassandra_facts(None)) == (
        "Cassandra unknown, commitlog_sync unknown, concurrent_writes unknown")
