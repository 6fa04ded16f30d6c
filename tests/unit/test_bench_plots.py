"""The suite's plots and `settlement bench report`, from results alone (no stack)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from settlement.bench_plots import draw
from settlement.cli.main import app
from tests.unit.cli import invoke
from tests.unit.test_bench_stats import suite

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_plot_is_a_non_empty_png(tmp_path: Path) -> None:
    results = suite() | {"meta": {"when": "2026-11-21T23:00:00+00:00", "cpus": 2,
                                  "load_before": [1.5, 1.2, 1.0]}}
    paths = draw(results, tmp_path / "plots")
    assert sorted(p.name for p in paths) == [
        "latency_vs_commit_interval.png", "latency_vs_load.png", "latency_vs_workers.png",
        "memory_under_backlog.png",
        "throughput_vs_commit_interval.png", "throughput_vs_workers.png"]
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, p


def test_plots_are_skipped_for_scenarios_that_did_not_run(tmp_path: Path) -> None:
    assert draw({}, tmp_path) == []
    only_memory = {"memory": suite()["memory"]}
    assert [p.name for p in draw(only_memory, tmp_path)] == ["memory_under_backlog.png"]


def test_report_prints_the_summary_of_a_json_file_and_its_verdicts(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(suite() | {"meta": {"when": "2026-11-21T23:00:00+00:00"},
                                          "errors": {"e2e": "TimeoutError: window"}}))
    result = CliRunner().invoke(app, ["bench", "report", str(path), "--no-plots"],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "ledger EOS, 1 worker, 100 ms" in out
    assert "p99 <= 1250 ms" in out and "NO" in out
    assert "e2e: FAILED" in out and "TimeoutError: window" in out
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize(("args", "option"), [
    (["ledger", "--workers", "1,x"], "--workers"),
    (["ledger", "--commit-intervals", "0"], "--commit-intervals"),
    (["latency", "--workers", "9"], "--workers"),
    (["latency", "--commit-intervals", "abc"], "--commit-intervals"),
    (["latency", "--load-fractions", "0.1,1.5"], "--load-fractions"),
    (["latency", "--load-fractions", "0,0.2"], "--load-fractions"),
    (["latency", "--load-fractions", "0.2", "--rate", "500"], "--load-fractions"),
])
def test_bad_count_lists_are_usage_errors_before_any_stack_starts(args: list[str], option: str) -> None:
    result = invoke(["bench", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {option}" in result.output
    assert "stack" not in result.output  # refused before ensure_stack
