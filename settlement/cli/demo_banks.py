"""The demo's three mock banks, and the moves of their shared clock through a business day.

The banks' clock does not follow real time: it starts at 07:00 on the settlement day,
before the booking time, and the demo moves it (POST /admin/clock) through booking
(camt.054 debits), returns (pacs.004 and camt.054 credits) and end of day (camt.053).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from settlement.bank.mockbank.booking import END_OF_DAY, business_days_after
from settlement.bank.mockbank.config import MockBankConfig, parse

# bic, name, zone, booking time, processor accounts (EUR, USD), faults on top of DEMO_FAULTS
DEMO_BANKS: tuple[tuple[str, str, str, str, tuple[str, str], dict[str, Any]], ...] = (
    ("MOCKDEFFXXX", "Mock Bank Deutschland", "Europe/Berlin", "09:00",
     ("DE89370400440532013000", "DE62370400440532013001"),
     {"reject_rate": 0.03, "return_rate": 0.02}),
    ("MOCKFRPPXXX", "Banque Fictive de Paris", "Europe/Paris", "09:00",
     ("FR7630006000011234567890189", "FR7630006000011234567890190"),
     # a few 503s: the gateway retries them (same bytes, same MsgId)
     {"reject_rate": 0.02, "return_rate": 0.02, "error_5xx_rate": 0.2, "latency_ms": [10, 60]}),
    ("MOCKNL2AXXX", "Nederlandse Proefbank", "Europe/Amsterdam", "08:30",
     ("NL91ABNA0417164300", "NL69ABNA0417164301"),
     {"reject_rate": 0.02, "return_rate": 0.03}),
)
DEMO_FAULTS: dict[str, Any] = {
    "reject_reasons": ["AC01", "AC04"],  # unknown account, closed account
    "return_reasons": ["AC04", "MD07"],  # account closed, beneficiary deceased
    "return_after_business_days": 1,
    "latency_ms": [0, 30],
}
CLOCK_START = time(7, 0)
CURRENCIES = ("EUR", "USD")


def bank_config(state_dir: Path, token: str, seed: int, settlement_date: date) -> dict[str, Any]:
    """The mock bank YAML (as a mapping): 3 banks, EUR and USD accounts, seeded faults."""
    banks = []
    for n, (bic, name, zone, booking, accounts, faults) in enumerate(DEMO_BANKS):
        banks.append({
            "bic": bic, "name": name, "token": token, "timezone": zone, "booking_time": booking,
            "processor_accounts": [{"id": acct, "currency": ccy, "balance_minor": 10**13}
                                   for acct, ccy in zip(accounts, CURRENCIES, strict=True)],
            "accept_unknown_accounts": True,
            "faults": {**DEMO_FAULTS, **faults, "seed": seed * 31 + n},
        })
    start = datetime.combine(settlement_date, CLOCK_START, tzinfo=ZoneInfo(DEMO_BANKS[0][2]))
    return {"state_dir": str(state_dir), "clock": {"start": start.isoformat(),
                                                   "follow_real_time": False}, "banks": banks}


def validated(config: dict[str, Any]) -> MockBankConfig:
    """Fail before starting a server on a config it would refuse."""
    return parse(config, env={})


@dataclass(frozen=True)
class ClockStep:
    to: datetime
    what: str


def clock_plan(config: MockBankConfig, settlement_date: date) -> list[ClockStep]:
    """Booking time on the settlement day, then the end of every day the banks still owe.

    The mock banks' business days are Monday to Friday: bookings of a weekend day are
    on Monday's statement, and returns come `return_after_business_days` later.
    """
    def latest(day: date, at: time) -> datetime:
        return max(datetime.combine(day, at, tzinfo=b.zone) for b in config.banks)

    second = timedelta(seconds=1)
    first_close = business_days_after(settlement_date - timedelta(days=1), 1)
    returns_day = business_days_after(
        settlement_date, max(b.faults.return_after_business_days for b in config.banks))
    booking = max(datetime.combine(settlement_date, b.booking_time, tzinfo=b.zone)
                  for b in config.banks)
    steps = [ClockStep(booking + second, "booking time: settlements")]
    if returns_day > first_close:
        steps.append(ClockStep(latest(first_close, END_OF_DAY) + second, "end of day: statements"))
        steps.append(ClockStep(latest(returns_day, END_OF_DAY) + second,
                               "returns due, end of day: statements"))
    else:
        steps.append(ClockStep(latest(first_close, END_OF_DAY) + second,
                               "returns due, end of day: statements"))
    return steps
