"""Exact conversions between minor and major units, per ISO 4217 exponents."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canonical.money import (
    KNOWN_CURRENCIES,
    PrecisionError,
    UnknownCurrency,
    currency_exponent,
    currency_normalize,
    to_major,
    to_minor,
)


@pytest.mark.parametrize(
    ("currency", "minor", "major"),
    [
        ("USD", 12345, Decimal("123.45")),
        ("usd", 5, Decimal("0.05")),
        ("USD", -250, Decimal("-2.50")),
        ("JPY", 500, Decimal("500")),
        ("KRW", 15000, Decimal("15000")),
        ("KWD", 1234, Decimal("1.234")),
        ("BHD", 1, Decimal("0.001")),
        ("EUR", 0, Decimal("0")),
    ],
)
def test_round_trip_examples(currency, minor, major):
    assert to_major(minor, currency) == major
    assert to_minor(major, currency) == minor


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [("USD", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3), ("BHD", 3), ("CLF", 4)],
)
def test_exponents(currency, exponent):
    assert currency_exponent(currency) == exponent


def test_major_keeps_the_currency_scale():
    # 1000 USD minor units print as 10.00, not 10: the exponent is part of the value.
    assert str(to_major(1000, "USD")) == "10.00"
    assert str(to_major(1000, "KWD")) == "1.000"
    assert str(to_major(1000, "JPY")) == "1000"


@pytest.mark.parametrize("major", ["10", 10, Decimal("10.00")])
def test_to_minor_accepts_str_int_and_decimal(major):
    assert to_minor(major, "USD") == 1000


@pytest.mark.parametrize(
    ("major", "currency"),
    [
        (Decimal("1.234"), "USD"),
        (Decimal("0.5"), "JPY"),
        (Decimal("1.5"), "KRW"),
        (Decimal("1.2345"), "KWD"),
        ("0.0001", "BHD"),
    ],
)
def test_precision_errors(major, currency):
    with pytest.raises(PrecisionError):
        to_minor(major, currency)


def test_trailing_zeros_are_not_a_precision_error():
    assert to_minor(Decimal("500.000"), "JPY") == 500
    assert to_minor(Decimal("1.2340"), "KWD") == 1234


@pytest.mark.parametrize("code", ["XYZ", "", "US", "usdd", None])
def test_unknown_currency(code):
    with pytest.raises(UnknownCurrency):
        currency_normalize(code)
    with pytest.raises(UnknownCurrency):
        to_major(100, code)
    with pytest.raises(UnknownCurrency):
        to_minor(Decimal("1"), code)


def test_normalize_upper_cases_and_strips():
    assert currency_normalize(" kwd ") == "KWD"


@given(
    amount=st.integers(min_value=-(10**15), max_value=10**15),
    currency=st.sampled_from(sorted(KNOWN_CURRENCIES)),
)
def test_minor_major_round_trip(amount, currency):
    major = to_major(amount, currency)
    assert to_minor(major, currency) == amount
    assert major.as_tuple().exponent == -currency_exponent(currency)


@given(
    major=st.decimals(min_value=-(10**12), max_value=10**12, places=3, allow_nan=False, allow_infinity=False),
)
def test_kwd_major_minor_round_trip(major):
    # Any value with at most three decimals is exact in KWD.
    assert to_major(to_minor(major, "KWD"), "KWD") == major
