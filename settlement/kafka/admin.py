"""Topic provisioning: create what is missing, report what differs, never delete."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewPartitions, NewTopic  # what .admin re-exports, typed

from settlement.config import KafkaSettings, TopicSettings
from settlement.domain.errors import FatalError, RetryableError


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


@dataclass(frozen=True)
class TopicReport:
    name: str
    action: str  # created | exists | partitions_added | mismatch
    partitions: int
    note: str = ""


def topic_specs(t: TopicSettings) -> list[TopicSpec]:
    big = {"max.message.bytes": str(t.max_message_bytes)}
    bank = {"max.message.bytes": str(t.bank_max_message_bytes)}
    # DLQ holds the original bytes plus headers: give it headroom over the input.
    dlq = {"max.message.bytes": str(t.max_message_bytes + 64 * 1024), "retention.ms": "-1"}
    return [
        TopicSpec(t.payments, t.partitions, big),
        TopicSpec(t.payments_dlq, t.partitions, dlq),
        TopicSpec(t.items, t.partitions, {}),
        TopicSpec(t.items_dlq, t.partitions, dlq),
        TopicSpec(t.bank_outbound, t.partitions, bank),
        TopicSpec(t.bank_inbound, t.partitions, bank),
        TopicSpec(t.events, t.partitions, {}),
    ]


def connect_admin(kafka: KafkaSettings, timeout_s: float = 30) -> tuple[AdminClient, Any]:
    """An AdminClient and the cluster metadata. Refused credentials are a FatalError that
    says so (not "unreachable"); the secret itself never appears in the message."""
    auth: list[str] = []

    def on_error(err: KafkaError) -> None:
        if err.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
            auth.append(str(err.str()))

    config: dict[str, Any] = {**kafka.client_config(), "error_cb": on_error}
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout_s
    while True:  # in slices of a second: refused credentials fail at once, not after timeout_s
        try:
            return admin, admin.list_topics(timeout=min(1.0, max(deadline - time.monotonic(), 0.1)))
        except KafkaException as exc:
            admin.poll(0)  # serves error_cb: was it the credentials?
            if auth:
                raise FatalError(
                    f"Kafka at {kafka.bootstrap_servers} refused the credentials of "
                    f"{kafka.sasl_username!r} ({kafka.security_protocol} {kafka.sasl_mechanism}): "
                    f"{auth[-1]}; check kafka.sasl_username / kafka.sasl_password") from exc
            if time.monotonic() >= deadline:
                raise RetryableError(f"cannot reach Kafka at {kafka.bootstrap_servers} within "
                                     f"{timeout_s:g} s: {exc}") from exc


def ensure_topics(kafka: KafkaSettings, topics: TopicSettings, timeout_s: float = 30) -> list[TopicReport]:
    admin, meta = connect_admin(kafka, timeout_s)
    reports: list[TopicReport] = []
    to_create: list[NewTopic] = []
    grow: list[NewPartitions] = []
    for spec in topic_specs(topics):
        existing = meta.topics.get(spec.name)
        if existing is None or existing.error is not None:
            to_create.append(NewTopic(spec.name, spec.partitions, topics.replication_factor,
                                      config=spec.config))
            continue
        have = len(existing.partitions)
        if have < spec.partitions:
            grow.append(NewPartitions(spec.name, spec.partitions))
            reports.append(TopicReport(spec.name, "partitions_added", spec.partitions,
                                       f"was {have}; keys move to new partitions"))
        elif have > spec.partitions:
            reports.append(TopicReport(spec.name, "mismatch", have,
                                       f"has {have} partitions, config says {spec.partitions}"))
        else:
            reports.append(TopicReport(spec.name, "exists", have))
    for fut_map in (admin.create_topics(to_create) if to_create else {},
                    admin.create_partitions(grow) if grow else {}):
        for name, fut in fut_map.items():
            try:
                fut.result(timeout_s)
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() != err.TOPIC_ALREADY_EXISTS:
                    raise FatalError(f"topic {name}: {err}") from exc
    for nt in to_create:
        reports.append(TopicReport(nt.topic, "created", nt.num_partitions))
    return sorted(reports, key=lambda r: r.name)
