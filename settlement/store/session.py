"""Build a Cassandra session from settings, and map driver errors onto ours."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from cassandra import (
    AuthenticationFailed,
    ConsistencyLevel,
    CoordinationFailure,
    OperationTimedOut,
    ReadTimeout,
    Unavailable,
    WriteTimeout,
)
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    NoHostAvailable,
    Session,
)
from cassandra.concurrent import execute_concurrent
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.query import (
    BatchStatement,
    BatchType,
    BoundStatement,
    PreparedStatement,
    named_tuple_factory,
)

from settlement.config import CassandraSettings
from settlement.domain.errors import FatalError, RetryableError, SettlementError

# Errors a later attempt may not see: node down, overloaded, timed out.
TRANSIENT = (
    OperationTimedOut, NoHostAvailable, Unavailable, ReadTimeout, WriteTimeout,
    CoordinationFailure, ConnectionError, TimeoutError,
)


def reconnection_policy(settings: CassandraSettings) -> ExponentialReconnectionPolicy:
    """Back off from 0.5 s up to `reconnect_max_delay_s`, never for good."""
    return ExponentialReconnectionPolicy(
        base_delay=min(0.5, settings.reconnect_max_delay_s),
        max_delay=settings.reconnect_max_delay_s, max_attempts=None)


@lru_cache(maxsize=1024)
def _row_class(colnames: tuple[str, ...]) -> Any:
    """The namedtuple class the driver's own factory makes for these columns, made once."""
    return type(named_tuple_factory(list(colnames), [(None,) * len(colnames)])[0])


def cached_named_tuple_factory(colnames: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[Any]:
    """The driver's default rows (namedtuples, `[applied]` as `.applied`), with each class
    made once per column set instead of once per result.

    The driver's `named_tuple_factory` calls `collections.namedtuple` for every result, on
    its I/O thread while holding the GIL: ~80 µs each, and under load 12 % of a ledger
    worker's samples (py-spy, one conditional batch result per bucket and poll).
    """
    row = _row_class(tuple(colnames))
    return [row(*r) for r in rows]


def connect(settings: CassandraSettings, *, keyspace: str | None = None) -> Session:
    profile = ExecutionProfile(
        row_factory=cached_named_tuple_factory,
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(settings.local_dc)),
        request_timeout=settings.request_timeout_s,
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
    )
    auth = None
    if settings.username:
        pw = settings.password.get_secret_value() if settings.password else ""
        auth = PlainTextAuthProvider(username=settings.username, password=pw)
    cluster = Cluster(
        contact_points=settings.contact_points,
        port=settings.port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        auth_provider=auth,
        protocol_version=5,
        connect_timeout=settings.request_timeout_s,
        reconnection_policy=reconnection_policy(settings),
    )
    try:
        return cluster.connect(keyspace)
    except Exception as exc:
        cluster.shutdown()
        errors = getattr(exc, "errors", None) or {}
        if any(isinstance(e, AuthenticationFailed) for e in errors.values()):
            where = f"Cassandra at {settings.contact_points}:{settings.port}"
            raise FatalError(
                f"{where} refused the credentials of {settings.username!r}; check "
                "cassandra.username / cassandra.password" if settings.username else
                f"{where} requires authentication: set cassandra.username and "
                "cassandra.password") from exc
        raise wrap_error(exc, f"cannot connect to Cassandra at {settings.contact_points}") from exc


def close(session: Session) -> None:
    session.cluster.shutdown()


def live_hosts(session: Session) -> list[str]:
    """Hosts the session holds an open connection to, and the driver thinks are up.

    Local state only (no query): cheap enough for a readiness probe. The driver
    drops a host's pool as soon as it sees the host go down.
    """
    if session.is_shutdown:
        return []
    return sorted(
        str(host.endpoint) for host, state in session.get_pool_state().items()
        if host.is_up is not False and not state["shutdown"] and state["open_count"] > 0
    )


