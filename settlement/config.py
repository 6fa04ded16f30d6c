"""One frozen `Settings`, read once at the CLI edge.

Sources, highest first: constructor arguments (CLI flags), environment
(`SETTLEMENT_` prefix, `__` between nested names, e.g.
`SETTLEMENT_KAFKA__BOOTSTRAP_SERVERS`), an optional TOML file
(`SETTLEMENT_CONFIG_FILE` or `--config`), then the defaults below, which fit the
local stack from `make infra-up`. Nothing else in the package reads os.environ.
"""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from settlement.domain.errors import ConfigError

_FROZEN = ConfigDict(frozen=True, extra="forbid")

# librdkafka properties the workers set themselves because exactly-once, or reading
# every event (a new group starts at the earliest offset), rests on them; `kafka.extra`
# may not change them.
RESERVED_KAFKA_PROPERTIES = frozenset({
    "group.id", "transactional.id", "enable.idempotence", "isolation.level",
    "enable.auto.commit", "enable.auto.offset.store", "auto.offset.reset",
})


class KafkaSettings(BaseModel):
    model_config = _FROZEN

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Kafka brokers, host:port[,host:port].")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Kafka security.protocol.")
    sasl_mechanism: str | None = Field(default=None, description="e.g. PLAIN, SCRAM-SHA-512.")
    sasl_username: str | None = Field(default=None, description="SASL user.")
    sasl_password: SecretStr | None = Field(
        default=None, description="SASL password: from the environment or a secret file, never logged.")
    ssl_ca_location: str | None = Field(default=None, description="CA bundle for SSL.")
    # Must exceed the worst batch including Cassandra retries (DESIGN: known traps).
    transaction_timeout_ms: int = Field(
        default=60_000, ge=1_000,
        description="Kafka transaction.timeout.ms; must exceed the worst batch incl. Cassandra retries.")
    # Our own bound around send_offsets_to_transaction / commit (librdkafka #5456, #5511).
    txn_call_timeout_s: float = Field(
        default=30.0, gt=0, description="Our own deadline around each transactional call.")
    session_timeout_ms: int = Field(
        default=10_000, ge=1_000,
        description="Consumer session timeout: how fast a dead worker is noticed.")
    max_poll_interval_ms: int = Field(
        default=120_000, ge=10_000, description="Consumer max.poll.interval.ms.")
    # librdkafka's defaults (1 byte, 500 ms) answer a fetch as soon as one record is
    # there: at 2,000 payments/s ~200 small fetches/s. Waiting up to 20 ms for 64 KiB cut
    # the co-located broker's CPU from 0.29-0.31 to 0.22-0.23 cores at that load, with
    # the ledger's p99 no worse (docs/benchmarks.md); under a backlog fetches fill at once.
    fetch_min_bytes: int = Field(
        default=65_536, ge=1, description="Worker consumers' fetch.min.bytes.")
    fetch_wait_max_ms: int = Field(
        default=20, ge=0, le=500,
        description="Worker consumers' fetch.wait.max.ms: the most a fetch waits for fetch_min_bytes.")
    # Raw librdkafka properties for anything not modelled above. They come after the
    # modelled settings and the workers' tunables (linger.ms, fetch.*, timeouts), so
    # they override those; RESERVED_KAFKA_PROPERTIES are refused.
    extra: dict[str, str] = Field(
        default_factory=dict,
        description="Raw librdkafka properties, applied after every modelled setting and "
                    "tunable (so they override them); the ones exactly-once and reading "
                    "every event rest on "
                    f"({', '.join(sorted(RESERVED_KAFKA_PROPERTIES))}) are refused.")

    @field_validator("extra")
    @classmethod
    def _no_reserved(cls, extra: dict[str, str]) -> dict[str, str]:
        reserved = sorted(k for k in extra if k.strip().lower() in RESERVED_KAFKA_PROPERTIES)
        if reserved:
            raise ValueError(
                f"{', '.join(reserved)} cannot be set through kafka.extra: the workers set "
                "these properties themselves, for exactly-once and so that a new group "
                "reads every event (group and transactional ids come from the worker's "
                "role and instance)")
        return extra

    def client_config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        conf.update(self.extra)
        return conf


