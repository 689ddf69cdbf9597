"""Money totals per currency, as a run's summary carries them (``summary["money"]``).

A summary's ``money`` maps an ISO 4217 currency to named amounts, each a decimal string:
``{"USD": {"late_fees": "2500.00", "write_offs": "812.40"}}``. A preview's totals say what applying will
do; an applied run's say what it did, so the two compare key by key. Amounts are ``Decimal``, never float.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

DEFAULT_CURRENCY = "USD"


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
