"""Money as integer minor units with ISO 4217 exponents. No float anywhere.

`iso4217` supplies the exponents (JPY 0, EUR 2, BHD 3); currencies without a
minor unit (XAU, XXX, ...) are refused because they cannot be settled.
"""

from __future__ import annotations

import re
from functools import cache

import iso4217

_CODE = re.compile(r"^[A-Z]{3}$")
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)(?:\.([0-9]+))?$")


class UnknownCurrencyError(ValueError):
    """Not an ISO 4217 currency that has a minor unit."""


@cache
def exponent(currency: str) -> int:
    """Decimal places of `currency`'s minor unit (EUR -> 2, JPY -> 0, BHD -> 3)."""
    if not _CODE.match(currency):
        raise UnknownCurrencyError(f"not an ISO 4217 alphabetic code: {currency!r}")
    try:
        cur = iso4217.Currency(currency)
    except ValueError as exc:
        raise UnknownCurrencyError(f"unknown ISO 4217 currency: {currency}") from exc
    exp = cur.exponent
    if exp is None:
        raise UnknownCurrencyError(f"currency {currency} has no minor unit and cannot be settled")
    return int(exp)


def is_known_currency(currency: str) -> bool:
    try:
        exponent(currency)
    except UnknownCurrencyError:
        return False
    return True


def format_minor(amount_minor: int, currency: str) -> str:
    """Render minor units as an XML decimal with exactly the currency's decimals.

    >>> format_minor(12345, "EUR"), format_minor(12345, "JPY"), format_minor(5, "BHD")
    ('123.45', '12345', '0.005')
    """
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError(f"amount must be int minor units, got {type(amount_minor).__name__}")
    exp = exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    digits = str(abs(amount_minor))
    if exp == 0:
        return sign + digits
    digits = digits.rjust(exp + 1, "0")
    return f"{sign}{digits[:-exp]}.{digits[-exp:]}"


def parse_decimal(text: str, currency: str) -> int:
    """Parse a non-negative decimal string into minor units, refusing extra precision.

    "10.5" EUR -> 1050; "10.505" EUR -> ValueError (not a whole number of cents).
    """
    exp = exponent(currency)
    m = _DECIMAL.match(text.strip())
    if m is None:
        raise ValueError(f"not a decimal amount: {text!r}")
    whole, frac = m.group(1), m.group(2) or ""
    frac = frac.rstrip("0")
    if len(frac) > exp:
        raise ValueError(f"{text} has more than {exp} decimals for {currency}")
    scale: int = 10**exp  # int ** int is typed Any (a negative power would be a float)
    return int(whole) * scale + (int(frac.ljust(exp, "0")) if exp else 0)
