"""`reader.committed`: a coordinator that is not ready yet is asked again; other errors are not."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from settlement.kafka import reader


class _Consumer:
    """Answers `committed` with the given errors first, then the offsets."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.calls = 0

    def committed(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0), "not yet"))
        return [TopicPartition(tp.topic, tp.partition, 7) for tp in tps]


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader.time, "sleep", lambda _s: None)


TPS = [TopicPartition("t", 0), TopicPartition("t", 1)]


@pytest.mark.parametrize("code", [KafkaError.NOT_COORDINATOR,
                                  KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                  KafkaError.COORDINATOR_NOT_AVAILABLE])
def test_a_coordinator_not_ready_is_asked_again(code: int) -> None:
    c = _Consumer(code, code)
    got = reader.committed(c, TPS)  # type: ignore[arg-type]
    assert [(tp.partition, tp.offset) for tp in got] == [(0, 7), (1, 7)]
    assert c.calls == 3


def test_other_errors_are_raised_at_once() -> None:
    c = _Consumer(KafkaError.GROUP_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException, match="not yet"):
        reader.committed(c, TPS)  # type: ignore[arg-type]
    assert c.calls == 1


def test_a_coordinator_that_stays_away_is_an_error_in_the_end(monkeypatch: Any) -> None:
    clock = iter(range(0, 1000, 10))  # each look at the clock is 10 s later
    monkeypatch.setattr(reader.time, "monotonic", lambda: next(clock))
    c = _Consumer(*[KafkaError.NOT_COORDINATOR] * 50)
    with pytest.raises(KafkaException):
        reader.committed(c, TPS, timeout_s=30)  # type: ignore[arg-type]
    assert 1 < c.calls < 10
