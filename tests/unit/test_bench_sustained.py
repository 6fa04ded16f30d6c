"""The sustained end-to-end scenario's arithmetic: when production runs, each window's
figures from batch_index rows, and its row in the summary."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settlement.bench_stats import summarize
from settlement.bench_sustained import END_BEFORE_CUTOFF_S, plan, windows_of

T = datetime(2026, 11, 22, 23, 58, tzinfo=UTC).timestamp()  # a whole minute


def test_production_ends_half_a_second_before_the_first_minute_it_can() -> None:
    assert plan(T + 10, 45) == (T + 60 - 0.5 - 45, T + 60)  # 10 s in: this minute's end
    assert plan(T + 20, 45) == (T + 120 - 0.5 - 45, T + 120)  # 20 s in: 45 s no longer fit
    assert plan(T - 45.5, 45) == (T - 45.5, T)  # exactly fits: starts now


@given(st.floats(min_value=0, max_value=86_400), st.floats(min_value=10, max_value=600))
def test_production_never_starts_before_ready_and_waits_under_a_minute(
        ready: float, duration: float) -> None:
    start, cutoff = plan(T + ready, duration)
    assert cutoff % 60 == 0
    assert start + duration + END_BEFORE_CUTOFF_S == pytest.approx(cutoff)
    assert T + ready <= start < T + ready + 60


def row(batch_id: str, status: str, cutoff: float, payments: int | None) -> Any:
    return SimpleNamespace(batch_id=batch_id, status=status, payments=payments,
                           cutoff_at=datetime.fromtimestamp(cutoff, UTC).replace(tzinfo=None))


def test_windows_are_per_cutoff_up_to_the_last_with_their_seal_time() -> None:
    rows = [row("A-1", "sent", T, 100), row("B-1", "sent", T, 50), row("C-1", "empty", T, 0),
            row("A-2", "sent", T + 60, 300), row("A-3", "open", T + 120, None)]
    seen = {"A-1": T + 2.5, "B-1": T + 3.25, "A-2": T + 63.0}
    got = windows_of(rows, seen, 2.0, T + 60)
    assert [(w.cutoff, w.batches, w.pacs008, w.payments, w.seal_s) for w in got] == [
        ("2026-11-22T23:58:00+00:00", 3, 2, 150, 1.25),
        ("2026-11-22T23:59:00+00:00", 1, 1, 300, 1.0)]
    # a window with nothing readable has no seal time
    assert windows_of([row("A-1", "sent", T, 10)], {}, 2.0, T)[0].seal_s is None


def sustained(**over: Any) -> dict[str, Any]:
    return {"offered_per_s": 3300.0, "payments": 148_500, "ledger_workers": 2, "batchers": 2,
            "commit_interval_ms": 100, "produce_s": 45.1, "produced_per_s": 3291.0,
            "drain_s": 26.5, "payments_per_s": 2073.0, "kept_up": False, "max_backlog": 63_368,
            "late": 0, "in_batches": 148_500,
            "windows": [{"cutoff": "2026-11-23T00:02:00+00:00", "batches": 6, "pacs008": 6,
                         "payments": 148_500, "seal_s": 23.2}],
            "worker_cpu_cores": 0.41, "cpu_by_role": {"ledger": 0.23, "batcher": 0.18},
            "bench_cpu_cores": 0.14, "peak_rss_mb": 174.0,
            "server_cpu_cores": {"kafka": 0.21, "cassandra": 0.73}} | over


def test_the_sustained_row_is_judged_on_the_rate_carried_and_nothing_lost() -> None:
    name = "e2e sustained, 3,300/s offered for 45 s, 2 workers, 2 batchers"
    (slow,) = summarize({"sustained": sustained()})
    assert (slow.scenario, slow.throughput, slow.target, slow.met) == (
        name, 2073.0, ">= 3,000/s", False)
    assert slow.note.startswith("fell behind: produced at 3,291/s, backlog at most 63,368, "
                                "placed 26.5 s after the last; cutoff+grace -> last pacs.008 "
                                "per window 23.20 s; 0 late")
    (staged,) = summarize({"sustained": sustained(
        max_backlog_by_stage={"ledger": 51_000, "batcher": 14_200})})
    assert "backlog at most 63,368 (ledger 51,000, batcher 14,200), placed" in staged.note
    (fast,) = summarize({"sustained": sustained(payments_per_s=3150.0, kept_up=True)})
    assert fast.met is True and fast.note.startswith("kept up")
    (lost,) = summarize({"sustained": sustained(payments_per_s=3150.0, in_batches=148_499)})
    assert lost.met is False
    # kept up with 3,010/s: the figure (over the last payments' latency too) is under 3,000
    (kept,) = summarize({"sustained": sustained(payments_per_s=2950.0, produced_per_s=3010.0,
                                                kept_up=True)})
    assert kept.met is True
    (short,) = summarize({"sustained": sustained(payments_per_s=2950.0, produced_per_s=2990.0,
                                                 kept_up=True)})
    assert short.met is False