class CassandraSettings(BaseModel):
    model_config = _FROZEN

    contact_points: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"], description="Cassandra nodes to contact first.")
    port: int = Field(default=9042, description="CQL native port.")
    keyspace: str = Field(
        default="settlement", pattern=r"^[a-z][a-z0-9_]{0,47}$", description="Keyspace for all tables.")
    local_dc: str = Field(default="datacenter1", description="Data center for DC-aware routing.")
    replication: dict[str, str] = Field(
        default_factory=lambda: {"class": "SimpleStrategy", "replication_factor": "1"},
        description="Keyspace replication used by db migrate (NetworkTopologyStrategy in prod).",
    )
    username: str | None = Field(default=None, description="PasswordAuthenticator user.")
    password: SecretStr | None = Field(default=None, description="PasswordAuthenticator password.")
    request_timeout_s: float = Field(default=10.0, gt=0, description="Per-request client timeout.")
    # The driver's default backoff grows to 600 s: after an outage the workers would sit
    # idle for minutes with Cassandra back (found by `settlement chaos`, docs/chaos.md).
    reconnect_max_delay_s: float = Field(
        default=5.0, gt=0, le=600,
        description="Longest wait between reconnection attempts to a node that is down.")
    startup_wait_s: float = Field(
        default=120.0, ge=0,
        description="How long a starting worker retries an unreachable Cassandra before exit 2.")
    # In-flight async statements per worker; bounds memory and Cassandra's queue.
    concurrency: int = Field(
        default=128, ge=1, le=2048, description="In-flight async statements per worker.")
    # Big idempotent writes (a sealed batch's payouts) go as unlogged batches of rows that
    # share replicas. 32 payout rows are ~8 KiB, far under batch_size_fail_threshold
    # (50 KiB); Cassandra logs its rate-limited batch-size warning (docs/architecture.md).
    # At most 64: 128 rows were refused as "Batch too large" at the seal (measured), which
    # stops the batcher there; a limit here fails at start-up, with the setting's name.
    write_batch_rows: int = Field(
        default=32, ge=1, le=64,
        description="Rows per unlogged batch for big idempotent writes (1: one request per row).")


class TopicSettings(BaseModel):
    model_config = _FROZEN

    payments: str = Field(default="payments.succeeded", description="Topic name.")
    payments_dlq: str = Field(default="payments.succeeded.dlq", description="Topic name.")
    items: str = Field(default="settlement.items", description="Topic name.")
    items_dlq: str = Field(default="settlement.items.dlq", description="Topic name.")
    bank_outbound: str = Field(default="bank.outbound", description="Topic name.")
    bank_inbound: str = Field(default="bank.inbound", description="Topic name.")
    events: str = Field(default="settlement.events", description="Topic name.")
    partitions: int = Field(default=6, ge=1, description="Partitions per topic (topics ensure).")
    replication_factor: int = Field(default=1, ge=1, description="Topic replication factor.")
    # Inputs may carry large (bad) records so the ledger can dead-letter them itself.
    max_message_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024,
        description="Topic max.message.bytes for inputs, so oversized bad records reach the DLQ.")
    bank_max_message_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024,
        description="Topic max.message.bytes for bank.* (compressed): a 10,000-payout pacs.008 "
                    "is ~11 MB of XML, ~1 MB with zstd.")


class LedgerSettings(BaseModel):
    model_config = _FROZEN

    max_event_bytes: int = Field(
        default=1024 * 1024, ge=256, description="Larger events are dead-lettered as oversized.")
    merchant_cache_ttl_s: float = Field(
        default=5.0, ge=0, description="How long the ledger and the batcher cache the merchant registry.")
    park_release_interval_s: float = Field(
        default=5.0, gt=0, description="How often parked payments are checked for release.")


