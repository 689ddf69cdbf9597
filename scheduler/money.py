"""Money: totals per currency as a run's summary carries them, and the one formatter people read them through.

A summary's ``money`` maps an ISO 4217 currency to named amounts, each a decimal string:
``{"USD": {"late_fees": "2500.00", "write_offs": "812.40"}}``. A preview's totals say what applying will
do; an applied run's say what it did, so the two compare key by key. Amounts are ``Decimal``, never float.

Shown to people (the API's ``amounts``, which the page prints as they come, and the CSV exports), an amount
has its currency, thousands separators and the currency's decimals: ``EUR 2,500.00``, ``JPY 1,251``. Besides
``money``, an amount may be written as ``{"amount": "2500.00", "currency": "EUR"}``, or as a bare decimal
string under a money name (``late_fee``, ``fees_total``, ``rated_amount``, ``debit``…, see :func:`is_money_key`)
in the currency of the mapping's own ``currency`` field, else that of its ``money`` totals when they have one,
else ``SCHEDULER_CURRENCY`` (totals in several currencies leave bare sums unformatted: they mix them).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

DEFAULT_CURRENCY = "USD"
CURRENCY_PATTERN = r"^[A-Z]{3}$"

# ISO 4217 minor units where they are not 2.
MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
                     "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}

_MONEY_WORDS = re.compile(
    r"(^|_)(amount|amounts|fee|fees|total|debit|credit|balance|price|write_offs?|written_off)($|_)")


class MoneyTotals:
    """Named amounts summed per currency."""

    def __init__(self) -> None:
        self._totals: defaultdict[str, defaultdict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))

    def add(self, currency: str | None, name: str, amount: Any) -> None:
        """Add ``amount`` (a Decimal, or a string or integer read from JSON or SQL) to ``name`` in ``currency``."""
        if amount is None:
            return
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
        self._totals[currency or DEFAULT_CURRENCY][name] += value

    def total(self, name: str) -> Decimal:
        """``name`` summed over every currency (one figure when a ledger bills in one currency)."""
        return sum((amounts.get(name, Decimal(0)) for amounts in self._totals.values()), Decimal(0))

    def as_dict(self, *, names: tuple[str, ...] = (), places: int | None = None) -> dict[str, dict[str, str]]:
        """``{currency: {name: "amount"}}``; every name in ``names`` is shown (0 when nothing was added)."""
        exponent = Decimal(1).scaleb(-places) if places is not None else None
        out: dict[str, dict[str, str]] = {}
        for currency in sorted(self._totals):
            amounts = {name: Decimal(0) for name in names} | dict(self._totals[currency])
            out[currency] = {
                name: str(value.quantize(exponent) if exponent is not None else value)
                for name, value in amounts.items()
            }
        return out


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str

    @property
    def rounded(self) -> Decimal:
        """The amount in the currency's decimals (half up), as a statement shows it."""
        return self.amount.quantize(Decimal(1).scaleb(-decimals(self.currency)), rounding=ROUND_HALF_UP)

    def display(self) -> str:
        """``EUR 2,500.00``, ``JPY 1,250``, ``USD -12.50``."""
        return f"{self.currency} {self.rounded:,}"


@dataclass(frozen=True)
class Amount:
    """An amount found in a summary or an item's detail: its top-level ``field`` and its ``name``.

    They differ for the ``money`` totals (field ``money``, name ``late_fees``).
    """

    field: str
    name: str
    money: Money


def decimals(currency: str) -> int:
    return MINOR_UNITS.get(currency.upper(), 2)


def is_currency(value: Any) -> bool:
    return isinstance(value, str) and re.match(CURRENCY_PATTERN, value) is not None


def is_money_key(key: str) -> bool:
    """Whether a summary or detail field of this name holding a decimal string is an amount of money."""
    return bool(_MONEY_WORDS.search(key.lower()))


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def bare_currency(values: dict[str, Any], currency: str) -> str | None:
    """The currency of a mapping's bare amounts: its own ``currency`` field, else the one currency of its
    ``money`` totals, else ``currency``; ``None`` when its totals have several (its bare sums mix them)."""
    own = values.get("currency")
    if is_currency(own):
        return str(own)
    totals = money_totals(values.get("money"))
    if totals is None:
        return currency
    codes = {m.currency for m in totals}
    return codes.pop() if len(codes) == 1 else None


def money_totals(value: Any) -> list[Money] | None:
    """A ``{currency: {name: amount}}`` mapping as its amounts, or ``None`` when ``value`` is not one."""
    if not isinstance(value, dict) or not value or not all(is_currency(c) and isinstance(v, dict)
                                                           for c, v in value.items()):
        return None
    return [Money(a, c) for c, named in value.items() for a in map(_decimal, named.values()) if a is not None]


def amounts(values: dict[str, Any], currency: str) -> list[Amount]:
    """Every amount of money in a summary or an item's detail: its ``money`` totals first, then the others."""
    totals = values.get("money")
    found: list[Amount] = []
    if isinstance(totals, dict) and money_totals(totals) is not None:
        found = [Amount("money", name, Money(amount, code)) for code, named in totals.items()
                 for name, amount in ((n, _decimal(v)) for n, v in named.items()) if amount is not None]
    bare = bare_currency(values, currency)
    return found + [Amount(key, key, money) for key, value in values.items() if key != "money"
                    for money in as_money(key, value, bare) or []]


def as_money(key: str, value: Any, currency: str | None) -> list[Money] | None:
    """The amounts ``value`` holds (one per currency), or ``None`` when it is not money.

    ``currency`` is the one of bare amounts (``None``: bare amounts are not money); a ``{"amount",
    "currency"}`` object names its own.
    """
    if isinstance(value, dict) and set(value) >= {"amount", "currency"}:
        amount = _decimal(value.get("amount"))
        code = value.get("currency")
        return [Money(amount, code)] if amount is not None and isinstance(code, str) and is_currency(code) else None
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        found = [as_money(key, v, currency) for v in value]
        return [m for f in found if f is not None for m in f] if all(f is not None for f in found) else None
    if isinstance(value, str) and currency is not None and is_money_key(key):
        amount = _decimal(value)
        return None if amount is None else [Money(amount, currency)]
    return None


def display(found: list[Money]) -> str:
    """One or more amounts as one line: ``EUR 2,500.00 + USD 10.00``."""
    return " + ".join(m.display() for m in found)
