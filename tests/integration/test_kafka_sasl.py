"""Kafka with SASL/PLAIN on the local stack's authenticating listener: a real ledger worker
records payments through it, and refused credentials are one clear line (exit 2) that never
shows the secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from settlement import bootstrap
from settlement.config import Settings
from settlement.domain.merchant import MerchantAccount
from tests.conftest import ROOT, InProcessWorker, Namespace, wait_until
from tests.integration.helpers import item_counts, ledger_rows, produce_raw, register
from tests.unit.test_payment_contract import GOOD

SASL = os.environ.get("SETTLEMENT_TEST_KAFKA_SASL", "127.0.0.1:9094")
PASSWORD_FILE = Path(os.environ.get("SETTLEMENT_TEST_KAFKA_SASL_PASSWORD_FILE",
                                    ROOT / ".infra" / "kafka" / "sasl.password"))


def _password() -> str:
    if not PASSWORD_FILE.is_file():
        pytest.fail(f"{PASSWORD_FILE} is missing: the stack's SASL listener writes it at start "
                    "(infra/start-kafka.sh)")
    return PASSWORD_FILE.read_text().strip()


def _sasl(settings: Settings, password: str) -> Settings:
    kafka = settings.kafka.model_copy(update={
        "bootstrap_servers": SASL, "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
        "sasl_username": "settlement", "sasl_password": SecretStr(password)})
    return settings.model_copy(update={"kafka": kafka})


def test_a_ledger_worker_records_payments_through_sasl_plain(ns: Namespace) -> None:
    s = _sasl(ns.settings, _password())
    register(s, [MerchantAccount(merchant_id=GOOD["merchant_id"], currency="EUR",
                                 creditor_name="Shop", account_id="FR7630006000011234567890189",
                                 bank_bic="MOCKFRPPXXX")])
    events = [dict(GOOD, payment_id=f"pay-sasl-{i}", event_id=f"evt-sasl-{i}") for i in range(20)]
    produce_raw(s, [(e["payment_id"].encode(), json.dumps(e).encode()) for e in events])
    with InProcessWorker(bootstrap.build_worker(s, "ledger")):
        wait_until(lambda: len(item_counts(s)) == 20, 90, "20 items through SASL")
    assert set(ledger_rows(s)) == {e["payment_id"] for e in events}
    assert set(item_counts(s).values()) == {1}


def test_refused_credentials_are_a_clear_error_without_the_secret(ns: Namespace) -> None:
    wrong = "not-the-password-" + os.urandom(6).hex()
    env = {**ns.env, "SETTLEMENT_KAFKA__BOOTSTRAP_SERVERS": SASL,
           "SETTLEMENT_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "SETTLEMENT_KAFKA__SASL_MECHANISM": "PLAIN",
           "SETTLEMENT_KAFKA__SASL_USERNAME": "settlement", "SETTLEMENT_KAFKA__SASL_PASSWORD": wrong}
    out = subprocess.run([sys.executable, "-m", "settlement", "topics", "ensure"], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    text = " ".join((out.stdout + out.stderr).split())
    assert "refused the credentials of 'settlement'" in text
    assert wrong not in out.stdout + out.stderr
    shown = subprocess.run([sys.executable, "-m", "settlement", "config", "show"], env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0 and "sasl_password" in shown.stdout
    assert wrong not in shown.stdout + shown.stderr
