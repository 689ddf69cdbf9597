"""Cron schedules evaluated in a job's own time zone, with the DST rules of DESIGN.md section 5.

Accepts 5-field Unix cron, ``@`` macros and 6/7-field Quartz expressions (seconds first, ``?``,
optional year), with ``L``, ``W`` and ``#``. Matching is our own, over sets of allowed values, so the
DST policy is ours too:

- a wall time skipped by spring-forward fires once, at the first instant after the gap, for a
  fixed-hour job; a job whose hour field is a wildcard or step has no fires inside the gap;
- a repeated fall-back wall time fires on the first pass only for a fixed-hour job, and in both
  passes for a wildcard/step-hour job (it keeps its elapsed-time rhythm).
"""

from __future__ import annotations

import calendar
import heapq
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import islice, takewhile
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from scheduler.cron_describe import describe_fields
from scheduler.errors import InvalidCron, UnknownTimezone

MACROS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# Between 1901 and 2099 the calendar repeats every 28 years, so any date pattern that can match at
# all (even "the fifth Monday of February") matches within this many years.
_SEARCH_YEARS = 30
_NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


@dataclass(frozen=True, kw_only=True)
class Fire:
    """One fire time of a schedule, in UTC and in the schedule's zone."""

    utc: datetime
    local: datetime
    dst_change: bool  # the UTC offset differs from the previous fire's (or from the offset at `after`)


@dataclass(frozen=True, kw_only=True)
class DaysOfMonth:
    """The day-of-month field: plain days plus ``L``, ``L-n``, ``LW`` and ``nW``."""

    days: frozenset[int]
    last_offsets: frozenset[int] = frozenset()  # 0 for "L", n for "L-n"
    last_weekday: bool = False
    nearest_weekday: frozenset[int] = frozenset()

    def matches(self, day: date) -> bool:
        last = calendar.monthrange(day.year, day.month)[1]
        if day.day in self.days or last - day.day in self.last_offsets:
            return True
        if self.last_weekday and day.day == _nearest_weekday(day.year, day.month, last):
            return True
        return any(_nearest_weekday(day.year, day.month, n) == day.day for n in self.nearest_weekday)


