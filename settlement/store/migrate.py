"""Versioned CQL migrations, recorded in `schema_migrations`; safe to re-run.

Each file `NNNN_name.cql` under migrations/ runs once, in order. Statements use
IF NOT EXISTS, so a run that died half-way is simply repeated; the version row
is written with LWT last, so two concurrent migrators agree.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import structlog
from cassandra.cluster import Session

from settlement.config import CassandraSettings
from settlement.domain.errors import ConfigError

log = structlog.get_logger(__name__)
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.cql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    checksum: str


def _split(cql: str) -> tuple[str, ...]:
    body = "\n".join(line for line in cql.splitlines() if not line.strip().startswith("--"))
    return tuple(s.strip() for s in body.split(";") if s.strip())


def available() -> list[Migration]:
    found = []
    for entry in resources.files("settlement.store.migrations").iterdir():
        m = _NAME.match(entry.name)
        if not m:
            continue
        text = entry.read_text(encoding="utf-8")
        found.append(Migration(
            int(m.group(1)), m.group(2), _split(text), hashlib.sha256(text.encode()).hexdigest()
        ))
    return sorted(found, key=lambda mig: mig.version)


def _replication_cql(replication: dict[str, str]) -> str:
    if "class" not in replication:
        raise ConfigError("cassandra.replication needs a 'class' (SimpleStrategy or NTS)")
    for k, v in replication.items():
        if not re.fullmatch(r"[A-Za-z0-9_.]+", k) or not re.fullmatch(r"[A-Za-z0-9_.]+", v):
            raise ConfigError(f"bad replication option {k}={v}")
    return "{" + ", ".join(f"'{k}': '{v}'" for k, v in replication.items()) + "}"


def migrate(session: Session, settings: CassandraSettings) -> list[Migration]:
    """Create the keyspace if needed and apply pending migrations; return those applied."""
    ks = settings.keyspace
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
        f"{_replication_cql(settings.replication)}"
    )
    session.execute(
        f"CREATE TABLE IF NOT EXISTS {ks}.schema_migrations ("
        "version int PRIMARY KEY, name text, checksum text, applied_at timestamp)"
    )
    session.set_keyspace(ks)
    done = {r.version: r.checksum for r in session.execute(
        "SELECT version, checksum FROM schema_migrations")}
    applied = []
    for mig in available():
        if mig.version in done:
            if done[mig.version] != mig.checksum:
                log.warning("db.migration_changed_after_apply", version=mig.version, name=mig.name)
            continue
        for stmt in mig.statements:
            session.execute(stmt, timeout=60)
        session.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
            "VALUES (%s, %s, %s, toTimestamp(now())) IF NOT EXISTS",
            (mig.version, mig.name, mig.checksum),
        )
        log.info("db.migration_applied", version=mig.version, name=mig.name)
        applied.append(mig)
    session.cluster.control_connection.wait_for_schema_agreement()
    return applied
