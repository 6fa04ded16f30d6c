from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settlement.domain.money import (
    UnknownCurrencyError,
    exponent,
    format_minor,
    parse_decimal,
)

EXPONENTS = {"JPY": 0, "EUR": 2, "USD": 2, "BHD": 3, "KWD": 3}


@pytest.mark.parametrize(("ccy", "exp"), EXPONENTS.items())
def test_exponent_comes_from_iso4217(ccy: str, exp: int) -> None:
    assert exponent(ccy) == exp


@pytest.mark.parametrize("code", ["XAU", "XXX", "ABC", "eur", "EURO", ""])
def test_currencies_without_minor_unit_or_unknown_are_refused(code: str) -> None:
    with pytest.raises(UnknownCurrencyError):
        exponent(code)


@given(st.integers(min_value=0, max_value=10**15), st.sampled_from(sorted(EXPONENTS)))
def test_format_has_exactly_the_currency_decimals_and_round_trips(amount: int, ccy: str) -> None:
    text = format_minor(amount, ccy)
    exp = EXPONENTS[ccy]
    if exp == 0:
        assert "." not in text
    else:
        assert len(text.split(".")[1]) == exp
    assert Decimal(text) == Decimal(amount).scaleb(-exp)
    assert parse_decimal(text, ccy) == amount


@given(st.lists(st.integers(min_value=1, max_value=10**12), min_size=1, max_size=50),
       st.sampled_from(sorted(EXPONENTS)))
def test_sum_of_rendered_amounts_equals_rendered_sum(amounts: list[int], ccy: str) -> None:
    rendered = sum(Decimal(format_minor(a, ccy)) for a in amounts)
    assert rendered == Decimal(format_minor(sum(amounts), ccy))


def test_float_amounts_are_refused() -> None:
    with pytest.raises(TypeError):
        format_minor(10.5, "EUR")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        format_minor(True, "EUR")


def test_parse_refuses_sub_minor_precision() -> None:
    assert parse_decimal("10.50", "EUR") == 1050
    with pytest.raises(ValueError, match="more than 2 decimals"):
        parse_decimal("10.505", "EUR")
    with pytest.raises(ValueError, match="more than 0 decimals"):
        parse_decimal("10.5", "JPY")
    with pytest.raises(ValueError, match="not a decimal"):
        parse_decimal("1e3", "EUR")
