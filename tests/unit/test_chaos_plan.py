"""The fault schedule is a pure function of the seed, and each fault is the fault it claims."""

from __future__ import annotations

import pytest

from settlement.chaos.plan import ALL_KINDS, Kind, Timeouts, plan, run_seed

T = Timeouts(session_s=10, transaction_s=20, bank_read_s=10)
W = dict.fromkeys(("ledger", "batcher", "gateway", "inbound"), 2)


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    a = plan(7, faults=8, window_s=45, kinds=ALL_KINDS, workers=W, timeouts=T)
    b = plan(7, faults=8, window_s=45, kinds=ALL_KINDS, workers=W, timeouts=T)
    c = plan(8, faults=8, window_s=45, kinds=ALL_KINDS, workers=W, timeouts=T)
    assert a == b
    assert a != c


def test_a_run_of_menu_size_uses_every_kind_once_in_time_order() -> None:
    s = plan(3, faults=len(ALL_KINDS), window_s=60, kinds=ALL_KINDS, workers=W, timeouts=T)
    assert sorted(f.kind.value for f in s.faults) == sorted(k.value for k in ALL_KINDS)
    starts = [f.at_s for f in s.faults]
    assert starts == sorted(starts) and starts[0] >= 0 and starts[-1] < 60


@pytest.mark.parametrize("seed", range(20))
def test_faults_exceed_the_timeouts_they_are_meant_to_exceed(seed: int) -> None:
    for f in plan(seed, faults=16, window_s=90, kinds=ALL_KINDS, workers=W, timeouts=T).faults:
        if f.kind is Kind.ZOMBIE:
            assert f.hold_s > T.session_s
        if f.kind is Kind.CASSANDRA_STALL:
            assert f.hold_s > T.transaction_s
        if f.kind is Kind.BANK_TIMEOUT:
            assert f.hold_s >= T.bank_read_s
        assert f.role in W and 0 <= f.index < W[f.role]
        assert (f.extra > 0) == (f.kind is Kind.REBALANCE)


def test_run_seeds_are_stable_and_distinct() -> None:
    seeds = [run_seed(42, i) for i in range(50)]
    assert seeds == [run_seed(42, i) for i in range(50)]
    assert len(set(seeds)) == 50


def test_a_restricted_menu_is_respected_and_bad_input_refused() -> None:
    s = plan(1, faults=5, window_s=30, kinds=(Kind.KILL,), workers={"ledger": 2}, timeouts=T)
    assert {f.kind for f in s.faults} == {Kind.KILL} and {f.role for f in s.faults} == {"ledger"}
    with pytest.raises(ValueError):
        plan(1, faults=3, window_s=30, kinds=(), workers=W, timeouts=T)
