"""Properties of window_of over 2026-2027 for several zones, DST-heavy calendars included."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.config import BankSettings
from settlement.domain.calendar import BankCalendar, _cutoff_instants, parse_cutoffs
from settlement.service.calendars import build_calendar

YEARS = range(2025, 2029)
CALENDARS = [
    build_calendar(BankSettings(bic="BERLINXXX"), YEARS),
    build_calendar(BankSettings(bic="NEWYORKXX", timezone="America/New_York", cutoffs=["09:00", "17:30"],
                                holiday_calendar="none", holidays=["2026-07-03", "2026-11-26"]), YEARS),
    build_calendar(BankSettings(bic="TOKYOXXXX", timezone="Asia/Tokyo", cutoffs=["15:00"],
                                holiday_calendar="none"), YEARS),
    # Every day open and cutoffs inside the DST gaps and overlaps: the hard cases.
    BankCalendar("DSTHARDXX", "Europe/Berlin", parse_cutoffs(["00:00", "02:00", "02:30", "03:00", "23:59"]),
                 weekend=frozenset()),
    BankCalendar("DSTNYCXXX", "America/New_York", parse_cutoffs(["01:30", "02:15", "12:00"]),
                 weekend=frozenset({4})),
]
DST_DAYS = [date(2026, 3, 29), date(2026, 10, 25), date(2027, 3, 28), date(2027, 10, 31),
            date(2026, 3, 8), date(2026, 11, 1), date(2027, 3, 14), date(2027, 11, 7)]
ZONES = [UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"), ZoneInfo("Asia/Tokyo")]

anywhere = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31, 23, 59, 59))  # noqa: DTZ001
near_dst = st.builds(
    lambda day, seconds: datetime.combine(day, datetime.min.time()) + timedelta(seconds=seconds),
    st.sampled_from(DST_DAYS), st.integers(min_value=-6 * 3600, max_value=30 * 3600),
)
instants = st.builds(
    lambda naive, zone: naive.replace(tzinfo=UTC).astimezone(zone),
    st.one_of(anywhere, near_dst), st.sampled_from(ZONES),
)
calendars = st.sampled_from(CALENDARS)
PROPERTY = settings(max_examples=300, deadline=None)


@PROPERTY
@given(calendars, instants)
def test_the_window_contains_the_instant_and_round_trips_by_id(cal: BankCalendar, t: datetime) -> None:
    w = cal.window_of(t)
    assert w.opens_at <= t < w.cutoff_at
    assert w.cutoff_at.utcoffset() == timedelta(0)
    assert cal.is_business_day(w.settlement_date)
    assert cal.window_by_id(w.window_id) == w
    assert cal.window_of(w.opens_at) == w
    assert cal.window_of(w.cutoff_at - timedelta(microseconds=1)) == w


@PROPERTY
@given(calendars, instants)
def test_the_next_window_opens_where_this_one_cuts_off(cal: BankCalendar, t: datetime) -> None:
    w = cal.window_of(t)
    nxt = cal.next_window(w)
    assert nxt.opens_at == w.cutoff_at < nxt.cutoff_at
    assert nxt.window_id > w.window_id
    assert cal.window_by_id(nxt.window_id) == nxt


@PROPERTY
@given(calendars, instants, instants)
def test_windows_are_monotone_in_capture_time(cal: BankCalendar, a: datetime, b: datetime) -> None:
    t1, t2 = sorted([a, b])
    w1, w2 = cal.window_of(t1), cal.window_of(t2)
    assert w1.cutoff_at <= w2.cutoff_at
    assert w1.window_id <= w2.window_id


@settings(max_examples=100, deadline=None)
@given(calendars, instants, st.integers(min_value=0, max_value=10 * 24 * 3600))
def test_windows_between_are_contiguous_and_cover_the_span(
        cal: BankCalendar, start: datetime, span: int) -> None:
    end = start.astimezone(UTC) + timedelta(seconds=span)  # in UTC: local arithmetic drops fold
    windows = cal.windows_between(start, end)
    if span == 0:
        assert windows == []
        return
    assert windows[0] == cal.window_of(start)
    assert windows[-1] == cal.window_of(end - timedelta(microseconds=1))
    for earlier, later in pairwise(windows):
        assert later.opens_at == earlier.cutoff_at


def _window_by_scan(cal: BankCalendar, t: datetime) -> tuple[str, datetime, datetime]:
    """The reference: every cutoff in order from two days back, the first one after t (how
    window_of searched before it bisected each day's instants)."""
    at = t.astimezone(UTC)
    previous = None
    for day in cal._business_days(at.astimezone(cal._zone).date() - timedelta(days=2), step=1):
        for cut, cutoff_at in zip(cal.cutoffs, _cutoff_instants(cal.timezone, cal.cutoffs, day),
                                  strict=True):
            if cutoff_at > at:
                opens = previous if previous is not None else cal._previous_cutoff(day, cut)
                return f"{day:%Y%m%d}T{cut:%H%M}", opens, cutoff_at
            previous = cutoff_at
    raise AssertionError("unreachable")


MINUTES = BankCalendar("MINUTESXX", "Europe/Berlin", parse_cutoffs(
    [f"{h:02d}:{m:02d}" for h in range(24) for m in range(60)]), weekend=frozenset({5, 6}))


@PROPERTY
@given(st.sampled_from([*CALENDARS, MINUTES]), instants)
def test_window_of_finds_the_window_a_scan_of_every_cutoff_finds(cal: BankCalendar, t: datetime) -> None:
    w = cal.window_of(t)
    assert (w.window_id, w.opens_at, w.cutoff_at) == _window_by_scan(cal, t)


def _fresh(cal: BankCalendar) -> BankCalendar:
    """The same calendar with nothing kept from earlier lookups."""
    return BankCalendar(cal.bic, cal.timezone, cal.cutoffs, cal.weekend, cal.holidays)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([*CALENDARS, MINUTES]), instants,
       st.lists(st.integers(min_value=-3 * 24 * 3600, max_value=3 * 24 * 3600), min_size=1, max_size=30))
def test_the_window_kept_from_the_last_lookup_answers_as_a_fresh_lookup_would(
        cal: BankCalendar, start: datetime, offsets: list[int]) -> None:
    """window_of keeps the window it found last; lookups in any order, near and across its
    edges, give what a calendar that kept nothing gives."""
    kept = _fresh(cal)
    for seconds in offsets:
        t = start + timedelta(seconds=seconds)
        edge = kept.window_of(t).cutoff_at  # then the instants right at and before that cutoff
        for at in (t, edge, edge - timedelta(microseconds=1)):
            assert kept.window_of(at) == _fresh(cal).window_of(at)
