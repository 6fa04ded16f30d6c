"""Building bank calendars from settings: TARGET2, explicit holidays, bad config, the registry."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from settlement.config import BankSettings
from settlement.domain.errors import ConfigError
from settlement.service.calendars import CalendarRegistry, build_calendar, default_years

YEARS = range(2025, 2029)


@pytest.mark.parametrize("closed", [
    date(2026, 1, 1), date(2026, 4, 3), date(2026, 4, 6), date(2026, 5, 1),
    date(2026, 12, 25), date(2026, 12, 26),
    date(2027, 3, 26), date(2027, 3, 29),
])
def test_target2_closing_days_are_not_business_days(closed: date) -> None:
    assert not build_calendar(BankSettings(bic="B"), YEARS).is_business_day(closed)


def test_target2_keeps_national_holidays_open() -> None:
    cal = build_calendar(BankSettings(bic="B"), YEARS)
    assert cal.is_business_day(date(2026, 5, 25))  # Whit Monday: a German holiday, TARGET2 is open
    assert cal.is_business_day(date(2026, 5, 14))  # Ascension Day: TARGET2 is open
    assert cal.is_business_day(date(2026, 12, 24))


def test_no_builtin_calendar_means_weekends_plus_explicit_holidays_only() -> None:
    cal = build_calendar(BankSettings(bic="B", holiday_calendar="none", holidays=["2026-05-25"]), YEARS)
    assert cal.is_business_day(date(2026, 4, 3))
    assert not cal.is_business_day(date(2026, 5, 25))
    assert not cal.is_business_day(date(2026, 5, 23))


def test_explicit_holiday_on_monday_moves_fridays_late_payment_to_tuesday() -> None:
    cal = build_calendar(BankSettings(bic="B", holidays=["2026-05-25"]), YEARS)
    assert cal.window_of(datetime(2026, 5, 22, 15, tzinfo=UTC)).window_id == "20260526T1000"


def test_years_bound_the_builtin_calendar_deterministically() -> None:
    cal = build_calendar(BankSettings(bic="B"), range(2026, 2027))
    assert not cal.is_business_day(date(2026, 12, 25))
    assert cal.is_business_day(date(2027, 1, 1))
    assert build_calendar(BankSettings(bic="B"), range(2026, 2027)) == cal


def test_default_years_span_last_year_to_two_ahead() -> None:
    assert default_years(date(2026, 6, 1)) == range(2025, 2029)


@pytest.mark.parametrize(("fields", "message"), [
    ({"cutoffs": ["25:00"]}, "bank BADBANKXX: cutoff '25:00' is not a 24-hour time"),
    ({"cutoffs": ["10"]}, "bank BADBANKXX: cutoff '10' is not"),
    ({"cutoffs": ["10:00", "10:00"]}, "bank BADBANKXX: cutoffs: duplicate cutoff 10:00"),
    ({"holidays": ["2026-02-30"]}, "bank BADBANKXX: holiday '2026-02-30' is not a date"),
    ({"holidays": ["2026/01/01"]}, "bank BADBANKXX: holiday '2026/01/01' is not a date"),
    ({"holidays": ["20260101"]}, "bank BADBANKXX: holiday '20260101' is not a date"),
    ({"timezone": "Europe/Atlantis"}, "bank BADBANKXX: unknown IANA timezone 'Europe/Atlantis'"),
])
def test_bad_bank_settings_raise_config_error_naming_bank_and_value(
        fields: dict[str, object], message: str) -> None:
    bank = BankSettings.model_validate({"bic": "BADBANKXX", **fields})
    with pytest.raises(ConfigError, match=message):
        build_calendar(bank, YEARS)


def test_registry_uses_configured_banks_and_falls_back_to_default_rules() -> None:
    tokyo = BankSettings(bic="TOKYOJPJT", timezone="Asia/Tokyo", cutoffs=["15:00"], holiday_calendar="none")
    registry = CalendarRegistry([tokyo], default=BankSettings(bic="DEFAULT"), years=YEARS)
    assert registry.for_bic("TOKYOJPJT").timezone == "Asia/Tokyo"
    unknown = registry.for_bic("UNKNOWNXX")
    assert (unknown.bic, unknown.timezone) == ("UNKNOWNXX", "Europe/Berlin")
    assert not unknown.is_business_day(date(2026, 4, 6))
    assert registry.for_bic("UNKNOWNXX") is unknown
    captured = datetime(2026, 11, 2, 5, tzinfo=UTC)
    assert registry.window_of("TOKYOJPJT", captured).window_id == "20261102T1500"
    assert registry.window_of("UNKNOWNXX", captured).window_id == "20261102T1000"


def test_registry_refuses_bad_or_duplicate_banks_at_startup() -> None:
    default = BankSettings(bic="DEFAULT")
    with pytest.raises(ConfigError, match="bank DUPBANKXX: configured more than once"):
        CalendarRegistry([BankSettings(bic="DUPBANKXX")] * 2, default=default, years=YEARS)
    with pytest.raises(ConfigError, match="bank BADBANKXX"):
        CalendarRegistry([BankSettings(bic="BADBANKXX", cutoffs=["7pm"])], default=default, years=YEARS)


def test_configured_weekend_is_honoured() -> None:
    from datetime import UTC, datetime

    from settlement.config import BankSettings
    from settlement.service.calendars import build_calendar

    saturday = datetime(2026, 11, 21, 12, 0, 30, tzinfo=UTC)
    seven_days = BankSettings(bic="MOCKDEFFXXX", timezone="UTC", holiday_calendar="none",
                              cutoffs=["12:01"], weekend=[])
    assert build_calendar(seven_days).window_of(saturday).window_id == "20261121T1201"
    usual = seven_days.model_copy(update={"weekend": [5, 6]})
    assert build_calendar(usual).window_of(saturday).window_id == "20261123T1201"
