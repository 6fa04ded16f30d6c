"""The mock bank's clock: virtual time that follows the real clock (or not) and can jump ahead.

now = virtual_at_anchor + (real_now - real_at_anchor) when following real time, else the
anchor itself. Every move re-anchors and is persisted, so a restart resumes where the
clock was (plus the real time that passed, when following). It never goes backwards.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from settlement.domain.errors import SettlementError

RealClock = Callable[[], datetime]


class ClockError(SettlementError, ValueError):
    """A move the clock refuses: backwards, or to a time without an offset."""


def _real_now() -> datetime:
    return datetime.now(UTC)


class Clock:
    """Thread-safe virtual clock persisted in `<state_dir>/clock.sqlite`."""

    def __init__(self, path: Path, *, start: datetime | None = None, follow_real_time: bool = True,
                 real: RealClock = _real_now) -> None:
        self._real = real
        self._follow = follow_real_time
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("CREATE TABLE IF NOT EXISTS clock (id INTEGER PRIMARY KEY CHECK (id = 1),"
                         " virtual TEXT NOT NULL, real TEXT NOT NULL)")
        row = self._db.execute("SELECT virtual, real FROM clock WHERE id = 1").fetchone()
        if row is not None:
            self._virtual, self._anchor = datetime.fromisoformat(row[0]), datetime.fromisoformat(row[1])
        else:
            self._anchor = self._real()
            self._virtual = (start or self._anchor).astimezone(UTC)
            self._save()

    @property
    def follows_real_time(self) -> bool:
        return self._follow

    def now(self) -> datetime:
        with self._lock:
            return self._now()

    def _now(self) -> datetime:
        if not self._follow:
            return self._virtual
        return self._virtual + max(self._real() - self._anchor, timedelta(0))

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ClockError("the mock bank clock never goes backwards")
        with self._lock:
            return self._set(self._now() + delta)

    def set(self, to: datetime) -> datetime:
        if to.tzinfo is None:
            raise ClockError("clock target must carry a UTC offset")
        with self._lock:
            if to < self._now():
                raise ClockError(f"the mock bank clock never goes backwards (now {self._now().isoformat()})")
            return self._set(to.astimezone(UTC))

    def _set(self, to: datetime) -> datetime:
        self._virtual, self._anchor = to, self._real()
        self._save()
        return to

    def _save(self) -> None:
        self._db.execute("INSERT OR REPLACE INTO clock (id, virtual, real) VALUES (1, ?, ?)",
                         (self._virtual.isoformat(), self._anchor.isoformat()))

    def close(self) -> None:
        self._db.close()
