"""A private slice of the stack for one run: its own keyspace, topics and consumer groups.

The demo gives every run a fresh namespace so runs never see each other's records
(a re-run after Ctrl-C starts clean) and drops it afterwards unless asked to keep it.
Worker processes get the same namespace through `env`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient

from settlement.config import CassandraSettings, Settings, TopicSettings, WorkerSettings
from settlement.domain.errors import ConfigError
from settlement.kafka.admin import ensure_topics, topic_specs
from settlement.store.migrate import migrate
from settlement.store.session import connect

_PREFIX = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
TOPIC_FIELDS = tuple(name for name, f in TopicSettings.model_fields.items() if f.annotation is str)


@dataclass(frozen=True)
class Namespace:
    prefix: str  # topics are <prefix>.<default name>, groups <prefix>-<role>
    settings: Settings  # the base settings pointed at this namespace
    env: dict[str, str]  # the same, as SETTLEMENT_* variables for worker processes

    @property
    def keyspace(self) -> str:
        return self.settings.cassandra.keyspace


def namespace(base: Settings, prefix: str) -> Namespace:
    """`base` with keyspace `<prefix>` (dashes as underscores), topics and groups under `prefix`."""
    if not _PREFIX.fullmatch(prefix):
        raise ConfigError(f"namespace prefix {prefix!r}: lower-case letters, digits and dashes")
    keyspace = prefix.replace("-", "_")
    topics = {name: f"{prefix}.{getattr(base.topics, name)}" for name in TOPIC_FIELDS}
    settings = base.model_copy(update={
        "cassandra": CassandraSettings.model_validate(
            {**base.cassandra.model_dump(), "keyspace": keyspace}),
        "topics": TopicSettings.model_validate({**base.topics.model_dump(), **topics}),
        "worker": WorkerSettings.model_validate(
            {**base.worker.model_dump(), "group_prefix": prefix}),
    })
    env = {"SETTLEMENT_CASSANDRA__KEYSPACE": keyspace, "SETTLEMENT_WORKER__GROUP_PREFIX": prefix,
           **{f"SETTLEMENT_TOPICS__{name.upper()}": topic for name, topic in topics.items()}}
    return Namespace(prefix, settings, env)


def provision(ns: Namespace) -> None:
    """Create the topics and the keyspace with every migration (both idempotent)."""
    ensure_topics(ns.settings.kafka, ns.settings.topics)
    session = connect(ns.settings.cassandra)
    try:
        migrate(session, ns.settings.cassandra)
    finally:
        session.cluster.shutdown()


def drop(ns: Namespace, timeout_s: float = 60) -> None:
    """Delete the namespace's keyspace and topics."""
    session = connect(ns.settings.cassandra)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {ns.keyspace}", timeout=timeout_s)
    finally:
        session.cluster.shutdown()
    admin = AdminClient(ns.settings.kafka.client_config())  # alive until the futures resolve
    for fut in admin.delete_topics([t.name for t in topic_specs(ns.settings.topics)]).values():
        fut.result(timeout_s)
