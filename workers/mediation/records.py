"""Normalize: check one usage record on its own and turn it into a row for the staging table.

Required fields, known meter, a non-negative decimal quantity with at most 6 decimals, an ISO 8601
timestamp with a zone: a record either passes (normalized: quantity, rated amount, UTC instant and
day) or is failed with a reason. What needs the database (accounts, duplicates) is decided
afterwards, set-based, in :mod:`workers.mediation.classify`.
"""

from __future__ import annotations

import calendar
import enum
import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Context, Decimal

from workers.mediation.tables import EVENT_ID_LENGTH, METER_LENGTH, RejectKind

FIELDS = ("event_id", "account_number", "meter", "quantity", "occurred_at")
"""The record fields of the wire contract (CSV header names, JSON keys)."""

ACCOUNT_LENGTH = 64
MESSAGE_LENGTH = 300
MICRO = Decimal("0.000001")
_WIDE = Context(prec=60)

StagedRow = tuple[
    int, str | None, str | None, str | None, str | None, str | None, str | None, str | None, str | None, str | None
]
"""``(line_no, event_id, account_number, meter, quantity, amount, occurred_at, usage_day, reason, message)``."""


class RejectReason(enum.StrEnum):
    """Why a record was not mediated. The codes are stable: they are stored and sent on the wire."""

    MALFORMED_LINE = "MALFORMED_LINE"
    """The line is not a record: bad CSV quoting or field count, invalid JSON, not UTF-8, too long."""
    MISSING_FIELD = "MISSING_FIELD"
    """A required field is absent or empty."""
    FIELD_TOO_LONG = "FIELD_TOO_LONG"
    """The event id is longer than 100 characters."""
    UNKNOWN_METER = "UNKNOWN_METER"
    """The meter is not one of the job's meters."""
    BAD_QUANTITY = "BAD_QUANTITY"
    """The quantity is not a decimal number."""
    NEGATIVE_QUANTITY = "NEGATIVE_QUANTITY"
    """The quantity is below zero."""
    QUANTITY_OUT_OF_RANGE = "QUANTITY_OUT_OF_RANGE"
    """The quantity has more than 6 decimals or 12 integer digits."""
    BAD_TIMESTAMP = "BAD_TIMESTAMP"
    """``occurred_at`` is not an ISO 8601 timestamp."""
    TIMESTAMP_WITHOUT_ZONE = "TIMESTAMP_WITHOUT_ZONE"
    """``occurred_at`` has no UTC offset or ``Z``: the instant is ambiguous."""
    ALREADY_MEDIATED = "ALREADY_MEDIATED"
    """The event id was mediated before (an earlier file or run)."""
    DUPLICATE_IN_FILE = "DUPLICATE_IN_FILE"
    """The event id appears on an earlier line of the same file."""
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    """No account has this account number."""
    INACTIVE_ACCOUNT = "INACTIVE_ACCOUNT"
    """The account is suspended or closed."""

    @property
    def kind(self) -> RejectKind:
        return RejectKind.FILTERED if self in FILTERED_REASONS else RejectKind.FAILED


FILTERED_REASONS = frozenset({
    RejectReason.ALREADY_MEDIATED, RejectReason.DUPLICATE_IN_FILE,
    RejectReason.UNKNOWN_ACCOUNT, RejectReason.INACTIVE_ACCOUNT,
})


class SourceError(Exception):
    """A file that cannot be read as a whole (unreadable, bad header, changed while read)."""


QUANTITY_PATTERN = r"\d{1,12}(?:\.\d{0,6})?|\.\d{1,6}"
"""A plain decimal: up to 12 integer digits and 6 decimals, no sign, no exponent."""
INSTANT_PATTERN = (
    r"[12]\d{3}-(?:0[1-9]|1[0-2])-(?P<day>0[1-9]|[12]\d|3[01])[T ](?:[01]\d|2[0-3]):[0-5]\d"
    r"(?::[0-5]\d(?:\.\d{1,6})?)?(?:Z|[+-](?:0\d|1[0-4])(?::?[0-5]\d)?)"
)
"""RFC 3339 with a zone, years 1000-2999; group ``day`` is checked against the month's length."""
_QUANTITY = re.compile(QUANTITY_PATTERN)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_INSTANT_OK = re.compile(INSTANT_PATTERN)
_INSTANT = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:\.\d{1,6})?)?(?:Z|[+-](\d\d)(?::?(\d\d))?)?"
)


