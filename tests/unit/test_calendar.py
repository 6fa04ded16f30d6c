"""BankCalendar: business days, the half-open window rule, DST and bounded search."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from settlement.domain.calendar import BankCalendar, CalendarInputError, parse_cutoffs
from settlement.domain.errors import ConfigError

BERLIN = ZoneInfo("Europe/Berlin")
TARGET2_2026 = frozenset({
    date(2026, 1, 1), date(2026, 4, 3), date(2026, 4, 6), date(2026, 5, 1),
    date(2026, 12, 25), date(2026, 12, 26),
})


def berlin(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=BERLIN)  # type: ignore[arg-type, misc]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type, misc]


def calendar(tz: str = "Europe/Berlin", cutoffs: tuple[str, ...] = ("10:00", "14:00"),
             weekend: frozenset[int] = frozenset({5, 6}),
             holidays: frozenset[date] = TARGET2_2026) -> BankCalendar:
    return BankCalendar("TESTDEFFXXX", tz, parse_cutoffs(cutoffs), weekend=weekend, holidays=holidays)


def test_weekends_and_holidays_are_closed_and_other_days_open() -> None:
    cal = calendar()
    assert not cal.is_business_day(date(2026, 1, 3))  # Saturday
    assert not cal.is_business_day(date(2026, 1, 4))  # Sunday
    assert not cal.is_business_day(date(2026, 4, 6))  # Easter Monday
    assert cal.is_business_day(date(2026, 4, 2))
    assert cal.is_business_day(date(2026, 4, 7))


def test_capture_between_cutoffs_belongs_to_the_next_cutoff_of_the_same_day() -> None:
    w = calendar().window_of(berlin(2026, 11, 2, 11, 30))
    assert w.window_id == "20261102T1400"
    assert w.cutoff_at == utc(2026, 11, 2, 13)
    assert w.opens_at == utc(2026, 11, 2, 9)
    assert w.settlement_date == date(2026, 11, 2)


def test_capture_exactly_at_a_cutoff_goes_to_the_next_window() -> None:
    cal = calendar()
    assert cal.window_of(berlin(2026, 11, 2, 10)).window_id == "20261102T1400"
    just_before = berlin(2026, 11, 2, 10) - timedelta(microseconds=1)
    assert cal.window_of(just_before).window_id == "20261102T1000"


def test_friday_after_last_cutoff_lands_on_mondays_first_cutoff() -> None:
    w = calendar().window_of(berlin(2026, 3, 27, 14, 0))
    assert w.window_id == "20260330T1000"
    assert w.opens_at == utc(2026, 3, 27, 13)  # Friday 14:00 CET
    assert w.cutoff_at == utc(2026, 3, 30, 8)  # Monday 10:00 CEST


def test_a_holiday_monday_pushes_the_window_to_tuesday() -> None:
    cal = calendar(holidays=TARGET2_2026 | {date(2026, 5, 25)})
    assert cal.window_of(berlin(2026, 5, 22, 16)).window_id == "20260526T1000"


def test_easter_thursday_evening_lands_on_tuesday_after_easter_monday() -> None:
    assert calendar().window_of(berlin(2026, 4, 2, 18)).window_id == "20260407T1000"


def test_weekend_and_holiday_captures_go_to_the_next_business_days_first_cutoff() -> None:
    cal = calendar()
    assert cal.window_of(berlin(2026, 12, 26, 9)).window_id == "20261228T1000"
    assert cal.window_of(berlin(2026, 1, 1, 9)).window_id == "20260102T1000"


def test_spring_forward_and_fall_back_days_give_correct_utc_cutoffs() -> None:
    cal = calendar(cutoffs=("02:30", "10:00"), weekend=frozenset(), holidays=frozenset())
    spring = cal.window_by_id("20260329T0230")
    assert spring.cutoff_at == utc(2026, 3, 29, 1)  # 02:30 is skipped: the instant after the gap (03:00 CEST)
    assert cal.window_by_id("20260329T1000").cutoff_at == utc(2026, 3, 29, 8)  # CEST
    assert cal.window_by_id("20260328T1000").cutoff_at == utc(2026, 3, 28, 9)  # CET
    autumn = cal.window_by_id("20261025T0230")
    assert autumn.cutoff_at == utc(2026, 10, 25, 0, 30)  # ambiguous: first occurrence (fold=0, CEST)
    assert cal.window_by_id("20261025T1000").cutoff_at == utc(2026, 10, 25, 9)  # CET
    assert cal.window_of(utc(2026, 10, 25, 0, 45)).window_id == "20261025T1000"


def test_cutoffs_collapsing_into_one_dst_gap_instant_make_one_window() -> None:
    cal = calendar(cutoffs=("02:00", "02:30", "03:00", "12:00"), weekend=frozenset(), holidays=frozenset())
    w = cal.window_of(utc(2026, 3, 29, 0, 59))
    assert (w.window_id, w.cutoff_at) == ("20260329T0200", utc(2026, 3, 29, 1))
    assert cal.next_window(w).window_id == "20260329T1200"
    for skipped in ("20260329T0230", "20260329T0300"):
        with pytest.raises(CalendarInputError, match="DST gap"):
            cal.window_by_id(skipped)
    assert cal.window_by_id("20260330T0300").cutoff_at == utc(2026, 3, 30, 1)


def test_new_york_cutoffs_follow_us_dst() -> None:
    cal = calendar(tz="America/New_York", cutoffs=("17:00",), holidays=frozenset())
    assert cal.window_of(utc(2026, 3, 6, 12)).cutoff_at == utc(2026, 3, 6, 22)  # EST
    monday = cal.window_of(utc(2026, 3, 7, 12))
    assert monday.window_id == "20260309T1700"
    assert monday.cutoff_at == utc(2026, 3, 9, 21)  # EDT
    assert monday.opens_at == utc(2026, 3, 6, 22)


def test_tokyo_cutoff_and_local_date_differ_from_utc_date() -> None:
    cal = calendar(tz="Asia/Tokyo", cutoffs=("09:00", "15:00"), holidays=frozenset())
    w = cal.window_of(utc(2026, 1, 4, 23, 30))  # Sunday in UTC, Monday 08:30 in Tokyo
    assert w.window_id == "20260105T0900"
    assert w.cutoff_at == utc(2026, 1, 5, 0)
    assert w.settlement_date == date(2026, 1, 5)


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar().window_of(datetime(2026, 1, 5, 9))  # noqa: DTZ001 - the naive input is the point


@pytest.mark.parametrize("bad", [
    "garbage", "20261302T1000", "20261102T2400", "20261102T1100", "20260404T1000", "20260406T1000",
    " 20261102T1000", "20261102T1000\n", "\u0662\u0660\u0662\u0666\u0661\u0661\u0660\u0662T1000",
])
def test_window_by_id_refuses_what_is_not_a_real_cutoff(bad: str) -> None:
    with pytest.raises(CalendarInputError):
        calendar().window_by_id(bad)


def test_windows_between_lists_every_overlapping_window_in_order() -> None:
    ids = [w.window_id for w in calendar().windows_between(berlin(2026, 4, 2, 12), berlin(2026, 4, 7, 10))]
    assert ids == ["20260402T1400", "20260407T1000"]
    assert calendar().windows_between(berlin(2026, 4, 2, 12), berlin(2026, 4, 2, 12)) == []
    with pytest.raises(CalendarInputError):
        calendar().windows_between(berlin(2026, 4, 3), berlin(2026, 4, 2))


def test_a_calendar_without_business_days_fails_instead_of_looping() -> None:
    sundays = frozenset(date(2026, 1, 4) + timedelta(weeks=n) for n in range(120))
    cal = calendar(weekend=frozenset(range(6)), holidays=sundays)
    with pytest.raises(ConfigError, match="no business day within 400 days"):
        cal.window_of(utc(2026, 1, 5))


@pytest.mark.parametrize(("cutoffs", "message"), [
    (["25:00"], "'25:00' is not a 24-hour time"),
    (["10"], "'10' is not a 24-hour time"),
    (["9:00"], "'9:00' is not a 24-hour time"),
    (["10:00\n"], "is not a 24-hour time"),
    (["10:00", "14:00", "10:00"], "duplicate cutoff 10:00"),
    ([], "at least one"),
])
def test_bad_cutoffs_raise_config_error(cutoffs: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_cutoffs(cutoffs)


def test_cutoffs_are_sorted() -> None:
    assert parse_cutoffs(["14:00", "09:30"]) == (time(9, 30), time(14, 0))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"timezone": "Mars/Olympus_Mons"}, "unknown IANA timezone 'Mars/Olympus_Mons'"),
    ({"timezone": ""}, "unknown IANA timezone"),
    ({"cutoffs": ()}, "at least one cutoff"),
    ({"cutoffs": (time(10), time(10))}, "duplicate cutoffs"),
    ({"cutoffs": (time(10, 0, 30),)}, "naive local HH:MM"),
    ({"weekend": frozenset(range(7))}, "proper subset"),
])
def test_bad_calendar_fields_raise_config_error_naming_the_bank(
        kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"bic": "BADBANKXXX", "timezone": "Europe/Berlin", "cutoffs": (time(10),)}
    fields.update(kwargs)
    with pytest.raises(ConfigError, match=f"bank BADBANKXXX: .*{message}"):
        BankCalendar(**fields)  # type: ignore[arg-type]
