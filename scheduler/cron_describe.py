"""Plain-English descriptions of parsed cron expressions, for the job page and the API."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import product

from scheduler.cron_fields import CronFields

_MONTHS = ("", "January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")  # fmt: skip
_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_ORDINALS = ("", "first", "second", "third", "fourth", "fifth")
_MAX_LISTED_TIMES = 6


def describe_fields(fields: CronFields) -> str:
    """E.g. "At 01:30, every day", "Every 15 minutes", "At 09:00 on the second Monday of the month"."""
    time_text, at_listed_times = _time_phrase(fields)
    month_text = "" if len(fields.months) == 12 else "in " + _join(_spans(fields.months, _MONTHS.__getitem__))
    day_text = _day_phrase(fields)
    dom = fields.dom
    plain_single_day = len(dom.days) == 1 and not (
        dom.last_offsets or dom.last_weekday or dom.nearest_weekday
    )
    if len(fields.months) == 1 and plain_single_day and not _restricts_weekdays(fields):
        day_text, month_text = f"on {_MONTHS[fields.months[0]]} {next(iter(dom.days))}", ""
    year_text = "" if fields.years is None else "in " + _join(_spans(sorted(fields.years), str))
    qualifiers = [text for text in (day_text, month_text, year_text) if text]
    if not qualifiers:
        return f"{time_text}, every day" if at_listed_times else time_text
    return " ".join([time_text, *qualifiers])


def _time_phrase(f: CronFields) -> tuple[str, bool]:
    """The time-of-day part, and whether it is a short list of clock times."""
    with_seconds = f.seconds != (0,)
    if len(f.seconds) * len(f.minutes) * len(f.hours) <= _MAX_LISTED_TIMES:
        times = [
            f"{h:02d}:{m:02d}" + (f":{s:02d}" if with_seconds else "")
            for h, m, s in product(f.hours, f.minutes, f.seconds)
        ]
        return "At " + _join(times), True
    hour_text = _hour_phrase(f.hours)
    if len(f.minutes) == 1 and f.hours != tuple(range(24)) and hour_text.startswith("every"):
        minute = f.minutes[0]
        head = hour_text.capitalize() if minute == 0 else f"At {minute} minutes past the hour, {hour_text}"
        hour_text = ""
    elif len(f.minutes) == 1:
        minute = f.minutes[0]
        head = "Every hour" if minute == 0 else f"At {minute} minutes past the hour"
    else:
        head = _every(f.minutes, 0, 59, "minute")
    if with_seconds:
        second_text = _every(f.seconds, 0, 59, "second")
        head = second_text if len(f.minutes) == 60 else f"{second_text}, {head[0].lower()}{head[1:]}"
    return (f"{head}, {hour_text}" if hour_text else head), False


def _hour_phrase(hours: Sequence[int]) -> str:
    if len(hours) == 24:
        return ""
    step = _step(hours, 0, 23)
    if step:
        return f"every {step} hours"
    if len(hours) == hours[-1] - hours[0] + 1:
        return f"between {hours[0]:02d}:00 and {hours[-1]:02d}:59"
    return "during hours " + _join([f"{h:02d}:00-{h:02d}:59" for h in hours])


def _every(values: Sequence[int], lo: int, hi: int, unit: str) -> str:
    if len(values) == hi - lo + 1:
        return f"Every {unit}"
    step = _step(values, lo, hi)
    if step:
        return f"Every {step} {unit}s"
    if len(values) == 1:
        return f"At {unit} {values[0]}"
    return f"At {unit}s " + _join(_spans(values, str))


def _step(values: Sequence[int], lo: int, hi: int) -> int | None:
    """The step when values are exactly lo, lo+step, ... up to hi."""
    if len(values) < 2:
        return None
    step = values[1] - values[0]
    return step if tuple(values) == tuple(range(lo, hi + 1, step)) else None


def _restricts_weekdays(f: CronFields) -> bool:
    return len(f.dow.days) < 7 or bool(f.dow.nth or f.dow.last)


def _day_phrase(f: CronFields) -> str:
    dom, dow = f.dom, f.dow
    items: list[str] = []
    if len(dom.days) < 31:
        days = sorted(dom.days)
        step = _step(days, 1, 31) if len(days) > 2 else None
        if step:
            items.append(f"every {step} days")
        elif days:
            items.append(("day " if len(days) == 1 else "days ") + _join(_spans(days, str)))
    items += ["the last day" if n == 0 else f"the day {n} day{'s' * (n > 1)} before the last day"
              for n in sorted(dom.last_offsets)]  # fmt: skip
    if dom.last_weekday:
        items.append("the last weekday")
    items += [f"the weekday nearest day {n}" for n in sorted(dom.nearest_weekday)]
    dom_text = f"on {_join(items)} of the month" if items else ""

    items = []
    if len(dow.days) < 7:
        monday_first = sorted(dow.days, key=lambda d: (d - 1) % 7)
        items += _spans([(d - 1) % 7 for d in monday_first], lambda i: _WEEKDAYS[(i + 1) % 7])
    items += [f"the {_ORDINALS[n]} {_WEEKDAYS[d]} of the month" for d, n in sorted(dow.nth)]
    items += [f"the last {_WEEKDAYS[d]} of the month" for d in sorted(dow.last)]
    dow_text = f"on {_join(items)}" if items else ""

    if dom_text and dow_text:
        return f"{dom_text} {'or' if f.dom_or_dow else 'if it is also'} {dow_text.removeprefix('on ')}"
    return dom_text or dow_text


def _spans(values: Sequence[int], name: Callable[[int], str]) -> list[str]:
    """Names of sorted values, runs of three or more as "A through B"."""
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    out: list[str] = []
    for run in runs:
        if len(run) >= 3:
            out.append(f"{name(run[0])} through {name(run[-1])}")
        else:
            out.extend(name(value) for value in run)
    return out


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"
