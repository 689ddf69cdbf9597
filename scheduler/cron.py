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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import islice, takewhile
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from scheduler.cron_describe import describe_fields
from scheduler.cron_fields import CronFields, normalize, parse_expression
from scheduler.errors import InvalidCron, UnknownTimezone

FIRST_YEAR = 1900
"""The first year the engine computes fires in: before it most zones kept local mean time."""
LAST_YEAR = 2999
"""The last year the engine computes fires in: far past any billing horizon, and a search that finds
nothing stops there (in milliseconds: whole months are skipped by their shape, see CronFields.days_in)."""
_NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})
# No fire is earlier than this: FIRST_YEAR's first wall time in the zone furthest ahead of UTC (+14:00).
_FLOOR = datetime(FIRST_YEAR - 1, 12, 31, 0, 0, tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class Fire:
    """One fire time of a schedule, in UTC and in the schedule's zone."""

    utc: datetime
    local: datetime
    dst_change: bool  # the UTC offset differs from the previous fire's (or from the offset at `after`)


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
    """As written (fields separated by single spaces), ``H`` fields included."""
    timezone: str
    expanded: str = field(compare=False)
    """What the engine iterates: ``expression`` with every ``H`` field replaced by its values."""
    fields: CronFields = field(repr=False, compare=False)
    zone: ZoneInfo = field(repr=False, compare=False)

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC", *, seed: str | None = None) -> CronSchedule:
        """Parse and validate; raise InvalidCron or UnknownTimezone saying what is wrong.

        ``seed`` spreads ``H`` fields (a job passes ``job_hash_seed(name)``); without one ``H`` is refused.
        """
        expanded, fields = parse_expression(expression, seed=seed)
        zone = validate_timezone(timezone)
        return cls(expression=normalize(expression), timezone=timezone, expanded=expanded, fields=fields, zone=zone)

    def next_after(self, after: datetime) -> datetime:
        """The first fire strictly after ``after`` (aware, any zone), as aware UTC."""
        for instant in self._instants(after):
            return instant
        if not self.fields.fires_on_some_date():
            raise InvalidCron(self.expression, "never fires", why="no date matches its day, month and year fields")
        raise InvalidCron(
            self.expression,
            "never fires",
            why=f"it has no fire after {_as_utc(after).isoformat()} (fires are computed for {FIRST_YEAR}-{LAST_YEAR})",
        )

    def fires_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Fires with ``start < t <= end``, aware UTC, ascending."""
        end_utc = _as_utc(end)
        instants = self._instants(start)
        return takewhile(lambda instant: instant <= end_utc, instants)

    def next_fires(self, after: datetime, count: int) -> list[Fire]:
        """The next ``count`` fires (fewer if a year field or the supported years end them), flagging offset changes."""
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
        if after_utc.year > LAST_YEAR or not self.fields.fires_on_some_date():
            return iter(())
        return self._instants_from(max(after_utc, _FLOOR))

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
        """Matching dates from ``start`` on, month by month: a month of no matching shape costs one lookup."""
        f = self.fields
        if start.year < FIRST_YEAR:
            start = date(FIRST_YEAR, 1, 1)
        years: Iterable[int] = range(start.year, LAST_YEAR + 1)
        if f.years is not None:
            years = sorted(year for year in f.years if start.year <= year <= LAST_YEAR)
        for year in years:
            for month in f.months:
                if (year, month) < (start.year, start.month):
                    continue
                days = f.days_in(*calendar.monthrange(year, month))
                first = bisect_left(days, start.day) if (year, month) == (start.year, start.month) else 0
                for number in days[first:]:
                    yield date(year, month, number)

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
