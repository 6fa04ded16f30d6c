"""Bank business days and payout windows: which cutoff a capture time belongs to.

A payout window is the half-open interval [opens_at, cutoff_at) between two
consecutive cutoff instants of one bank; a payment captured exactly at a cutoff
belongs to the *next* window. Cutoffs happen only on business days (not a
weekend day, not a holiday), so a capture on a closed day or after the last
cutoff falls into the first cutoff of the next business day.

Cutoffs are local wall times in the bank's IANA zone. DST rules:
- an ambiguous time (autumn fall-back) is its first occurrence (fold=0);
- a time skipped by spring-forward is the first instant after the gap
  (02:30 on a 02:00->03:00 day is 03:00 local). If that makes two cutoffs of
  the same instant, the earlier-configured one is the window and the other is
  skipped that day (`window_by_id` refuses it).

`window_id` is the local cutoff date and configured time, "YYYYMMDDTHHMM":
deterministic, unique per bank and sorting in cutoff order.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict

from settlement.domain.errors import ConfigError, SettlementError

MAX_CLOSED_DAYS = 400  # a calendar with no business day in this span is misconfigured
SATURDAY_SUNDAY = frozenset({5, 6})  # date.weekday(): Monday is 0
_DAYS_KEPT = 64  # per calendar, for window_of: a few days are asked for at a time
_SCAN_BACK_DAYS = 2  # a gap-shifted cutoff can land at most a day after its label date
_CUTOFF = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_WINDOW_ID = re.compile(r"([0-9]{8})T([0-9]{4})")


class CalendarInputError(SettlementError, ValueError):
    """A caller passed a naive instant, a bad window id or a date out of range."""


class PayoutWindow(BaseModel):
    """One cutoff window of one bank: payments captured in [opens_at, cutoff_at)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_id: str  # local cutoff date + configured time, "20261102T1000"
    cutoff_at: AwareDatetime  # UTC
    opens_at: AwareDatetime  # UTC, the previous cutoff instant
    settlement_date: date  # the local business day of the cutoff


def parse_cutoffs(values: Sequence[str]) -> tuple[time, ...]:
    """Parse ["10:00", "14:00"] into sorted local times; ConfigError on bad or duplicate values."""
    if not values:
        raise ConfigError("cutoffs: at least one HH:MM cutoff is required")
    parsed: list[time] = []
    for value in values:
        match = _CUTOFF.fullmatch(value)
        if match is None:
            raise ConfigError(f"cutoff {value!r} is not a 24-hour time HH:MM (00:00-23:59)")
        parsed.append(time(int(match[1]), int(match[2])))
    duplicates = sorted({t.strftime("%H:%M") for t in parsed if parsed.count(t) > 1})
    if duplicates:
        raise ConfigError(f"cutoffs: duplicate cutoff {', '.join(duplicates)}")
    return tuple(sorted(parsed))


