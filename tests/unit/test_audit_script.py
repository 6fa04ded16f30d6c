"""infra/audit.py (make audit) decides on what pip-audit and PyPI's project data say: any
known vulnerability fails, and nothing that could not be checked ever passes silently."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "audit.py"


@pytest.fixture
def audit(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "_installed", lambda: {"lxml": "6.1.3", "holidays": "0.109",
                                                       "python-dateutil": "2.9.0.post0"})
    return module


def run(audit: ModuleType, monkeypatch: pytest.MonkeyPatch, pip_audit: Any, latest: dict[str, Any],
        *args: str) -> int:
    monkeypatch.setattr(audit, "_pip_audit", lambda: pip_audit)
    monkeypatch.setattr(audit, "_latest", lambda name: (name, *latest[name]))
    monkeypatch.setattr(sys, "argv", ["audit.py", *args])
    code: int = audit.main()
    return code


def test_a_vulnerability_pip_audit_reports_fails(audit: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    found = ([("lxml", "6.1.3", "PYSEC-0000-1", ["6.1.4"])], set(), None)
    assert run(audit, monkeypatch, found, {}) == 1
    assert "VULNERABLE lxml 6.1.3: PYSEC-0000-1 (fixed in 6.1.4)" in capsys.readouterr().out


def test_what_pip_audit_could_not_look_up_is_checked_on_the_latest_release(
    audit: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    skipped = ([], {"lxml", "holidays"}, None)
    latest = {"lxml": ("6.1.3", [("GHSA-xxxx", ["6.2"])]), "holidays": ("0.109", [])}
    assert run(audit, monkeypatch, skipped, latest) == 1
    assert "VULNERABLE lxml 6.1.3: GHSA-xxxx" in capsys.readouterr().out


@pytest.mark.parametrize(("mode", "code"), [((), 2), (("--unchecked", "warn"), 0)])
def test_an_older_release_or_no_answer_is_unchecked_never_a_pass(
    audit: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    mode: tuple[str, ...], code: int,
) -> None:
    # pip-audit could look up nothing (the per-release API answers 404 everywhere)
    skipped = ([], {"lxml", "holidays", "python-dateutil"}, None)
    latest = {"lxml": ("6.1.3", []), "holidays": (None, []), "python-dateutil": ("4.0.0", [])}
    assert run(audit, monkeypatch, skipped, latest, *mode) == code
    out = capsys.readouterr().out
    assert "UNCHECKED holidays 0.109: PyPI did not answer" in out
    assert "UNCHECKED python-dateutil 2.9.0.post0: only the latest release (4.0.0)" in out
    assert "1 by PyPI's project data, 2 unchecked" in out