class Normalizer:
    """Checks one record's fields and turns a good one into values for the staging table.

    Accepted: a plain decimal quantity (no sign, no exponent, ≤ 12 integer digits and ≤ 6 decimals) and
    an RFC 3339 timestamp ``YYYY-MM-DD[T ]hh:mm[:ss[.ffffff]]`` with ``Z`` or ``±hh[:mm]`` (years
    1000-2999). PostgreSQL parses those strings itself and rates in SQL (``exact=False``); for SQLite
    the amount (half up, 6 decimals), the UTC instant and the UTC day are computed here.
    """

    def __init__(self, prices: dict[str, Decimal], *, exact: bool) -> None:
        self.prices = prices
        self.exact = exact

    def row(self, line_no: int, event_id: str, account: str, meter: str, quantity: str, occurred: str) -> StagedRow:
        event_id, account, meter = event_id.strip(), account.strip(), meter.strip()
        quantity, occurred = quantity.strip(), occurred.strip()
        if not (event_id and account and meter and quantity and occurred):
            values = (event_id, account, meter, quantity, occurred)
            missing = ", ".join(name for name, value in zip(FIELDS, values, strict=True) if not value)
            return self.failed(line_no, RejectReason.MISSING_FIELD, f"missing {missing}", event_id, account, meter)
        if len(event_id) > EVENT_ID_LENGTH:
            return self.failed(line_no, RejectReason.FIELD_TOO_LONG,
                               f"event_id longer than {EVENT_ID_LENGTH} characters", event_id, account, meter)
        price = self.prices.get(meter)
        if price is None:
            return self.failed(line_no, RejectReason.UNKNOWN_METER, f"unknown meter {meter!r}",
                               event_id, account, meter)
        if _QUANTITY.fullmatch(quantity) is None:
            reason, message = _quantity_problem(quantity)
            return self.failed(line_no, reason, message, event_id, account, meter)
        good = _INSTANT_OK.fullmatch(occurred)
        if good is None or (good.group("day") > "28" and not day_exists(occurred)):
            reason, message = _instant_problem(occurred, _INSTANT.fullmatch(occurred))
            return self.failed(line_no, reason, message, event_id, account, meter)
        return self.accepted(line_no, event_id, account, meter, quantity, occurred)

    def accepted(self, line_no: int, event_id: str, account: str, meter: str, quantity: str,
                 occurred: str) -> StagedRow:
        """The staging row of a record whose fields passed the checks."""
        if not self.exact:
            return (line_no, event_id, account[:ACCOUNT_LENGTH], meter, quantity, None, occurred, None, None, None)
        exact = Decimal(quantity)
        amount = _WIDE.multiply(exact, self.prices[meter]).quantize(MICRO, rounding=ROUND_HALF_UP)
        utc = datetime.fromisoformat(occurred).astimezone(UTC).replace(tzinfo=None)
        at = utc.isoformat(sep=" ", timespec="microseconds")
        return (line_no, event_id, account[:ACCOUNT_LENGTH], meter, str(exact.quantize(MICRO)), str(amount), at,
                at[:10], None, None)

    @staticmethod
    def failed(line_no: int, reason: RejectReason, message: str, event_id: str | None = None,
               account: str | None = None, meter: str | None = None) -> StagedRow:
        return (
            line_no,
            event_id[:EVENT_ID_LENGTH] if event_id else None,
            account[:ACCOUNT_LENGTH] if account else None,
            meter[:METER_LENGTH] if meter else None,
            None, None, None, None, str(reason), message[:MESSAGE_LENGTH],
        )


def _quantity_problem(quantity: str) -> tuple[RejectReason, str]:
    if _NUMBER.fullmatch(quantity) is None:
        return RejectReason.BAD_QUANTITY, f"quantity {quantity!r} is not a decimal number"
    if quantity.startswith("-") and Decimal(quantity) != 0:
        return RejectReason.NEGATIVE_QUANTITY, f"quantity {quantity} is negative"
    if quantity.startswith(("+", "-")):
        return RejectReason.BAD_QUANTITY, f"quantity {quantity!r} must be written without a sign"
    return RejectReason.QUANTITY_OUT_OF_RANGE, f"quantity {quantity} has more than 12 integer digits or 6 decimals"


def day_exists(occurred: str) -> bool:
    """Whether the date of a timestamp that matched ``INSTANT_PATTERN`` exists (no 30 February)."""
    return int(occurred[8:10]) <= calendar.monthrange(int(occurred[:4]), int(occurred[5:7]))[1]


def _instant_problem(occurred: str, m: re.Match[str] | None) -> tuple[RejectReason, str]:
    """Why a timestamp is refused (string comparisons on its fixed-width parts)."""
    if m is None:
        return RejectReason.BAD_TIMESTAMP, f"occurred_at {occurred!r} is not an ISO 8601 timestamp"
    year, month, day, hour, minute, second, off_hour, off_minute = m.groups()
    valid = (
        "1000" <= year <= "2999" and "01" <= month <= "12" and "01" <= day <= "31" and hour <= "23"
        and minute <= "59" and (second is None or second <= "59")
        and (off_hour is None or off_hour <= "14") and (off_minute is None or off_minute <= "59")
    )
    if valid and day > "28":
        valid = int(day) <= calendar.monthrange(int(year), int(month))[1]
    if not valid:
        return RejectReason.BAD_TIMESTAMP, f"occurred_at {occurred!r} is not a valid date and time"
    if not occurred.endswith("Z") and off_hour is None:
        return RejectReason.TIMESTAMP_WITHOUT_ZONE, f"occurred_at {occurred!r} has no time zone"
    return RejectReason.BAD_TIMESTAMP, f"occurred_at {occurred!r} is not a valid timestamp"
