"""Cron expressions parsed into sets of allowed values: the types the engine and the describer share.

Accepts 5-field Unix cron, ``@`` macros and 6/7-field Quartz expressions (seconds first, ``?``,
optional year), with ``L``, ``W``, ``#``, wrap-around ranges (``FRI-MON``, ``22-2``) and ``n-L``.
Hashed fields (``H``) are expanded by :mod:`scheduler.cron_hash` before the fields are read.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from scheduler.cron_hash import BadHash, expand_hashes
from scheduler.errors import InvalidCron

MACROS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_SEPARATORS = re.compile(r"[ \t\r\n\v\f]+")
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


@dataclass(frozen=True, kw_only=True)
class DaysOfMonth:
    """The day-of-month field: plain days plus ``L``, ``L-n``, ``LW`` and ``nW``."""

    days: frozenset[int]
    last_offsets: frozenset[int] = frozenset()  # 0 for "L", n for "L-n"
    last_weekday: bool = False
    nearest_weekday: frozenset[int] = frozenset()

    def days_in(self, first_weekday: int, length: int) -> set[int]:
        """The matching days of a month whose day 1 is ``first_weekday`` (Monday = 0) and has ``length`` days."""
        found = {day for day in self.days if day <= length}
        found |= {length - offset for offset in self.last_offsets if offset < length}
        targets = {*self.nearest_weekday, *((length,) if self.last_weekday else ())}
        found |= {weekday for n in targets if (weekday := _nearest_weekday(first_weekday, length, n)) is not None}
        return found


@dataclass(frozen=True, kw_only=True)
class DaysOfWeek:
    """The day-of-week field (0 = Sunday) plus ``X#n`` and ``XL`` (last X of the month)."""

    days: frozenset[int]
    nth: frozenset[tuple[int, int]] = frozenset()  # (weekday, occurrence 1-5)
    last: frozenset[int] = frozenset()

    def days_in(self, first_weekday: int, length: int) -> set[int]:
        """The matching days of a month whose day 1 is ``first_weekday`` (Monday = 0) and has ``length`` days."""
        found: set[int] = set()
        for day in range(1, length + 1):
            weekday = (first_weekday + day) % 7  # Sunday = 0
            if weekday in self.days or (weekday, (day - 1) // 7 + 1) in self.nth:
                found.add(day)
            elif weekday in self.last and day + 7 > length:
                found.add(day)
        return found


@dataclass(frozen=True, kw_only=True)
class CronFields:
    """A parsed expression: sorted allowed values per field and the day rules."""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: tuple[int, ...]
    years: frozenset[int] | None
    dom: DaysOfMonth
    dow: DaysOfWeek
    dom_or_dow: bool  # Unix rule: when both day fields are restricted, either may match
    interval_hours: bool  # hour field is a wildcard or step: keep the rhythm across DST
    # Matching days per month shape (weekday of day 1, length): 28 shapes make every month there is.
    _shapes: dict[tuple[int, int], tuple[int, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def days_in(self, first_weekday: int, length: int) -> tuple[int, ...]:
        """Matching days, ascending, of a month of this shape (``calendar.monthrange`` order)."""
        shape = (first_weekday, length)
        days = self._shapes.get(shape)
        if days is None:
            in_dom, in_dow = self.dom.days_in(*shape), self.dow.days_in(*shape)
            days = tuple(sorted(in_dom | in_dow if self.dom_or_dow else in_dom & in_dow))
            self._shapes[shape] = days
        return days

    def fires_on_some_date(self) -> bool:
        """Whether any date at all matches the day, month and year fields.

        Without a year field every month shape occurs (the Gregorian calendar repeats every 400
        years, in which each month starts on each weekday and February has 28 and 29 days).
        """
        if self.years is not None:
            return any(self.days_in(*calendar.monthrange(y, m)) for y in self.years for m in self.months)
        lengths = {month: (28, 29) if month == 2 else (calendar.monthrange(2001, month)[1],) for month in self.months}
        return any(self.days_in(w, n) for month in self.months for n in lengths[month] for w in range(7))


def _nearest_weekday(first_weekday: int, length: int, n: int) -> int | None:
    """Quartz ``nW``: the weekday nearest day ``n``, never leaving the month."""
    if n > length:
        return None
    weekday = (first_weekday + n - 1) % 7
    if weekday == calendar.SATURDAY:
        return n - 1 if n > 1 else n + 2
    if weekday == calendar.SUNDAY:
        return n + 1 if n < length else n - 2
    return n


# --- parsing ------------------------------------------------------------------------------------


class _Bad(Exception):
    """A parse problem; turned into InvalidCron with the whole expression."""


@dataclass(frozen=True)
class _Spec:
    name: str
    lo: int
    hi: int
    names: Mapping[str, int] = field(default_factory=dict)
    note: str = ""
    wraps: bool = True  # a range whose end is below its start runs round the end of the field


_SECOND = _Spec("second", 0, 59)
_MINUTE = _Spec("minute", 0, 59)
_HOUR = _Spec("hour", 0, 23)
_DOM = _Spec("day-of-month", 1, 31)
_MONTH = _Spec("month", 1, 12, {name: i for i, name in enumerate(_MONTH_NAMES, start=1)})
_DOW_UNIX = _Spec("day-of-week", 0, 7, {name: i for i, name in enumerate(_DAY_NAMES)}, " (0 and 7 = SUN)")
_DOW_QUARTZ = _Spec(
    "day-of-week",
    1,
    7,
    {name: i for i, name in enumerate(_DAY_NAMES, start=1)},
    " (Quartz numbering, 1 = SUN)",
)
_WEEK = _Spec("day-of-week", 0, 6)  # Unix day-of-week ranges, once 7 is read as 0
_YEAR = _Spec("year", 1970, 2099, wraps=False)


def _value(text: str, spec: _Spec, token: str) -> int:
    if text.isascii() and text.isdigit():
        value = int(text)
    elif text.upper() in spec.names:
        value = spec.names[text.upper()]
    else:
        raise _Bad(f"{spec.name} field: cannot parse {token!r}")
    if not spec.lo <= value <= spec.hi:
        raise _Bad(f"{spec.name} value {value} out of range {spec.lo}-{spec.hi}{spec.note}")
    return value


def _cycle(lo: int, hi: int, step: int, spec: _Spec, token: str) -> set[int]:
    """``lo-hi/step``; when ``hi < lo`` the range wraps round the field, the step carried across (as Quartz)."""
    if hi >= lo:
        return set(range(lo, hi + 1, step))
    if not spec.wraps:
        raise _Bad(f"{spec.name} range {token!r} runs backwards")
    span = spec.hi - spec.lo + 1
    return {spec.lo + (value - spec.lo) % span for value in range(lo, hi + span + 1, step)}


def _range(token: str, spec: _Spec) -> set[int]:
    """One list item: ``*``, ``a``, ``a-b`` (wrapping when ``b < a``), each optionally ``/step``."""
    base, slash, step_text = token.partition("/")
    step = 1
    if slash:
        span = spec.hi - spec.lo + 1
        if not (step_text.isascii() and step_text.isdigit()):
            raise _Bad(f"{spec.name} field: cannot parse step in {token!r}")
        step = int(step_text)
        if not 1 <= step <= span:
            raise _Bad(f"{spec.name} step {step} in {token!r} out of range 1-{span}")
    if base == "*":
        return set(range(spec.lo, spec.hi + 1, step))
    if "-" in base:
        first, _, second = base.partition("-")
        lo = _value(first, spec, token)
        hi = 31 if spec is _DOM and second.upper() == "L" else _value(second, spec, token)  # "n-L"
        if spec is _DOW_UNIX:  # 0 and 7 are both Sunday: "0-7" is the whole week, "FRI-SUN" wraps
            if lo % 7 == hi % 7 and lo != hi:
                return set(range(7))
            return _cycle(lo % 7, hi % 7, step, _WEEK, token)
        return _cycle(lo, hi, step, spec, token)
    start = _value(base, spec, token)
    if slash and spec is _DOW_UNIX:
        # "5/2" runs to Saturday, the end of the week (7 is Sunday again), as croniter reads it.
        return set(range(start % 7, 7, step))
    return set(range(start, spec.hi + 1 if slash else start + 1, step))


def _values(text: str, spec: _Spec) -> tuple[int, ...]:
    values: set[int] = set()
    for token in text.split(","):
        values |= _range(token, spec)
    return tuple(sorted(values))


def _days_of_month(text: str) -> DaysOfMonth:
    if text == "?":
        return DaysOfMonth(days=frozenset(range(1, 32)))
    days: set[int] = set()
    offsets: set[int] = set()
    nearest: set[int] = set()
    last_weekday = False
    for token in text.split(","):
        upper = token.upper()
        if upper == "L":
            offsets.add(0)
        elif upper.startswith("L-"):
            offset = token[2:]
            if not (offset.isascii() and offset.isdigit() and int(offset) <= 30):
                raise _Bad(f"day-of-month {token!r}: the offset after 'L-' must be 0-30")
            offsets.add(int(offset))
        elif upper == "LW":
            last_weekday = True
        elif upper.endswith("W") or upper.startswith("W"):  # "15W", or croniter's "W15"
            nearest.add(_value(token[:-1] if upper.endswith("W") else token[1:], _DOM, token))
        else:
            days |= _range(token, _DOM)
    return DaysOfMonth(
        days=frozenset(days),
        last_offsets=frozenset(offsets),
        last_weekday=last_weekday,
        nearest_weekday=frozenset(nearest),
    )


def _days_of_week(text: str, quartz: bool) -> DaysOfWeek:
    if text == "?":
        return DaysOfWeek(days=frozenset(range(7)))
    spec = _DOW_QUARTZ if quartz else _DOW_UNIX

    def weekday(value: int) -> int:
        return value - 1 if quartz else value % 7

    days: set[int] = set()
    nth: set[tuple[int, int]] = set()
    last: set[int] = set()
    for token in text.split(","):
        upper = token.upper()
        if "#" in token:
            day_text, _, occurrence = token.partition("#")
            if not (occurrence.isascii() and occurrence.isdigit() and 1 <= int(occurrence) <= 5):
                raise _Bad(f"day-of-week {token!r}: the occurrence after '#' must be 1-5")
            nth |= {(weekday(value), int(occurrence)) for value in _range(day_text, spec)}  # "MON-FRI#1" too
        elif upper == "L":
            if not quartz:
                raise _Bad(
                    "'L' alone in day-of-week is Quartz-only; use 'L' in day-of-month for the last day"
                    " or e.g. '5L' for the last Friday of the month"
                )
            days.add(6)
        elif upper.endswith("L") or (upper.startswith("L") and not quartz):  # "5L", or croniter's "L5"
            last.add(weekday(_value(token[:-1] if upper.endswith("L") else token[1:], spec, token)))
        else:
            days |= {weekday(value) for value in _range(token, spec)}
    return DaysOfWeek(days=frozenset(days), nth=frozenset(nth), last=frozenset(last))


def _refuse_odd_whitespace(expression: str) -> None:
    for position, char in enumerate(expression):
        if char.isspace() and _SEPARATORS.fullmatch(char) is None:
            name = unicodedata.name(char, "a control character")
            raise InvalidCron(
                expression,
                f"character U+{ord(char):04X} ({name}) at position {position + 1} is not a field separator;"
                " separate fields with ordinary spaces",
            )


def normalize(expression: str) -> str:
    """The expression with its fields separated by single spaces; refuses non-ASCII whitespace."""
    _refuse_odd_whitespace(expression)
    return " ".join(part for part in _SEPARATORS.split(expression) if part)


def parse_expression(expression: str, *, seed: str | None = None) -> tuple[str, CronFields]:
    """Parse a Unix, macro or Quartz expression: (the expression with ``H`` expanded, its fields).

    ``seed`` spreads ``H`` fields (see :mod:`scheduler.cron_hash`). Raises InvalidCron saying what is wrong.
    """
    written = normalize(expression)
    if not written:
        raise InvalidCron(expression, "expression is empty")
    text = written
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise InvalidCron(expression, f"unknown macro {text.lower()!r}; known: {', '.join(MACROS)}")
        text = MACROS[text.lower()]
    parts = text.split(" ")
    if len(parts) not in (5, 6, 7):
        raise InvalidCron(
            expression, f"expected 5 fields (or 6-7 Quartz fields with seconds), got {len(parts)}"
        )
    quartz = len(parts) > 5
    try:
        expanded = expand_hashes(parts, quartz=quartz, seed=seed)
    except BadHash as e:
        raise InvalidCron(expression, str(e)) from None
    if quartz:
        second, minute, hour, dom, month, dow = expanded[:6]
        year = expanded[6] if len(expanded) == 7 else None
    else:
        (minute, hour, dom, month, dow), second, year = expanded, "0", None
    try:
        fields = _build(quartz, second, minute, hour, dom, month, dow, year)
    except _Bad as e:
        raise InvalidCron(expression, str(e)) from None
    return (" ".join(expanded) if expanded != parts else written), fields


def _build(
    quartz: bool, second: str, minute: str, hour: str, dom: str, month: str, dow: str, year: str | None
) -> CronFields:
    for name, text in (
        ("second", second),
        ("minute", minute),
        ("hour", hour),
        ("month", month),
        ("year", year),
    ):
        if text is not None and "?" in text:
            raise _Bad(f"'?' is only allowed in day-of-month or day-of-week, not in {name}")
    for name, text in (("day-of-month", dom), ("day-of-week", dow)):
        if "?" in text and text != "?":
            raise _Bad(f"'?' must stand alone in {name}")
    if dom == dow == "?":
        raise _Bad("'?' may be used in only one of day-of-month and day-of-week")
    dom_any, dow_any = dom[0] in "*?", dow[0] in "*?"
    if quartz and not dom_any and not dow_any:
        raise _Bad(
            "Quartz expressions cannot restrict both day-of-month and day-of-week; put '?' in one of them"
        )
    return CronFields(
        seconds=_values(second, _SECOND),
        minutes=_values(minute, _MINUTE),
        hours=_values(hour, _HOUR),
        months=_values(month, _MONTH),
        years=None if year is None or year == "*" else frozenset(_values(year, _YEAR)),
        dom=_days_of_month(dom),
        dow=_days_of_week(dow, quartz),
        dom_or_dow=not dom_any and not dow_any,
        interval_hours="*" in hour or "/" in hour,
    )
