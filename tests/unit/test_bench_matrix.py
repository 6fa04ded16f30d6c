"""`bench.run_matrix`: the order of the runs and how repeated runs make one figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from settlement import bench


def _fake_runs(monkeypatch: pytest.MonkeyPatch, rates: list[float]) -> list[tuple[str, int, int]]:
    """run_scenario answers `rates` in turn; returns what was run, in order."""
    seen: list[tuple[str, int, int]] = []
    it = iter(rates)

    def run(_base: Any, sc: bench.Scenario, records: list[Any], *_a: Any) -> bench.Result:
        seen.append((sc.mode, sc.workers, sc.commit_interval_ms))
        return bench.Result(sc.mode, sc.workers, sc.commit_interval_ms, len(records), 5.0,
                            next(it), 0.4, 120.0 + len(seen), len(seen) % 2,
                            {"cassandra": 0.7, "kafka": 0.1})

    monkeypatch.setattr(bench, "run_scenario", run)
    return seen


def _matrix(repeats: int, **kw: Any) -> list[bench.Result]:
    return bench.run_matrix(None, [object()] * 3, [], [1], [100], "t",  # type: ignore[arg-type]
                            Path("."), lambda *_: None, lambda _s: None, repeats=repeats, **kw)


def test_repeated_pairs_alternate_and_average(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fake_runs(monkeypatch, [1000.0, 2000.0, 3000.0, 5000.0])
    eos, alos = _matrix(2)
    # EOS ALOS ALOS EOS: a machine slowing down or speeding up favours neither mode
    assert [m for m, _w, _c in seen] == ["exactly-once", "at-least-once",
                                         "at-least-once", "exactly-once"]
    assert (eos.mode, eos.runs_events_per_s, eos.events_per_s) == ("exactly-once",
                                                                   [1000.0, 5000.0], 3000.0)
    assert (alos.mode, alos.runs_events_per_s, alos.events_per_s) == ("at-least-once",
                                                                     [2000.0, 3000.0], 2500.0)
    assert eos.peak_rss_mb == 124.0  # the highest of its runs (the 1st and the 4th)
    assert eos.aborts_seen == 1  # all of them: 1 + 0
    assert eos.server_cpu_cores == {"cassandra": 0.7, "kafka": 0.1}


def test_one_run_is_reported_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_runs(monkeypatch, [1234.5, 2345.6])
    eos, alos = _matrix(1)
    assert (eos.events_per_s, eos.runs_events_per_s) == (1234.5, [])
    assert alos.events_per_s == 2345.6


def test_a_bigger_backlog_for_the_long_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_runs(monkeypatch, [1.0] * 4)
    got = bench.run_matrix(None, [object()] * 3, [], [1], [100, 1000], "t",  # type: ignore[arg-type]
                           Path("."), lambda *_: None, lambda _s: None,
                           backlog_at={1000: [object()] * 9})
    assert [(r.commit_interval_ms, r.events) for r in got] == [(100, 3), (100, 3),
                                                                (1000, 9), (1000, 9)]