@dataclass(frozen=True, kw_only=True)
class DaysOfWeek:
    """The day-of-week field (0 = Sunday) plus ``X#n`` and ``XL`` (last X of the month)."""

    days: frozenset[int]
    nth: frozenset[tuple[int, int]] = frozenset()  # (weekday, occurrence 1-5)
    last: frozenset[int] = frozenset()

    def matches(self, day: date) -> bool:
        weekday = (day.weekday() + 1) % 7
        if weekday in self.days or (weekday, (day.day - 1) // 7 + 1) in self.nth:
            return True
        return weekday in self.last and day.day + 7 > calendar.monthrange(day.year, day.month)[1]


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

    def matches_date(self, day: date) -> bool:
        in_dom, in_dow = self.dom.matches(day), self.dow.matches(day)
        return (in_dom or in_dow) if self.dom_or_dow else (in_dom and in_dow)


def _nearest_weekday(year: int, month: int, n: int) -> int | None:
    """Quartz ``nW``: the weekday nearest day ``n``, never leaving the month."""
    last = calendar.monthrange(year, month)[1]
    if n > last:
        return None
    weekday = date(year, month, n).weekday()
    if weekday == calendar.SATURDAY:
        return n - 1 if n > 1 else n + 2
    if weekday == calendar.SUNDAY:
        return n + 1 if n < last else n - 2
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
_YEAR = _Spec("year", 1970, 2099)


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


def _range(token: str, spec: _Spec) -> set[int]:
    """One list item: ``*``, ``a``, ``a-b``, each optionally ``/step``."""
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
        lo, hi = spec.lo, spec.hi
    elif "-" in base:
        first, _, second = base.partition("-")
        lo, hi = _value(first, spec, token), _value(second, spec, token)
        if lo > hi:
            raise _Bad(f"{spec.name} range {token!r} runs backwards; write it as two ranges")
    else:
        lo = _value(base, spec, token)
        hi = spec.hi if slash else lo
    return set(range(lo, hi + 1, step))


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
        elif upper.endswith("W"):
            nearest.add(_value(token[:-1], _DOM, token))
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
            nth.add((weekday(_value(day_text, spec, token)), int(occurrence)))
        elif upper == "L":
            if not quartz:
                raise _Bad(
                    "'L' alone in day-of-week is Quartz-only; use 'L' in day-of-month for the last day"
                    " or e.g. '5L' for the last Friday of the month"
                )
            days.add(6)
        elif upper.endswith("L"):
            last.add(weekday(_value(token[:-1], spec, token)))
        else:
            days |= {weekday(value) for value in _range(token, spec)}
    return DaysOfWeek(days=frozenset(days), nth=frozenset(nth), last=frozenset(last))


def parse_fields(expression: str) -> CronFields:
    """Parse a Unix, macro or Quartz expression; raise InvalidCron saying what is wrong."""
    text = " ".join(expression.split())
    if not text:
        raise InvalidCron(expression, "expression is empty")
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise InvalidCron(expression, f"unknown macro {text.lower()!r}; known: {', '.join(MACROS)}")
        text = MACROS[text.lower()]
    parts = text.split(" ")
    if len(parts) == 5:
        quartz, second, year = False, "0", None
        minute, hour, dom, month, dow = parts
    elif len(parts) in (6, 7):
        quartz = True
        second, minute, hour, dom, month, dow = parts[:6]
        year = parts[6] if len(parts) == 7 else None
    else:
        raise InvalidCron(
            expression, f"expected 5 fields (or 6-7 Quartz fields with seconds), got {len(parts)}"
        )
    try:
        return _build(quartz, second, minute, hour, dom, month, dow, year)
    except _Bad as e:
        raise InvalidCron(expression, str(e)) from None


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


# --- time zones and DST -----------------------------------------------------------------------


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


def validate_timezone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name; raise UnknownTimezone for anything else."""
    if name not in _known_zones():
        raise UnknownTimezone(name)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as e:
        raise UnknownTimezone(name) from e


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: pass an aware datetime")
    return moment.astimezone(UTC)


def _offset(moment: datetime) -> timedelta:
    return moment.utcoffset() or timedelta(0)


def _resolve(zone: ZoneInfo, wall: datetime) -> tuple[bool, datetime]:
    """Map a naive local wall time to (skipped, instant in UTC).

    A repeated wall time maps to its first pass; a skipped one to the first instant after the gap.
    """
    off0, off1 = _offset(wall.replace(tzinfo=zone)), _offset(wall.replace(tzinfo=zone, fold=1))
    at0 = (wall - off0).replace(tzinfo=UTC)
    if off0 == off1:
        return False, at0
    at1 = (wall - off1).replace(tzinfo=UTC)
    early, late = min(at0, at1), max(at0, at1)
    exists = [at for at in (early, late) if at.astimezone(zone).replace(tzinfo=None) == wall]
    if exists:
        return False, exists[0]
    return True, _transition(zone, int(early.timestamp()), int(late.timestamp()))


@lru_cache(maxsize=256)
def _transition(zone: ZoneInfo, lo: int, hi: int) -> datetime:
    """The first instant in (lo, hi] whose UTC offset differs from the offset at lo."""
    before = _offset(datetime.fromtimestamp(lo, zone))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(datetime.fromtimestamp(mid, zone)) == before:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


# --- the schedule ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CronSchedule:
    """A validated cron expression in an IANA time zone; build it with :meth:`parse`."""

    expression: str
    timezone: str
    fields: CronFields = field(repr=False, compare=False)
    zone: ZoneInfo = field(repr=False, compare=False)

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> CronSchedule:
        """Parse and validate; raise InvalidCron or UnknownTimezone saying what is wrong."""
        fields = parse_fields(expression)
        zone = validate_timezone(timezone)
        return cls(expression=" ".join(expression.split()), timezone=timezone, fields=fields, zone=zone)

    def next_after(self, after: datetime) -> datetime:
        """The first fire strictly after ``after`` (aware, any zone), as aware UTC."""
        for instant in self._instants(after):
            return instant
        raise InvalidCron(self.expression, "never fires")

    def fires_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Fires with ``start < t <= end``, aware UTC, ascending."""
        end_utc = _as_utc(end)
        instants = self._instants(start)
        return takewhile(lambda instant: instant <= end_utc, instants)

    def next_fires(self, after: datetime, count: int) -> list[Fire]:
        """The next ``count`` fires (fewer if a year field ends the schedule), flagging offset changes."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        previous = _offset(_as_utc(after).astimezone(self.zone))
        fires: list[Fire] = []
        for instant in islice(self._instants(after), count):
            local = instant.astimezone(self.zone)
            fires.append(Fire(utc=instant, local=local, dst_change=_offset(local) != previous))
            previous = _offset(local)
        return fires

    def describe(self) -> str:
        """A plain-English description, e.g. "At 01:30, every day"."""
        return describe_fields(self.fields)

    def _instants(self, after: datetime) -> Iterator[datetime]:
        after_utc = _as_utc(after)  # raise for naive input before the generator starts
        return self._instants_from(after_utc)

    def _instants_from(self, after: datetime) -> Iterator[datetime]:
        # No wall time earlier than after + (smallest nearby offset) can map to an instant after it.
        smallest = min(_offset((after + timedelta(days=k)).astimezone(self.zone)) for k in (-1, 0, 1))
        bound = after.replace(tzinfo=None) + smallest
        last = after
        for day in self._days_from(bound.date()):
            lower = bound.time() if day == bound.date() else time(0)
            for instant in self._day_instants(day, lower):
                if instant > last:  # one fire per instant, e.g. several wall times in one gap
                    last = instant
                    yield instant

    def _days_from(self, start: date) -> Iterator[date]:
        f = self.fields
        stop = start.year + _SEARCH_YEARS
        if f.years is not None:
            stop = min(stop, max(f.years))
        for year in range(start.year, stop + 1):
            if f.years is not None and year not in f.years:
                continue
            for month in f.months:
                if (year, month) < (start.year, start.month):
                    continue
                first = start.day if (year, month) == (start.year, start.month) else 1
                for number in range(first, calendar.monthrange(year, month)[1] + 1):
                    day = date(year, month, number)
                    if f.matches_date(day):
                        yield day

    def _day_instants(self, day: date, lower: time) -> Iterator[datetime]:
        zone = self.zone
        start, end = datetime.combine(day, time(0)), datetime.combine(day + timedelta(days=1), time(0))
        offsets = {_offset(m.replace(tzinfo=zone, fold=fold)) for m in (start, end) for fold in (0, 1)}
        if len(offsets) == 1:  # no transition today: wall times map one-to-one
            offset = offsets.pop()
            return ((wall - offset).replace(tzinfo=UTC) for wall in self._walls(day, lower))
        first_pass = self._first_pass(day, lower)
        before, after = _offset(start.replace(tzinfo=zone)), _offset(end.replace(tzinfo=zone, fold=1))
        if not self.fields.interval_hours or before <= after:
            return first_pass
        # Fall-back today: interval-hour jobs also fire in the second pass of the repeated wall times.
        first_at = int(start.replace(tzinfo=zone).timestamp())
        changed_at = _transition(zone, first_at, int(end.replace(tzinfo=zone, fold=1).timestamp()))
        repeat_from = changed_at.replace(tzinfo=None) + after
        repeat_until = repeat_from + (before - after)
        if repeat_from.date() > day or repeat_until.date() < day:
            return first_pass
        from_time = max(lower, repeat_from.time()) if repeat_from.date() == day else lower
        second_pass = (
            (wall - after).replace(tzinfo=UTC)
            for wall in takewhile(lambda wall: wall < repeat_until, self._walls(day, from_time))
        )
        return heapq.merge(first_pass, second_pass)

    def _first_pass(self, day: date, lower: time) -> Iterator[datetime]:
        for wall in self._walls(day, lower):
            skipped, instant = _resolve(self.zone, wall)
            if not (skipped and self.fields.interval_hours):
                yield instant

    def _walls(self, day: date, lower: time) -> Iterator[datetime]:
        """Matching wall times of ``day`` from ``lower`` on, ascending."""
        f = self.fields
        for hour in f.hours[bisect_left(f.hours, lower.hour) :]:
            start_minute = bisect_left(f.minutes, lower.minute) if hour == lower.hour else 0
            for minute in f.minutes[start_minute:]:
                at_lower = hour == lower.hour and minute == lower.minute
                start_second = bisect_left(f.seconds, lower.second) if at_lower else 0
                for second in f.seconds[start_second:]:
                    yield datetime(day.year, day.month, day.day, hour, minute, second)
