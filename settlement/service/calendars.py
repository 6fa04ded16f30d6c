"""Build each bank's `BankCalendar` from settings, and look windows up by BIC.

Closed days are the weekend, the bank's built-in holiday calendar (TARGET2 is
the ECB's XECB calendar from the `holidays` package) for `years`, and the
bank's explicit `holidays`. `years` defaults to last year .. two years ahead.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime

import holidays

from settlement.config import BankSettings
from settlement.domain.calendar import BankCalendar, PayoutWindow, parse_cutoffs
from settlement.domain.errors import ConfigError

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def default_years(today: date | None = None) -> range:
    """Last year through two years ahead of `today` (UTC now when omitted)."""
    year = (today or datetime.now(UTC).date()).year
    return range(year - 1, year + 3)


def build_calendar(bank: BankSettings, years: range | None = None) -> BankCalendar:
    """The calendar for one bank; ConfigError naming the bank on any bad setting."""
    try:
        cutoffs = parse_cutoffs(bank.cutoffs)
    except ConfigError as exc:
        raise ConfigError(f"bank {bank.bic}: {exc}") from exc
    closed = {_parse_holiday(bank, value) for value in bank.holidays}
    if bank.holiday_calendar == "TARGET2":
        closed.update(_target2_closed_days(years if years is not None else default_years()))
    bad = [d for d in bank.weekend if not 0 <= d <= 6]
    if bad:
        raise ConfigError(f"bank {bank.bic}: weekend days must be 0 (Monday) .. 6 (Sunday), got {bad}")
    return BankCalendar(bic=bank.bic, timezone=bank.timezone, cutoffs=cutoffs,
                        weekend=frozenset(bank.weekend), holidays=frozenset(closed))


def _target2_closed_days(years: range) -> set[date]:
    return set(holidays.financial_holidays("XECB", years=years).keys())


def _parse_holiday(bank: BankSettings, value: str) -> date:
    try:
        if not _ISO_DATE.fullmatch(value):
            raise ValueError("expected YYYY-MM-DD")
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"bank {bank.bic}: holiday {value!r} is not a date YYYY-MM-DD ({exc})") from exc


class CalendarRegistry:
    """One calendar per configured BIC; an unknown BIC gets the default bank's rules."""

    def __init__(self, banks: list[BankSettings], default: BankSettings, years: range | None = None) -> None:
        self._years = years if years is not None else default_years()
        self._default = build_calendar(default, self._years)
        self._calendars: dict[str, BankCalendar] = {}
        for bank in banks:  # built eagerly so a bad [[banks]] entry fails at startup
            if bank.bic in self._calendars:
                raise ConfigError(f"bank {bank.bic}: configured more than once")
            self._calendars[bank.bic] = build_calendar(bank, self._years)

    def for_bic(self, bic: str) -> BankCalendar:
        calendar = self._calendars.get(bic)
        if calendar is None:
            calendar = replace(self._default, bic=bic)
            self._calendars[bic] = calendar
        return calendar

    def window_of(self, bic: str, captured_at: datetime) -> PayoutWindow:
        return self.for_bic(bic).window_of(captured_at)