class WorkerSettings(BaseModel):
    model_config = _FROZEN

    instance_id: str = Field(
        default_factory=socket.gethostname,
        description="Stable per replica (a StatefulSet ordinal); it names the transactional.id.",
    )
    group_prefix: str = Field(
        default="settlement", pattern=r"^[A-Za-z0-9._-]+$",
        description="Consumer groups are <prefix>-<role>; transactional ids <prefix>-<role>-<id>.",
    )
    processing_guarantee: Literal["exactly-once", "at-least-once"] = Field(
        default="exactly-once", description="at-least-once is the benchmark baseline only.")
    commit_interval_ms: int = Field(
        default=100, ge=0, description="A transaction spans up to this long of polls.")
    max_batch: int = Field(default=500, ge=1, le=100_000, description="Records per poll.")
    poll_timeout_s: float = Field(
        default=0.02, gt=0,
        description="Consumer poll timeout; below full load every cycle waits this long.")
    outage_backoff_max_s: float = Field(
        default=5.0, gt=0, description="Longest pause between retries while a dependency is down.")
    drain_timeout_s: float = Field(
        default=20.0, gt=0, description="Expected worst drain time on SIGTERM (set the pod grace above it).")
    health_port: int = Field(
        default=8080, ge=0, le=65535,
        description="Port of the worker's HTTP surface (/healthz, /readyz, /metrics); 0 disables it.")
    health_host: str = Field(
        default="0.0.0.0",
        description="Address the HTTP surface binds: all interfaces, so kubelet probes and Prometheus "
                    "reach the pod; 127.0.0.1 keeps it on the machine.")
    health_cache_s: float = Field(
        default=5.0, ge=0, description="How long /readyz reuses its last Cassandra check.")


class BankSettings(BaseModel):
    """A bank we pay merchants at: its cutoffs and calendar (processor side)."""

    model_config = _FROZEN

    bic: str = Field(description="The bank's BIC (creditor agent of its merchants' payouts).")
    name: str = Field(default="", description="Display name.")
    timezone: str = Field(default="Europe/Berlin", description="IANA zone of the cutoff times.")
    cutoffs: list[str] = Field(
        default_factory=lambda: ["10:00", "14:00"],
        description="Local cutoff times HH:MM on business days; a window closes at each.")
    holiday_calendar: Literal["TARGET2", "none"] = Field(
        default="TARGET2", description="Built-in holiday calendar (TARGET2 = ECB XECB).")
    holidays: list[str] = Field(
        default_factory=list, description="Extra closed dates YYYY-MM-DD, on top of weekends.")
    weekend: list[int] = Field(
        default_factory=lambda: [5, 6], description="Closed weekdays, Monday=0 .. Sunday=6.")
    shards: int = Field(default=1, ge=1, le=64,
                        description="Batches per window; payouts spread by hash(payout_id).")
    endpoint: str | None = Field(
        default=None, description="Base URL of the bank's API (the gateway posts pacs.008 here).")
    token: SecretStr | None = Field(
        default=None, description="Bearer token for the bank's API: env or secret file only.")
    signing_key: SecretStr | None = Field(
        default=None, description="The bank's answer-signing key: when set, an answer without "
        "a valid X-Bank-Signature (HMAC-SHA256 of the body) is refused and retried.")


class ProcessorSettings(BaseModel):
    """Us: the debtor of every payout (Dbtr/DbtrAcct/DbtrAgt in pacs.008)."""

    model_config = _FROZEN

    name: str = Field(default="Settlement Demo Processor GmbH", description="Debtor name.")
    iban: str = Field(default="DE89370400440532013000", description="Debtor account (IBAN).")
    bic: str = Field(default="MOCKDEFFXXX", description="Debtor agent BIC.")
    charge_bearer: Literal["SLEV", "SHAR", "DEBT", "CRED"] = Field(
        default="SLEV", description="ChrgBr of every transaction.")
    settlement_method: Literal["CLRG", "INDA", "INGA"] = Field(
        default="CLRG", description="SttlmInf/SttlmMtd.")


