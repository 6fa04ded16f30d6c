"""Seeded fault injection: 20,000 events through 2 ledger processes, SIGKILLed at random.

Replay a failure with SETTLEMENT_FAULT_SEED=<seed printed by the test>.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from settlement import loadgen
from settlement.runtime.local import Fleet
from tests.conftest import INFRA, Namespace
from tests.e2e.checker import check_ledger_invariants, wait_drained
from tests.integration.helpers import produce_raw, register

EVENTS = int(os.environ.get("SETTLEMENT_FAULT_EVENTS", "20000"))
KILLS = int(os.environ.get("SETTLEMENT_FAULT_KILLS", "10"))


def _seed() -> int:
    env = os.environ.get("SETTLEMENT_FAULT_SEED")
    return int(env) if env else random.SystemRandom().randrange(1, 2**31)


def _restart_broker() -> float:
    """kill -9 the local Kafka broker and start it again; return seconds it was down."""
    pid_file = Path(os.environ.get("INFRA_HOME", INFRA.parent / ".infra")) / "kafka" / "kafka.pid"
    pid = int(pid_file.read_text().split()[0])
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    while Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    subprocess.run(["bash", str(INFRA / "up.sh"), "kafka"], check=True, capture_output=True)
    return time.monotonic() - t0


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("broker_restart", [False, True], ids=["sigkill", "sigkill+broker-kill9"])
def test_ledger_is_exactly_once_under_random_sigkills(ns: Namespace, broker_restart: bool) -> None:
    seed = _seed()
    print(f"\nfault-injection seed={seed} events={EVENTS} kills>={KILLS} "
          f"broker_restart={broker_restart} (replay: SETTLEMENT_FAULT_SEED={seed})")
    rng = random.Random(seed)
    register(ns.settings, loadgen.merchants(200, 3, ["EUR", "USD"], seed))
    manifest = list(loadgen.generate(EVENTS, merchants_n=200, currencies=["EUR", "USD"],
                                     seed=seed, invalid_ratio=0.01, duplicate_ratio=0.005))

    fleet = Fleet.of("ledger", 2, env=ns.env, log_dir=ns.log_dir)
    fleet.start()
    # Produce in slices over ~20 s so the kills land while work is in flight.
    slices = [manifest[i:i + 1000] for i in range(0, len(manifest), 1000)]
    producer = threading.Thread(target=lambda: [
        (produce_raw(ns.settings, [(r.key, r.value) for r in s]), time.sleep(1.0)) for s in slices
    ])
    producer.start()
    kills, broker_down_s = 0, 0.0
    while kills < KILLS or producer.is_alive():
        time.sleep(rng.uniform(0.3, 2.5))
        victim = rng.choice(fleet.workers)
        if victim.alive:
            victim.kill(signal.SIGKILL)
            kills += 1
            time.sleep(rng.uniform(0.0, 1.0))
        victim.start()
        if broker_restart and kills == KILLS // 2 and not broker_down_s:
            broker_down_s = _restart_broker()
            print(f"broker killed -9 and restarted ({broker_down_s:.1f}s down)")
    producer.join()
    for w in fleet.workers:
        if not w.alive:
            w.start()
    try:
        wait_drained(ns.settings, f"{ns.settings.worker.group_prefix}-ledger", timeout_s=300)
    finally:
        codes = fleet.stop()
    report = check_ledger_invariants(ns.settings, manifest)
    print(f"kills={kills} starts={[w.starts for w in fleet.workers]} figures={report.figures}")
    assert codes == [0, 0], f"workers did not drain cleanly: {codes} (seed={seed})"
    assert not report.violations, f"seed={seed}: " + "; ".join(report.violations)
    assert kills >= KILLS
