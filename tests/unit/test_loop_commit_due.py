"""When the loop commits: a transaction spans up to the commit interval, not the interval
and one more step (its first records wait for the whole span)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from settlement.kafka.loop import commit_due


def _span_ms(step_ms: int, interval_ms: int) -> int:
    """A transaction's span when every step takes `step_ms`: steps run until one is due."""
    elapsed = 0
    while True:
        elapsed += step_ms
        if commit_due(elapsed / 1000, step_ms / 1000, interval_ms):
            return elapsed


def test_at_one_second_and_200_ms_steps_the_transaction_commits_after_four_steps() -> None:
    assert not commit_due(0.6, 0.2, 1000)  # a fourth step still ends at 800 ms
    assert commit_due(0.8, 0.2, 1000)  # a fifth would end at 1,200 ms: commit now
    assert _span_ms(200, 1000) == 800


def test_a_step_longer_than_the_interval_commits_after_every_step() -> None:
    assert _span_ms(170, 100) == 170
    assert commit_due(0.0, 0.0, 0)


@given(step_ms=st.integers(1, 2000), interval_ms=st.integers(0, 5000))
def test_a_transaction_never_spans_more_than_the_interval_or_one_step(
        step_ms: int, interval_ms: int) -> None:
    span = _span_ms(step_ms, interval_ms)
    assert span <= max(interval_ms, step_ms)
    # and it does not commit early by more than one step: the next step would have passed it
    assert span + step_ms >= interval_ms
