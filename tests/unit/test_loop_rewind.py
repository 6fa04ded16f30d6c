"""The loop's rewind after an abort: a seek that fails falls back to the committed offsets,
asked again while the group's coordinator is not ready (a broker restart causes both)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from settlement.kafka import loop, reader


class _Consumer:
    """Seeks fail; `committed` fails with the given codes first, then answers offset 7."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.assigned: list[tuple[str, int, int]] | None = None

    def seek(self, tp: TopicPartition) -> None:
        raise KafkaException(KafkaError(KafkaError._STATE, "partition not assigned yet"))

    def committed(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0), "not yet"))
        return [TopicPartition(tp.topic, tp.partition, 7) for tp in tps]

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = [(tp.topic, tp.partition, tp.offset) for tp in tps]


def _loop(consumer: _Consumer) -> Any:
    stage = object.__new__(loop.StageLoop)
    stage._assigned = {("t", 0), ("t", 1)}  # type: ignore[attr-defined]
    stage._consumer = consumer  # type: ignore[attr-defined]
    stage._kafka = SimpleNamespace(txn_call_timeout_s=5.0)  # type: ignore[attr-defined]
    stage._log = structlog.get_logger()  # type: ignore[attr-defined]
    return stage


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader.time, "sleep", lambda _s: None)


def test_a_failed_seek_reassigns_from_the_committed_offsets_once_the_coordinator_answers() -> None:
    c = _Consumer(KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.NOT_COORDINATOR)
    _loop(c)._rewind({("t", 0): 3, ("t", 1): 4, ("gone", 0): 9})
    assert c.assigned == [("t", 0, 7), ("t", 1, 7)]


def test_any_other_error_of_committed_is_raised() -> None:
    c = _Consumer(KafkaError._TRANSPORT)
    with pytest.raises(KafkaException):
        _loop(c)._rewind({("t", 0): 3})
    assert c.assigned is None
