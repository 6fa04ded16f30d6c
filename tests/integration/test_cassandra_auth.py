"""Cassandra with PasswordAuthenticator: a node of its own (infra/start-cassandra.sh with
CASSANDRA_AUTH=1, its own ports and data), a login role with a generated password, then the
CLI migrates and reads with it; refused credentials are one clear line (exit 2), no secret."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster

from settlement.runtime.mockbank_proc import free_port
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def auth_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("cassandra-auth")
    env = {**os.environ, "INFRA_HOME": str(home), "INFRA_LIB_HOME": str(ROOT / ".infra"),
           "CASSANDRA_PORT": str(free_port()), "CASSANDRA_STORAGE_PORT": str(free_port()),
           "CASSANDRA_AUTH": "1", "CASSANDRA_HEAP": "512M"}
    started = subprocess.run(["bash", str(ROOT / "infra/start-cassandra.sh")], env=env,
                             capture_output=True, text=True, timeout=300, check=False)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield env
    finally:
        subprocess.run(["bash", str(ROOT / "infra/down.sh"), "cassandra", "--wipe"], env=env,
                       capture_output=True, timeout=120, check=False)


def _create_role(port: int, password: str) -> None:
    """As the default superuser (it appears a moment after start), a login role for us."""
    deadline = time.monotonic() + 90
    while True:
        cluster = Cluster(["127.0.0.1"], port=port, protocol_version=5,
                          auth_provider=PlainTextAuthProvider("cassandra", "cassandra"))
        try:
            session = cluster.connect()
            session.execute(f"CREATE ROLE IF NOT EXISTS settlement WITH PASSWORD = '{password}' "
                            "AND LOGIN = true AND SUPERUSER = true")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
        finally:
            cluster.shutdown()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "settlement", *args], env=env, capture_output=True,
                          text=True, timeout=180, check=False)


def test_the_cli_migrates_and_reads_with_password_authentication(auth_node: dict[str, str],
                                                                  tmp_path: Path) -> None:
    port = int(auth_node["CASSANDRA_PORT"])
    password = secrets.token_urlsafe(18)
    _create_role(port, password)
    env = {**auth_node, "SETTLEMENT_CASSANDRA__PORT": str(port),
           "SETTLEMENT_CASSANDRA__KEYSPACE": "auth_test", "SETTLEMENT_CASSANDRA__USERNAME": "settlement",
           "SETTLEMENT_CASSANDRA__PASSWORD": password}
    migrated = _cli(env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    listed = _cli(env, "merchants", "list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for out in (migrated, listed):
        assert password not in out.stdout + out.stderr

    wrong = "wrong-" + secrets.token_hex(8)
    refused = _cli({**env, "SETTLEMENT_CASSANDRA__PASSWORD": wrong}, "db", "migrate")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    text = " ".join((refused.stdout + refused.stderr).split())
    assert "refused the credentials of 'settlement'" in text
    assert wrong not in refused.stdout + refused.stderr and password not in text
    anonymous = _cli({k: v for k, v in env.items() if "USERNAME" not in k and "PASSWORD" not in k},
                     "db", "migrate")
    assert anonymous.returncode == 2, anonymous.stdout + anonymous.stderr
    assert "requires authentication" in " ".join((anonymous.stdout + anonymous.stderr).split())
