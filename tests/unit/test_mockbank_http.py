"""Mock bank over HTTP: transport faults, down, outbox paging, admin API, config, CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from settlement.bank.mockbank import __main__ as cli
from settlement.bank.mockbank.config import load
from settlement.domain.errors import ConfigError
from tests.unit.test_mockbank_support import (
    AUTH,
    BIC,
    OPEN,
    advance,
    client,
    config_dict,
    outbox,
    pacs008,
    send,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "banks.yaml"


def test_an_injected_5xx_processes_nothing(tmp_path: Path) -> None:
    c = client(tmp_path, error_5xx_rate=1.0)
    assert send(c, pacs008([(OPEN, 100)])).status_code == 503
    assert outbox(c) == [] and c.get(f"/admin/banks/{BIC}/transactions").json() == []


def test_a_bank_set_down_answers_503_until_set_up_again(tmp_path: Path) -> None:
    c = client(tmp_path)
    assert c.post(f"/admin/banks/{BIC}/faults", json={"down": True}).json()["down"] is True
    assert send(c, pacs008([(OPEN, 100)])).status_code == 503
    assert c.get(f"/banks/{BIC}/messages", headers=AUTH).status_code == 503
    assert c.get("/healthz").status_code == 200  # admin and health stay up
    c.post(f"/admin/banks/{BIC}/faults", json={"down": False})
    assert send(c, pacs008([(OPEN, 100)])).status_code == 200


def test_fault_updates_are_partial_validated_and_survive_a_restart(tmp_path: Path) -> None:
    c = client(tmp_path)
    profile = c.post(f"/admin/banks/{BIC}/faults", json={"reject_rate": 0.25}).json()
    assert (profile["reject_rate"], profile["seed"]) == (0.25, 7)
    assert c.post(f"/admin/banks/{BIC}/faults", json={"reject_rate": 2}).status_code == 400
    assert c.post(f"/admin/banks/{BIC}/faults", content=b"[1]").status_code == 400
    assert client(tmp_path).get(f"/admin/banks/{BIC}/faults").json()["reject_rate"] == 0.25


def test_a_dropped_answer_is_processed_and_can_be_fetched_from_the_outbox(tmp_path: Path) -> None:
    c = client(tmp_path, drop_rate=1.0)
    r = send(c, pacs008([(OPEN, 100)]))
    assert r.content == b""  # headers only: under uvicorn the connection is closed mid-answer
    assert [m["type"] for m in outbox(c)] == ["pacs.002.001.10"]


def test_the_outbox_pages_with_a_monotone_cursor(tmp_path: Path) -> None:
    c = client(tmp_path)
    for i in range(5):
        send(c, pacs008([(OPEN, 10)], msg=str(i)))
    advance(c, advance_days=1)
    everything = outbox(c)
    assert len(everything) == 5 + 5 + 2  # pacs.002s, camt.054s, two camt.053
    seen, cursor = [], 0
    while True:
        r = c.get(f"/banks/{BIC}/messages", params={"after": cursor, "limit": 3}, headers=AUTH).json()
        if not r["messages"]:
            assert r["next"] == cursor
            break
        assert len(r["messages"]) <= 3
        seen += r["messages"]
        cursor = r["next"]
    assert seen == everything
    cursors = [m["cursor"] for m in seen]
    assert cursors == sorted(set(cursors))
    assert c.get(f"/banks/{BIC}/messages", params={"after": "x"}, headers=AUTH).status_code == 400


def test_the_clock_api_reports_and_refuses_to_go_back(tmp_path: Path) -> None:
    c = client(tmp_path)
    now = c.get("/admin/clock").json()["now"]
    assert c.post("/admin/clock", json={"to": "2020-01-01T00:00:00+00:00"}).status_code == 400
    assert c.post("/admin/clock", json={"to": "not a date"}).status_code == 400
    assert c.get("/admin/clock").json()["now"] == now
    assert c.get("/admin/banks/NOPEDEFFXXX/accounts").status_code == 404


def test_config_expands_environment_references_and_never_shows_the_token(tmp_path: Path) -> None:
    path = tmp_path / "banks.yaml"
    path.write_text(yaml.safe_dump(config_dict(tmp_path / "state")))
    config = load(path, env={"MOCKBANK_TEST_TOKEN": "from-env"})
    assert config.banks[0].token.get_secret_value() == "from-env"
    assert "from-env" not in repr(config)
    assert load(path, env={}).banks[0].token.get_secret_value() == "test-token"
    path.write_text(yaml.safe_dump({**config_dict(tmp_path), "banks": [
        {**config_dict(tmp_path)["banks"][0], "token": "${NOT_SET_ANYWHERE}"}]}))
    with pytest.raises(ConfigError):
        load(path, env={})


def test_the_example_config_loads(tmp_path: Path) -> None:
    config = load(EXAMPLE, env={})
    assert [b.bic for b in config.banks] == ["MOCKDEFFXXX", "MOCKFRPPXXX", "MOCKNL2AXXX"]
    for bank in config.banks:
        assert {a.currency for a in bank.processor_accounts} == {"EUR", "USD"}
        assert bank.accept_unknown_accounts


def test_the_module_has_a_helpful_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out and "--port" in out and "docs/mock-bank.md" in out


def test_a_timeout_stalls_then_processes_so_the_answer_is_also_in_the_outbox(tmp_path: Path) -> None:
    c = client(tmp_path, timeout_rate=1.0, timeout_sleep_s=0.05, latency_ms=[1, 2])
    assert send(c, pacs008([(OPEN, 100)])).status_code == 200
    assert [m["type"] for m in outbox(c)] == ["pacs.002.001.10"]