class BatcherSettings(BaseModel):
    model_config = _FROZEN

    seal_grace_s: float = Field(
        default=2.0, ge=0, description="Wait this long after a cutoff for in-flight items.")
    seal_check_interval_s: float = Field(
        default=1.0, gt=0, description="How often the batcher looks for batches to seal.")
    default_bank: BankSettings = Field(
        default_factory=lambda: BankSettings(bic="DEFAULT"),
        description="Calendar used for a BIC with no [[banks]] entry.")


class GatewaySettings(BaseModel):
    model_config = _FROZEN

    default_endpoint: str = Field(
        default="http://127.0.0.1:8686",
        description="Bank API base URL for a bank without its own endpoint (the mock banks).")
    default_token: SecretStr | None = Field(
        default=None, description="Bearer token for banks without their own token.")
    connect_timeout_s: float = Field(default=2.0, gt=0, description="HTTP connect timeout.")
    read_timeout_s: float = Field(default=10.0, gt=0, description="HTTP read timeout per call.")
    attempts_inline: int = Field(
        default=3, ge=1, description="Delivery tries right away before the retry queue takes over.")
    retry_backoff_max_s: float = Field(
        default=30.0, gt=0, description="Longest wait between queued delivery retries.")
    breaker_failures: int = Field(
        default=5, ge=1, description="Consecutive failures that open a bank's circuit breaker.")
    breaker_reset_s: float = Field(
        default=10.0, gt=0, description="How long an open breaker waits before one trial call.")
    poll_interval_s: float = Field(
        default=1.0, gt=0, description="How often each bank's outbox is polled.")


class ReconSettings(BaseModel):
    """`settlement reconcile`: how exact a match must be, and how far to look."""

    model_config = _FROZEN
    amount_tolerance_minor: int = Field(
        default=0, ge=0, description="A booking may differ by this many minor units and still "
        "match (default: exactly).")
    value_date_tolerance_days: int = Field(
        default=0, ge=0, description="A booking this many days off its settlement date still "
        "matches cleanly; beyond it, it is a value_date_mismatch (timing) break.")
    window_days: int = Field(
        default=3, ge=0, le=31, description="How many days either side to look for a booking "
        "made on another day before calling it missing or unexpected.")
    max_statement_bytes: int = Field(
        default=4 << 30, ge=1 << 20, description="Largest statement file accepted (streamed).")


class LogSettings(BaseModel):
    model_config = _FROZEN

    format: Literal["auto", "console", "json"] = Field(
        default="auto", description="auto = JSON unless stderr is a terminal.")
    level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SETTLEMENT_", env_nested_delimiter="__", frozen=True, extra="forbid",
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    cassandra: CassandraSettings = Field(default_factory=CassandraSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    banks: list[BankSettings] = Field(default_factory=list)
    processor: ProcessorSettings = Field(default_factory=ProcessorSettings)
    batcher: BatcherSettings = Field(default_factory=BatcherSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    recon: ReconSettings = Field(default_factory=ReconSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = _config_file()
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        sources.append(file_secret_settings)
        return tuple(sources)


_config_file_override: Path | None = None


def _config_file() -> Path | None:
    if _config_file_override is not None:
        return _config_file_override
    env = os.environ.get("SETTLEMENT_CONFIG_FILE")
    return Path(env) if env else None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the one Settings object; `config_file` beats SETTLEMENT_CONFIG_FILE.

    A file named either way must exist and be UTF-8 TOML: a ConfigError otherwise, never
    skipped (a pod whose config mount is missing must not start on the defaults).
    """
    global _config_file_override
    path = config_file if config_file is not None else _config_file()
    if path is not None and not path.is_file():
        origin = "" if config_file is not None else " (SETTLEMENT_CONFIG_FILE)"
        raise ConfigError(f"config file not found: {path}{origin}")
    _config_file_override = config_file
    try:
        return Settings(**overrides)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid UTF-8 TOML: {exc}") from exc
    finally:
        _config_file_override = None
