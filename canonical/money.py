"""Money as an integer amount in minor units plus an ISO 4217 currency.

The exponent (number of minor-unit digits) is the currency's real one: JPY and KRW
have none, KWD and BHD have three. Conversions are exact; a value that does not fit
the currency's precision is an error, never silently rounded.
"""

from __future__ import annotations

from decimal import Decimal

# ISO 4217 minor-unit exponents that differ from the default of 2.
_EXPONENTS: dict[str, int] = {
    # zero-decimal
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
    "XPF": 0,
    # three-decimal
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # four-decimal
    "CLF": 4, "UYW": 4,
}

# Currencies known to the hub. Anything else is rejected rather than guessed.
KNOWN_CURRENCIES: frozenset[str] = frozenset(_EXPONENTS) | frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD
    BTN BWP BYN BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR
    FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS
    KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK
    MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR
    SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SYP SZL THB TJS TMT TOP TRY TTD TWD
    TZS UAH USD UZS VES WST XCD YER ZAR ZMW ZWG""".split()
)


class UnknownCurrency(ValueError):
    pass


class PrecisionError(ValueError):
    pass


def currency_normalize(code: str) -> str:
    """Upper-case ISO 4217 code; raises UnknownCurrency for anything else."""
    normalized = (code or "").strip().upper()
    if normalized not in KNOWN_CURRENCIES:
        raise UnknownCurrency(f"unknown currency {code!r}")
    return normalized


def currency_exponent(code: str) -> int:
    return _EXPONENTS.get(currency_normalize(code), 2)


def to_major(amount_minor: int, currency: str) -> Decimal:
    """12345 USD -> Decimal('123.45'); 500 JPY -> Decimal('500'); 1234 KWD -> Decimal('1.234')."""
    exponent = currency_exponent(currency)
    return Decimal(int(amount_minor)).scaleb(-exponent)


def to_minor(amount_major: Decimal | str | int, currency: str) -> int:
    """Decimal('123.45') USD -> 12345. Raises PrecisionError if digits would be lost."""
    exponent = currency_exponent(currency)
    scaled = Decimal(amount_major).scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise PrecisionError(f"{amount_major} has more than {exponent} decimals for {currency}")
    return int(scaled)
