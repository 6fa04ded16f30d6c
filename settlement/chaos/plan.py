"""A seed -> the run's fault schedule. Pure: the same seed gives the same schedule.

Faults are laid out one after another over the fault window (a fault's start is an
offset from the first payment produced); the injector waits for each start, so a fault
that overruns (a server slow to come back) delays the next one but never reorders them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import Enum


class Kind(Enum):
    KILL = "kill"                      # SIGKILL a worker, restart it after `hold_s`
    ZOMBIE = "zombie"                  # SIGSTOP a worker past the session timeout, then SIGCONT
    BROKER_KILL = "broker-kill"        # kill -9 the Kafka broker, start it again
    CASSANDRA_KILL = "cassandra-kill"  # kill -9 the Cassandra node, start it again
    CASSANDRA_STALL = "cassandra-stall"  # SIGSTOP Cassandra past the transaction timeout
    BANK_5XX = "bank-5xx"              # every bank answers 503 for `hold_s`
    BANK_TIMEOUT = "bank-timeout"      # every bank stalls past the gateway's read timeout
    REBALANCE = "rebalance"            # scale a role up by `extra` processes, then back down


ALL_KINDS = tuple(Kind)
WORKER_KINDS = frozenset({Kind.KILL, Kind.ZOMBIE, Kind.REBALANCE})
STACK_KINDS = frozenset({Kind.BROKER_KILL, Kind.CASSANDRA_KILL, Kind.CASSANDRA_STALL})
ROLES = ("ledger", "batcher", "gateway", "inbound")


@dataclass(frozen=True)
class Fault:
    at_s: float         # offset from the run's first payment
    kind: Kind
    hold_s: float       # how long the fault lasts (down, stopped, storming)
    role: str = ""      # for worker faults
    index: int = 0      # which process of the role
    extra: int = 0      # rebalance: processes added

    def describe(self) -> str:
        target = f" {self.role}-{self.index}" if self.kind in (Kind.KILL, Kind.ZOMBIE) else (
            f" {self.role} +{self.extra}" if self.kind is Kind.REBALANCE else "")
        return f"t+{self.at_s:5.1f}s {self.kind.value}{target} for {self.hold_s:.1f}s"


@dataclass(frozen=True)
class Timeouts:
    """The workers' timeouts a fault must exceed to be the fault it claims to be."""

    session_s: float      # consumer session timeout: a zombie is stopped longer than this
    transaction_s: float  # transaction.timeout.ms: Cassandra is stalled longer than this
    bank_read_s: float    # gateway read timeout: a bank timeout stalls longer than this


@dataclass(frozen=True)
class Schedule:
    seed: int
    faults: tuple[Fault, ...] = field(default_factory=tuple)

    def describe(self) -> list[str]:
        return [f.describe() for f in self.faults]


def run_seed(campaign_seed: int, run: int) -> int:
    """Run `run` of a campaign: its own seed, printed, so one run replays alone."""
    return random.Random(f"chaos:{campaign_seed}:{run}").randrange(1, 2**31)


def plan(seed: int, *, faults: int, window_s: float, kinds: tuple[Kind, ...],
         workers: dict[str, int], timeouts: Timeouts) -> Schedule:
    """`faults` faults drawn from `kinds`, spread over `window_s` seconds.

    Every kind of the menu is used once before any repeats (in a seeded order), so a run
    of n >= len(kinds) faults covers the whole menu.
    """
    if faults < 0 or window_s <= 0 or not kinds:
        raise ValueError("need faults >= 0, a positive window and at least one kind")
    rng = random.Random(f"plan:{seed}")
    order: list[Kind] = []
    while len(order) < faults:
        round_ = list(kinds)
        rng.shuffle(round_)
        order += round_
    slot = window_s / max(faults, 1)
    out = []
    for n, kind in enumerate(order[:faults]):
        at = round(n * slot + rng.uniform(0.0, slot * 0.5), 1)
        role = rng.choice([r for r in ROLES if workers.get(r, 0) > 0])
        index = rng.randrange(workers.get(role, 1))
        out.append(Fault(at, kind, round(_hold(kind, rng, timeouts), 1), role, index,
                         rng.randint(1, 2) if kind is Kind.REBALANCE else 0))
    return Schedule(seed, tuple(out))


def _hold(kind: Kind, rng: random.Random, t: Timeouts) -> float:
    match kind:
        case Kind.KILL:
            return rng.uniform(0.0, 3.0)             # restart delay
        case Kind.ZOMBIE:
            return t.session_s + rng.uniform(2.0, 6.0)
        case Kind.BROKER_KILL | Kind.CASSANDRA_KILL:
            return rng.uniform(0.0, 3.0)             # down before the restart begins
        case Kind.CASSANDRA_STALL:
            return t.transaction_s + rng.uniform(2.0, 5.0)
        case Kind.BANK_5XX:
            return rng.uniform(5.0, 15.0)
        case Kind.BANK_TIMEOUT:
            return max(t.bank_read_s * 1.5, rng.uniform(8.0, 15.0))
        case Kind.REBALANCE:
            return rng.uniform(4.0, 10.0)
