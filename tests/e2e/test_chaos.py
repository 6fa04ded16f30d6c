"""The short chaos campaign of CI: `settlement chaos` itself, on the real stack.

3 runs x 5,000 payments x 3 faults drawn from the whole menu (worker SIGKILL, zombie,
broker and Cassandra kill -9, Cassandra stall, bank 5xx and timeout storms, rebalance),
each followed by the independent I1-I7 checker. Replay a failure with
SETTLEMENT_CHAOS_SEED=<campaign seed printed below>, or one run with the
`settlement chaos --run-seed ...` line the output prints for it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CASSANDRA_PORT, KAFKA

RUNS = int(os.environ.get("SETTLEMENT_CHAOS_RUNS", "3"))
PAYMENTS = int(os.environ.get("SETTLEMENT_CHAOS_PAYMENTS", "5000"))
FAULTS = int(os.environ.get("SETTLEMENT_CHAOS_FAULTS", "3"))


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_short_chaos_campaign_keeps_every_invariant(stack: object, tmp_path: Path) -> None:
    env_seed = os.environ.get("SETTLEMENT_CHAOS_SEED")
    seed = int(env_seed) if env_seed else random.SystemRandom().randrange(1, 2**31)
    print(f"\nchaos campaign seed={seed} (replay: SETTLEMENT_CHAOS_SEED={seed})", flush=True)
    env = {**os.environ, "SETTLEMENT_KAFKA__BOOTSTRAP_SERVERS": KAFKA,
           "SETTLEMENT_CASSANDRA__PORT": str(CASSANDRA_PORT), "COLUMNS": "160"}
    out = tmp_path / "chaos"
    proc = subprocess.run(
        [sys.executable, "-m", "settlement", "chaos", "--runs", str(RUNS), "--payments",
         str(PAYMENTS), "--faults", str(FAULTS), "--window-s", "30", "--seed", str(seed),
         "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=2300, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if not ln.startswith("%")]
    print("\n".join(lines[-60:]))
    assert proc.returncode == 0, f"chaos campaign seed={seed} failed:\n" + proc.stderr[-3000:]
    report = json.loads((out / f"campaign-{seed}.json").read_text())
    runs = report["runs"]
    assert len(runs) == RUNS and all(not r["violations"] for r in runs)
    # the campaign really did what it claims: every run carried out its faults, checked
    # every payment, and the banks answered
    for r in runs:
        assert len(r["faults"]) == FAULTS and not any("failed" in f["note"] for f in r["faults"])
        assert r["figures"]["produced"] == PAYMENTS
        assert r["figures"]["ledger_rows"] == r["figures"]["valid"] > 0
        assert r["figures"]["pacs008"] > 0 and r["figures"]["bank_txs"] > 0