def wrap_error(exc: BaseException, what: str) -> SettlementError:
    """Driver exception -> RetryableError (try later) or FatalError (fix something)."""
    if isinstance(exc, SettlementError):
        return exc
    if isinstance(exc, TRANSIENT):
        return RetryableError(f"{what}: {type(exc).__name__}: {exc}")
    return FatalError(f"{what}: {type(exc).__name__}: {exc}")


def one(rows: Any) -> Any:
    """First row of a result set, or None."""
    return rows.one()


def execute(session: Session, stmt: Any, params: tuple[Any, ...], what: str) -> Any:
    """One statement; driver errors become RetryableError/FatalError naming `what`."""
    try:
        return session.execute(stmt, params)
    except Exception as exc:
        raise wrap_error(exc, what) from exc


def execute_all(session: Session, stmt: Any, params: Sequence[tuple[Any, ...]], what: str,
                concurrency: int = 64) -> list[Any]:
    """The same statement for many parameter tuples, concurrently; the first error raises."""
    return execute_many(session, [(stmt, p) for p in params], what, concurrency)


def execute_many(session: Session, pairs: Sequence[tuple[Any, tuple[Any, ...]]], what: str,
                 concurrency: int = 64) -> list[Any]:
    """(statement, params) pairs, concurrently in one stream; the first error raises."""
    if not pairs:
        return []
    results = run_concurrent(session, pairs, concurrency)
    out = []
    for ok, res in results:
        if not ok:
            raise wrap_error(res, what)
        out.append(res)
    return out


def write_batched(session: Session, stmt: PreparedStatement, params: Sequence[tuple[Any, ...]],
                  what: str, rows_per_batch: int, concurrency: int = 16) -> None:
    """Idempotent writes of one statement as unlogged batches of rows that share replicas.

    One request per `rows_per_batch` rows instead of one per row: the driver's per-request
    cost (future, callbacks, framing) dominates a big write from Python, so 10,000 payout
    rows take about a fifth of the time. Rows are grouped by the replicas owning their
    partition, so each batch goes (token-aware) to a node that holds all of its rows and
    no coordinator fans a batch out across the cluster. An unlogged batch is not atomic:
    only for writes that are safe to repeat (deterministic values and timestamps), which a
    stage retry does after a failure. `rows_per_batch` <= 1 sends rows one by one.
    """
    if rows_per_batch <= 1 or len(params) <= 1:
        execute_all(session, stmt, params, what, concurrency)
        return
    meta = session.cluster.metadata
    groups: dict[tuple[str, ...], list[BoundStatement]] = defaultdict(list)
    for p in params:
        bound = stmt.bind(p)
        key = bound.routing_key
        replicas = meta.get_replicas(stmt.keyspace, key) if key is not None else []
        groups[tuple(sorted(str(h.endpoint) for h in replicas))].append(bound)
    batches: list[tuple[Any, tuple[Any, ...]]] = []
    for bounds in groups.values():
        for start in range(0, len(bounds), rows_per_batch):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for b in bounds[start:start + rows_per_batch]:
                batch.add(b)
            batches.append((batch, ()))
    execute_many(session, batches, what, concurrency)


def run_concurrent(session: Session, pairs: Sequence[tuple[Any, tuple[Any, ...]]],
                   concurrency: int) -> list[tuple[bool, Any]]:
    """The driver's execute_concurrent, (success, result or exception) per pair, safe in an outage.

    With no live host every request fails at once, the driver's callback chain recurses
    and the call dies with a RecursionError or a TypeError while sorting the failures,
    which crashed a worker (found by `settlement chaos`, a Cassandra stall). Both are the
    node being unreachable, so they are retryable like NoHostAvailable.
    """
    if not live_hosts(session):
        raise RetryableError("no live Cassandra host (the driver is reconnecting)")
    try:
        return list(execute_concurrent(session, list(pairs), concurrency=concurrency,
                                       raise_on_first_error=False))
    except (RecursionError, TypeError) as exc:
        raise RetryableError(
            f"Cassandra unreachable mid-request ({type(exc).__name__} in the driver's "
            "concurrent executor)") from exc
