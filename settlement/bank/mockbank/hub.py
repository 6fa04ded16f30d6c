"""MockBank: every configured bank plus the one clock they share, opened from a state_dir.

Files: <state_dir>/clock.sqlite and <state_dir>/<BIC>.sqlite. Opening the same state_dir
again (a restart) resumes all balances, messages, outboxes, pending events and the clock.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime, timedelta
from typing import Any

from settlement.bank.mockbank.bank import Bank
from settlement.bank.mockbank.clock import Clock, RealClock, _real_now
from settlement.bank.mockbank.config import MockBankConfig
from settlement.bank.mockbank.store import BankStore


class MockBank:
    def __init__(self, config: MockBankConfig, *, real_clock: RealClock = _real_now) -> None:
        self.config = config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.clock = Clock(config.state_dir / "clock.sqlite", start=config.clock.start,
                           follow_real_time=config.clock.follow_real_time, real=real_clock)
        self.banks: dict[str, Bank] = {
            b.bic: Bank(b, BankStore(config.state_dir / f"{b.bic}.sqlite"), self.clock)
            for b in config.banks}

    def bank(self, bic: str) -> Bank | None:
        return self.banks.get(bic)

    def process_due(self) -> list[dict[str, Any]]:
        """Bring every bank up to the clock's now; what was emitted, bank by bank."""
        now = self.clock.now()
        return [item for bank in self.banks.values() for item in bank.process_due(now)]

    def advance(self, *, seconds: float = 0, to: datetime | None = None) -> list[dict[str, Any]]:
        """Move the clock; everything the move made due, bank by bank.

        Every bank's lock is held from the clock move to the end of its processing, so nothing
        else that processes what is due (the background tick, an outbox read, a pacs.008) can
        emit part of this move's messages between the two: the answer is the whole move. The
        locks are taken in BIC order; every other path takes one bank's lock at a time.
        """
        with ExitStack() as held:
            for bic in sorted(self.banks):
                held.enter_context(self.banks[bic].lock)
            if to is not None:
                self.clock.set(to)
            else:
                self.clock.advance(timedelta(seconds=seconds))
            return self.process_due()

    def close(self) -> None:
        for bank in self.banks.values():
            bank.store.close()
        self.clock.close()