@dataclass(frozen=True)
class BankCalendar:
    """A bank's cutoffs, zone and closed days; every window lookup is pure and bounded."""

    bic: str
    timezone: str
    cutoffs: tuple[time, ...]
    weekend: frozenset[int] = SATURDAY_SUNDAY
    holidays: frozenset[date] = frozenset()
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    # Day -> its cutoff instants, for window_of: keyed by the day alone, because hashing
    # `cutoffs` for the module-wide cache costs more than the lookup with 1,440 of them.
    _by_day: dict[date, tuple[datetime, ...]] = field(init=False, repr=False, compare=False)
    # The window window_of found last: items arrive in capture order, so most fall into it.
    _last: PayoutWindow | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        where = f"bank {self.bic}"
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"{where}: unknown IANA timezone {self.timezone!r}") from exc
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_by_day", {})
        if not self.cutoffs:
            raise ConfigError(f"{where}: at least one cutoff is required")
        for cut in self.cutoffs:
            if cut.tzinfo is not None or cut.second or cut.microsecond:
                raise ConfigError(f"{where}: cutoff {cut} must be a naive local HH:MM time")
        if len(set(self.cutoffs)) != len(self.cutoffs):
            raise ConfigError(f"{where}: duplicate cutoffs {list(map(str, self.cutoffs))}")
        object.__setattr__(self, "cutoffs", tuple(sorted(self.cutoffs)))
        if not self.weekend <= set(range(7)) or len(self.weekend) == 7:
            raise ConfigError(f"{where}: weekend days must be a proper subset of 0-6 (Monday=0)")
        object.__setattr__(self, "weekend", frozenset(self.weekend))
        if any(type(d) is not date for d in self.holidays):
            raise ConfigError(f"{where}: holidays must be dates")
        object.__setattr__(self, "holidays", frozenset(self.holidays))

    def is_business_day(self, d: date) -> bool:
        return d.weekday() not in self.weekend and d not in self.holidays

    def window_of(self, instant: datetime) -> PayoutWindow:
        """The window whose cutoff is the first business-day cutoff strictly after `instant`.

        The batcher asks once per item: a day whose last cutoff is not after `instant` is
        skipped whole, and the cutoff is found by bisection in the day's instants (which
        never decrease: fold=0 when ambiguous, the gap's end when skipped), so a calendar
        with a cutoff every minute costs as little as one with a cutoff a day. The window
        found last is kept: the windows tile time, so an instant inside it is answered by it.
        """
        at = _utc(instant)
        last = self._last
        if last is not None and last.opens_at <= at < last.cutoff_at:
            return last
        window = self._find(at)
        object.__setattr__(self, "_last", window)
        return window

    def _find(self, at: datetime) -> PayoutWindow:
        start = self._local_date(at) - timedelta(days=_SCAN_BACK_DAYS)
        previous: datetime | None = None
        for day in self._business_days(start, step=1):
            instants = self._instants(day)
            if instants[-1] <= at:
                previous = instants[-1]
                continue
            i = bisect_right(instants, at)
            cut = self.cutoffs[i]
            if i:
                previous = instants[i - 1]
            elif previous is None:
                previous = self._previous_cutoff(day, cut)
            return self._window(day, cut, instants[i], previous)
        raise AssertionError("unreachable: _business_days never ends")  # pragma: no cover

    def next_window(self, window: PayoutWindow) -> PayoutWindow:
        """The window right after `window`: it opens at `window.cutoff_at`."""
        return self.window_of(window.cutoff_at)

    def window_by_id(self, window_id: str) -> PayoutWindow:
        """Rebuild a window from its id; CalendarInputError unless it is a real cutoff of this bank."""
        match = _WINDOW_ID.fullmatch(window_id)
        try:
            if match is None:
                raise ValueError("not YYYYMMDDTHHMM")
            ymd, hm = match[1], match[2]
            day = date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))
            cut = time(int(hm[:2]), int(hm[2:]))
        except ValueError as exc:
            raise CalendarInputError(f"bank {self.bic}: bad window id {window_id!r}: {exc}") from exc
        if cut not in self.cutoffs:
            raise CalendarInputError(f"bank {self.bic}: window id {window_id!r}: {cut:%H:%M} is no cutoff")
        if not self.is_business_day(day):
            raise CalendarInputError(f"bank {self.bic}: window id {window_id!r}: {day} is not a business day")
        cutoff_at = _cutoff_instants(self.timezone, self.cutoffs, day)[self.cutoffs.index(cut)]
        previous = self._previous_cutoff(day, cut)
        if previous >= cutoff_at:
            raise CalendarInputError(
                f"bank {self.bic}: window id {window_id!r}: cutoff coincides with the one before (DST gap)")
        return self._window(day, cut, cutoff_at, previous)

    def windows_between(self, start: datetime, end: datetime) -> list[PayoutWindow]:
        """Every window overlapping [start, end), in order; empty when start == end."""
        lo, hi = _utc(start), _utc(end)
        if hi < lo:
            raise CalendarInputError(f"windows_between: end {end} is before start {start}")
        windows: list[PayoutWindow] = []
        if hi == lo:
            return windows
        window = self.window_of(lo)
        while window.opens_at < hi:
            windows.append(window)
            window = self.next_window(window)
        return windows

    def _instants(self, day: date) -> tuple[datetime, ...]:
        """The UTC instants of `day`'s cutoffs; the last _DAYS_KEPT days asked for are kept."""
        got = self._by_day.get(day)
        if got is None:
            if len(self._by_day) >= _DAYS_KEPT:
                self._by_day.clear()
            got = self._by_day[day] = _cutoff_instants(self.timezone, self.cutoffs, day)
        return got

    def _local_date(self, at: datetime) -> date:
        return at.astimezone(self._zone).date()

    def _window(self, day: date, cut: time, cutoff_at: datetime, opens_at: datetime) -> PayoutWindow:
        return PayoutWindow(
            window_id=f"{day:%Y%m%d}T{cut:%H%M}", cutoff_at=cutoff_at, opens_at=opens_at, settlement_date=day,
        )

    def _previous_cutoff(self, day: date, cut: time) -> datetime:
        """The cutoff instant configured just before (day, cut), possibly on an earlier business day."""
        index = self.cutoffs.index(cut)
        if index > 0:
            return _cutoff_instants(self.timezone, self.cutoffs, day)[index - 1]
        previous_day = next(self._business_days(day - timedelta(days=1), step=-1))
        return _cutoff_instants(self.timezone, self.cutoffs, previous_day)[-1]

    def _business_days(self, start: date, step: int) -> Iterator[date]:
        """Business days from `start` (inclusive) forward (step 1) or backward (step -1)."""
        day, closed = start, 0
        while True:
            if self.is_business_day(day):
                closed = 0
                yield day
            else:
                closed += 1
                if closed > MAX_CLOSED_DAYS:
                    raise ConfigError(
                        f"bank {self.bic}: no business day within {MAX_CLOSED_DAYS} days of {day}")
            try:
                day += timedelta(days=step)
            except OverflowError as exc:
                raise CalendarInputError(f"bank {self.bic}: no business day before the end of time") from exc


def _utc(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise CalendarInputError(f"instant {instant.isoformat()} must be timezone-aware")
    return instant.astimezone(UTC)


@lru_cache(maxsize=16_384)
def _cutoff_instants(zone_name: str, cutoffs: tuple[time, ...], day: date) -> tuple[datetime, ...]:
    """The UTC instants of one day's cutoffs: fold=0 when ambiguous, gap end when skipped."""
    zone = ZoneInfo(zone_name)
    return tuple(_local_to_utc(datetime.combine(day, cut), zone) for cut in cutoffs)


def _local_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=0 used the offset before the transition (an instant after it) and
    # fold=1 the offset after it (an instant before it); find the transition between.
    after = first.astimezone(zone).utcoffset()
    lo = int(wall.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    hi = int(first.timestamp())
    while hi - lo > 1:  # invariant: lo is before the transition, hi after it
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(zone).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)
