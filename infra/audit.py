"""Known vulnerabilities in the installed packages of this venv, from PyPI (`make audit`).

pip-audit asks PyPI's per-release JSON API (/pypi/NAME/VERSION/json) about each installed
distribution. A PyPI that does not serve that API (the one this project's machines reach
serves the project JSON and the simple index only) answers 404 for every package, and
pip-audit without --strict then reports "No known vulnerabilities found": a false pass. So:

1. pip-audit (its PyPI service): every vulnerability it reports fails the audit;
2. what it could not look up is checked against the project JSON (/pypi/NAME/json), whose
   `vulnerabilities` are those of the latest release: exact when that is the installed one;
3. what neither could check is listed. `--unchecked fail` (the default) fails on it, so an
   unreachable service is never a pass; `--unchecked warn` (make test) only says so loudly.

Exit 0: no known vulnerability (and, by default, everything checked); 1: vulnerabilities;
2: something could not be checked. Stdlib only; run with the venv's python.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.metadata
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

PROJECT_JSON = "https://pypi.org/pypi/{name}/json"
TIMEOUT_S = 15


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed() -> dict[str, str]:
    """Installed distributions, less editable installs of our own (not on PyPI)."""
    out = {}
    for dist in importlib.metadata.distributions():
        direct = dist.read_text("direct_url.json")
        if direct and json.loads(direct).get("dir_info", {}).get("editable"):
            continue
        out[_canonical(dist.metadata["Name"])] = dist.version
    return out


def _pip_audit() -> tuple[list[tuple[str, str, str, list[str]]], set[str], str | None]:
    """(vulnerabilities as (name, version, id, fixed in), names it could not check, error)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "audit.json"
        proc = subprocess.run(
            [sys.executable, "-m", "pip_audit", "--skip-editable", "--progress-spinner", "off",
             "--format", "json", "--output", str(report), "--timeout", str(TIMEOUT_S)],
            capture_output=True, text=True, check=False)
        if not report.is_file():
            return [], set(), (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        deps = json.loads(report.read_text())["dependencies"]
    vulns = [(d["name"], d["version"], v["id"], v.get("fix_versions", []))
             for d in deps for v in d.get("vulns", [])]
    return vulns, {_canonical(d["name"]) for d in deps if "skip_reason" in d}, None


def _latest(name: str) -> tuple[str, str | None, list[tuple[str, list[str]]]]:
    """(name, the latest version or None when unreachable, its vulnerabilities)."""
    try:
        with urllib.request.urlopen(PROJECT_JSON.format(name=name), timeout=TIMEOUT_S) as resp:
            doc = json.load(resp)
    except (urllib.error.URLError, TimeoutError, ValueError):
        return name, None, []
    found = [(v["id"], v.get("fixed_in", [])) for v in doc.get("vulnerabilities") or []
             if not v.get("withdrawn")]
    return name, str(doc["info"]["version"]), found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unchecked", choices=("fail", "warn"), default="fail",
                        help="what a package that could not be checked does (default: fail)")
    args = parser.parse_args()
    started = time.monotonic()
    installed = _installed()
    vulns, skipped, error = _pip_audit()
    if error is not None:  # pip-audit did not run at all: check everything the fallback way
        print(f"audit: pip-audit failed ({error}); using PyPI's project data only")
        skipped = set(installed)
    unchecked: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for name, latest, found in pool.map(_latest, sorted(skipped & set(installed))):
            version = installed[name]
            if latest is None:
                unchecked.append(f"{name} {version}: PyPI did not answer")
            elif latest != version:
                unchecked.append(f"{name} {version}: only the latest release ({latest}) can be "
                                 "checked here")
            else:
                vulns += [(name, version, vid, fixed) for vid, fixed in found]
    for name, version, vid, fixed in vulns:
        print(f"audit: VULNERABLE {name} {version}: {vid} (fixed in {', '.join(fixed) or '?'})")
    for line in unchecked:
        print(f"audit: UNCHECKED {line}")
    by_project = len(skipped & set(installed)) - len(unchecked)
    print(f"audit: {len(installed)} packages: {len(installed) - by_project - len(unchecked)} checked "
          f"by pip-audit, {by_project} by PyPI's project data, {len(unchecked)} unchecked; "
          f"{len(vulns)} known vulnerabilit{'y' if len(vulns) == 1 else 'ies'} "
          f"({time.monotonic() - started:.1f} s)")
    if vulns:
        return 1
    if unchecked and args.unchecked == "fail":
        print("audit: FAILED: packages above could not be checked (--unchecked warn to let them pass)")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
