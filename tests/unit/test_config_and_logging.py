from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from settlement.config import load_settings
from settlement.domain.errors import ConfigError
from settlement.logging import mask_sensitive
from tests.unit.cli import invoke


def test_env_prefix_and_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETTLEMENT_KAFKA__BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("SETTLEMENT_WORKER__COMMIT_INTERVAL_MS", "1000")
    s = load_settings()
    assert s.kafka.bootstrap_servers == "broker:9092"
    assert s.worker.commit_interval_ms == 1000


def test_toml_file_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text('[cassandra]\nkeyspace = "from_file"\nport = 19042\n'
                   '[worker]\ncommit_interval_ms = 250\n')
    monkeypatch.setenv("SETTLEMENT_CASSANDRA__PORT", "29042")
    s = load_settings(cfg, worker={"instance_id": "w-9"})
    assert s.cassandra.keyspace == "from_file"
    assert s.cassandra.port == 29042            # env beats file
    assert s.worker.commit_interval_ms == 250   # file beats default
    assert s.worker.instance_id == "w-9"        # flags beat everything


def test_settings_are_frozen_and_secrets_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETTLEMENT_KAFKA__SASL_PASSWORD", "hunter2")
    s = load_settings()
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    assert s.kafka.client_config()["sasl.password"] == "hunter2"
    with pytest.raises(ValidationError):
        s.kafka.bootstrap_servers = "x"  # type: ignore[misc]


def test_bad_settings_are_refused_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SETTLEMENT_WORKER__PROCESSING_GUARANTEE", "maybe-once")
    with pytest.raises(ValidationError, match="processing_guarantee"):
        load_settings()
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")


def test_logs_mask_ibans_accounts_and_secrets() -> None:
    event = mask_sensitive(None, "info", {
        "event": "merchant.upserted", "account_id": "DE89370400440532013000",
        "note": "paid to DE89370400440532013000 today", "password": "hunter2",
    })
    assert event["account_id"] == "DE****************3000"
    assert "370400440532" not in event["note"] and event["note"].endswith("3000 today")
    assert event["password"] == "***"


def test_the_default_poll_wait_leaves_the_latency_target_room(monkeypatch: pytest.MonkeyPatch) -> None:
    # Below full load every cycle waits the poll timeout before it writes: at 100 ms the
    # p99 missed commit interval + 250 ms (docs/benchmarks.md); 20 ms met it.
    monkeypatch.delenv("SETTLEMENT_WORKER__POLL_TIMEOUT_S", raising=False)
    assert load_settings().worker.poll_timeout_s == 0.02


def test_configuration_reference_is_up_to_date() -> None:
    from settlement.cli.config_cmd import reference

    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert doc.read_text(encoding="utf-8") == reference(), (
        "docs/configuration.md drifted: run `settlement config docs > docs/configuration.md`")


@pytest.mark.parametrize(("content", "message"), [
    (b"[worker\ncommit_interval_ms = 1\n", "not valid UTF-8 TOML: Expected ']'"),
    (b"\xff\xfe[worker]\n", "not valid UTF-8 TOML: 'utf-8' codec"),
], ids=["broken_toml", "not_utf8"])
def test_an_unreadable_config_file_is_a_config_error(tmp_path: Path, content: bytes,
                                                      message: str) -> None:
    # these escaped as TOMLDecodeError / UnicodeDecodeError: a traceback and exit 1
    cfg = tmp_path / "s.toml"
    cfg.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg)


def test_a_config_file_named_by_the_environment_must_exist(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    # it was skipped silently, so a worker whose config mount was missing ran on the defaults
    monkeypatch.setenv("SETTLEMENT_CONFIG_FILE", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"not found: .*missing.toml \(SETTLEMENT_CONFIG_FILE\)"):
        load_settings()
    monkeypatch.setenv("SETTLEMENT_CONFIG_FILE", str(tmp_path))  # a directory
    with pytest.raises(ConfigError, match="not found"):
        load_settings()


def test_cli_errors_print_brackets_as_text_not_markup(tmp_path: Path) -> None:
    # rich read "[a-z][a-z0-9_]" as markup tags and dropped them from the message
    cfg = tmp_path / "s.toml"
    cfg.write_text('[cassandra]\nkeyspace = "Bad-Name"\n')
    result = invoke(["--config", str(cfg), "config", "show"])
    assert result.exit_code == 2
    assert "pattern '^[a-z][a-z0-9_]{0,47}$'" in result.stderr


@pytest.mark.parametrize(("args", "files", "message"), [
    (["reconcile", "--date", "2026-11-20", "--amount-tolerance", "-1"], {},
     "tolerances must be >= 0"),
    (["mock-bank", "--config", "@bad.yaml"], {"bad.yaml": b"banks: [\n"},
     "cannot read mock bank config"),
    (["mock-bank", "--config", "@bin.yaml"], {"bin.yaml": b"\xff\xfe\x00"},
     "cannot read mock bank config"),
    (["mock-bank", "--config", "@list.yaml"], {"list.yaml": b"- a\n"},
     "expected a mapping at the top level"),
    # a bad calendar was reported only after connecting to Cassandra (or as "unavailable")
    (["--config", "@banks.toml", "worker", "--role", "batcher"],
     {"banks.toml": b'[[banks]]\nbic = "MOCKDEFFXXX"\ncutoffs = ["25:00"]\n'},
     "bank MOCKDEFFXXX: cutoff '25:00' is not a 24-hour time"),
], ids=["negative_tolerance", "broken_yaml", "binary_yaml", "yaml_not_a_mapping", "bad_cutoff"])
def test_bad_arguments_exit_2_with_one_line_not_a_traceback(
    tmp_path: Path, args: list[str], files: dict[str, bytes], message: str,
) -> None:
    # each of these escaped as ValueError / ConfigError: a traceback and exit 1
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    argv = [str(tmp_path / a[1:]) if a.startswith("@") else a for a in args]
    result = invoke(argv, env={"SETTLEMENT_CASSANDRA__PORT": "1"})  # none up
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())


