"""Money: human prices as :class:`~decimal.Decimal`, on-chain amounts as ``int`` atomic units.

Never ``float``. Price strings such as ``"$0.001"`` are parsed once, when the
app is configured. Conversion to atomic units truncates toward zero, like the
official SDK (``$0.001`` at 6 decimals is ``1000``), but refuses a price that
would truncate to a different value so a misconfigured price is caught early. Computed amounts (a per-token
quote, an ``upto`` usage charge) are rounded up instead (:func:`to_atomic_ceil`).
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, InvalidOperation

from ._exceptions import ConfigurationError

__all__ = ["format_usd", "from_atomic", "parse_usd", "to_atomic", "to_atomic_ceil"]


def parse_usd(value: str | Decimal | int) -> Decimal:
    """Parse a USD price: ``"$0.001"``, ``"0.10"``, ``"1.5 USD"``, ``Decimal("0.01")`` or an ``int`` of dollars.

    >>> parse_usd("$0.001")
    Decimal('0.001')
    """
    if isinstance(value, (bool, float)):
        raise ConfigurationError(f"price {value!r} must be a string like '$0.001' or a Decimal, never a float")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        text = value.strip()
        if text.upper().endswith("USD"):
            text = text[:-3].strip()
        elif text.upper().endswith("USDC"):
            text = text[:-4].strip()
        text = text.removeprefix("$").strip().replace("_", "")
        if not text or "e" in text.lower():
            raise ConfigurationError(f"price {value!r} is not a plain decimal amount such as '$0.001'")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise ConfigurationError(f"price {value!r} is not a decimal amount such as '$0.001'") from None
    else:
        raise ConfigurationError(f"price {value!r} must be a string like '$0.001' or a Decimal")
    if not amount.is_finite() or amount < 0:
        raise ConfigurationError(f"price {value!r} must be a finite amount >= 0")
    return amount


def to_atomic(amount: Decimal, decimals: int, *, exact: bool = True) -> int:
    """Convert a token amount to atomic units.

    With ``exact`` (the default) an amount finer than the token's smallest unit
    raises instead of being silently truncated.

    >>> to_atomic(Decimal("0.001"), 6)
    1000
    """
    if not amount.is_finite():
        raise ConfigurationError(f"amount {amount} is not a finite number")
    scaled = _shift(amount, decimals)
    atomic = int(scaled)  # truncates toward zero
    if exact and scaled != atomic:
        raise ConfigurationError(f"amount {amount} has more than {decimals} decimal places for this token")
    return atomic


def to_atomic_ceil(amount: Decimal, decimals: int) -> int:
    """A computed amount (a quote, a usage charge) in atomic units, rounded **up**: a partial unit is charged as
    a whole one.

    >>> to_atomic_ceil(Decimal("0.0000001"), 6)
    1
    """
    if not amount.is_finite():
        raise ConfigurationError(f"amount {amount} is not a finite number")
    return int(_shift(amount, decimals).to_integral_value(ROUND_CEILING))


def from_atomic(atomic: int, decimals: int) -> Decimal:
    """Atomic units back to a token amount. ``from_atomic(1000, 6) == Decimal("0.001")``."""
    return _shift(Decimal(atomic), -decimals)


def _shift(value: Decimal, places: int) -> Decimal:
    # Decimal.scaleb rounds to the context precision (28 digits) and uint256 amounts have up to 78:
    # moving the exponent of the exact (sign, digits, exponent) tuple never rounds.
    sign, digits, exponent = value.as_tuple()
    return Decimal((sign, digits, int(exponent) + places))  # finite values only: callers check


def format_usd(atomic: int, decimals: int = 6) -> str:
    """A human string for logs and descriptions: ``format_usd(1500) == "$0.0015"``."""
    value = from_atomic(atomic, decimals).normalize()
    text = format(value, "f")
    return f"${text}"