def test_library_warnings_reach_the_json_log_masked_and_without_the_use_noise(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The Cassandra driver's own warnings (reconnection attempts, pool failures) were
    swallowed by its NullHandler; they are part of the worker's JSON log now."""
    import json
    import logging

    import structlog

    from settlement.logging import configure

    saved, root = structlog.get_config(), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure("json", "info")
        logging.getLogger("cassandra.pool").warning("Error attempting to reconnect to %s", "h:9042")
        logging.getLogger("cassandra.protocol").warning(
            "Server warning: `USE <keyspace>` with prepared statements is considered to be an "
            "anti-pattern")
        logging.getLogger("httpx").info("chatter below warning")
    finally:  # the captured stream closes after this test: leave logging as it was
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    assert [(x["logger"], x["event"], x["level"]) for x in lines] == [
        ("cassandra.pool", "Error attempting to reconnect to h:9042", "warning")]


def _loop_client_configs(monkeypatch: pytest.MonkeyPatch, kafka: Any
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (consumer, producer) configurations a StageLoop builds from `kafka`."""
    from settlement.config import WorkerSettings
    from settlement.kafka import loop

    confs: list[dict[str, Any]] = []

    class Capture:
        def __init__(self, conf: dict[str, Any], **_: Any) -> None:
            confs.append(conf)

    monkeypatch.setattr(loop, "Consumer", Capture)
    monkeypatch.setattr(loop, "Producer", Capture)
    loop.StageLoop(kafka=kafka, worker=WorkerSettings(processing_guarantee="at-least-once"),
                   handler=None, topics=["t"], group_id="g", role="ledger")  # type: ignore[arg-type]
    return (next(c for c in confs if "group.id" in c),
            next(c for c in confs if "group.id" not in c))


def test_worker_consumers_wait_for_a_fuller_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    """fetch.min.bytes / fetch.wait.max.ms reach the loop's consumer (librdkafka's 1 byte
    and 500 ms answered ~200 small fetches/s at 2,000 payments/s)."""
    from settlement.config import KafkaSettings

    consumer, _ = _loop_client_configs(monkeypatch, KafkaSettings(fetch_wait_max_ms=35))
    assert consumer["fetch.min.bytes"] == 65_536 and consumer["fetch.wait.max.ms"] == 35
    assert KafkaSettings().fetch_wait_max_ms == 20


def test_kafka_extra_overrides_the_workers_tunables(monkeypatch: pytest.MonkeyPatch) -> None:
    """`kafka.extra` is applied last, as documented: before, the loop's own settings came
    after it, so fetch.wait.max.ms or linger.ms could not be changed from the config."""
    from settlement.config import KafkaSettings

    kafka = KafkaSettings(extra={"fetch.wait.max.ms": "5", "session.timeout.ms": "20000",
                                 "linger.ms": "1"})
    consumer, producer = _loop_client_configs(monkeypatch, kafka)
    assert consumer["fetch.wait.max.ms"] == "5" and consumer["session.timeout.ms"] == "20000"
    assert consumer["isolation.level"] == "read_committed" and consumer["group.id"] == "g"
    assert producer["linger.ms"] == "1" and producer["enable.idempotence"] is True


@pytest.mark.parametrize("key", ["isolation.level", "enable.auto.commit", "group.id",
                                 "transactional.id", "enable.idempotence",
                                 "enable.auto.offset.store", "auto.offset.reset",
                                 " Isolation.Level "])
def test_kafka_extra_may_not_change_what_exactly_once_and_reading_every_event_rest_on(
        key: str) -> None:
    from pydantic import ValidationError

    from settlement.config import KafkaSettings

    with pytest.raises(ValidationError, match=r"cannot be set through kafka\.extra"):
        KafkaSettings(extra={key: "x", "linger.ms": "1"})
