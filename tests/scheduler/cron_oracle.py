"""croniter as the oracle of our cron engine: generated expressions, croniter's own vectors, and the
deliberate differences between the two dialects (each listed in the table of docs/cron.md).

Shared by the differential test (tests/scheduler/test_cron_croniter.py) and the benchmark
(tests/bench/bench_cron.py).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter

VECTORS = Path(__file__).parent / "data" / "croniter_vectors.json"
ZONES = ("UTC", "America/New_York", "Europe/London")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


# --- generated expressions ---------------------------------------------------------------------


def _number_field(rng: random.Random, lo: int, hi: int, names: tuple[str, ...] = ()) -> str:
    def value(low: int = lo, high: int = hi) -> str:
        n = rng.randint(low, high)
        return names[n - lo] if names and n - lo < len(names) and rng.random() < 0.4 else str(n)

    def item() -> str:
        kind = rng.random()
        if kind < 0.35:
            return value()
        if kind < 0.6:
            return f"{value()}-{value()}"  # may wrap round (b < a) or name one value twice
        if kind < 0.75:
            return f"*/{rng.randint(1, max(1, (hi - lo) // 2))}"
        if kind < 0.9:
            return f"{value()}-{value()}/{rng.randint(2, 5)}"
        return f"{value()}/{rng.randint(2, 6)}"

    if rng.random() < 0.3:
        return "*"
    return ",".join(item() for _ in range(rng.choice((1, 1, 1, 2, 3))))


def _day_of_month(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.08:
        return rng.choice(("L", "LW", f"{rng.randint(1, 28)}W", f"{rng.randint(15, 28)}-L"))
    return _number_field(rng, 1, 31)


def _day_of_week(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.06:
        return f"{rng.choice(_DAYS)}#{rng.randint(1, 5)}"
    if kind < 0.08:
        return f"L{rng.randint(0, 6)}"
    return _number_field(rng, 0, 7, _DAYS)


def _hashed(rng: random.Random, lo: int, hi: int) -> str:
    low = rng.randint(lo, hi - 1)
    high = rng.randint(low + 1, hi)
    return rng.choice(("H", f"H({low}-{high})", f"H/{rng.randint(2, 10)}", f"H({low}-{high})/{rng.randint(1, 3)}"))


def random_expression(rng: random.Random, *, hashed: bool = False) -> str:
    """A 5-field expression in the grammar both engines read (and some forms where they differ).

    ``hashed``: some fields are ``H`` forms (croniter needs a hash id for them).
    """
    day_of_month = _day_of_month(rng) if rng.random() < 0.6 else "*"
    day_of_week = _day_of_week(rng) if rng.random() < 0.5 else "*"
    fields = [
        _number_field(rng, 0, 59),
        _number_field(rng, 0, 23),
        day_of_month,
        _number_field(rng, 1, 12, _MONTHS),
        day_of_week,
    ]
    if hashed:
        bounds = ((0, 59), (0, 23), (1, 28), (1, 12), (0, 6))
        for index in rng.sample(range(5), rng.randint(1, 3)):
            fields[index] = _hashed(rng, *bounds[index])
    return " ".join(fields)


def random_after(rng: random.Random) -> datetime:
    """A random instant in 2020-2030, to the second."""
    start = datetime(2020, 1, 1, tzinfo=UTC)
    return start + timedelta(seconds=rng.randrange(int(timedelta(days=3652).total_seconds())))


def croniter_fires(expression: str, zone: str, after: datetime, count: int, hash_id: str | None = None) -> list[
        datetime] | None:
    """croniter's next ``count`` fires after ``after`` in ``zone``, as UTC; None when it refuses or gives up."""
    try:
        iterator = croniter(expression, after.astimezone(ZoneInfo(zone)),
                            hash_id=hash_id.encode() if hash_id else None)
        return [iterator.get_next(datetime).astimezone(UTC) for _ in range(count)]
    except (CroniterError, ValueError, OverflowError):
        return None


# --- croniter's own vectors --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Vector:
    """One forward step croniter's test suite computed (see data/croniter_vectors.md)."""

    test: str
    expression: str  # as croniter read it
    hash_id: str | None
    timezone: str | None
    options: dict[str, Any]
    after: datetime
    fire: datetime


def load_vectors() -> list[Vector]:
    data = json.loads(VECTORS.read_text())
    return [
        Vector(test=case["test"], expression=case["expression"], hash_id=case.get("hash_id"),
               timezone=case.get("timezone"), options=case.get("options", {}),
               after=datetime.fromisoformat(after), fire=datetime.fromisoformat(fire))
        for case in data["cases"] for after, fire in case["steps"]
    ]


def our_dialect(vector: Vector) -> tuple[str | None, str]:
    """The vector's expression in our dialect, or None and why it is outside the shared dialect."""
    options = set(vector.options) - {"second_at_beginning"}
    if options:
        return None, "croniter option " + ", ".join(sorted(options))
    if vector.timezone is None:
        return None, "a zone without an IANA name"
    parts = vector.expression.split()
    if len(parts) <= 5:
        return vector.expression, ""
    # croniter's 6/7 fields put seconds after day-of-week; Quartz puts them first and numbers days from 1.
    seconds, rest = (parts[0], parts[1:6]) if vector.options.get("second_at_beginning") else (parts[5], parts[:5])
    minute, hour, day_of_month, month, day_of_week = rest
    if day_of_week not in ("*", "?"):
        return None, "6/7 fields restricting day-of-week (Quartz numbers days from 1, croniter from 0)"
    return " ".join([seconds, minute, hour, day_of_month, month, "?", *parts[6:7]]), ""


# --- the deliberate differences ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Case:
    """One comparison: our expression and croniter's, the zone, and where the fire times first part."""

    expression: str
    theirs_expression: str
    zone: str
    hash_id: str | None
    after: datetime
    ours: datetime | None  # None: ours found no fire
    theirs: datetime


def _fields(case: Case) -> list[str]:
    return case.expression.upper().split()


def _day_fields(case: Case) -> tuple[str, str] | None:
    parts = _fields(case)
    if len(parts) == 5:
        return parts[2], parts[4]
    if len(parts) in (6, 7):
        return parts[3], parts[5]
    return None


def _restricted(text: str) -> bool:
    return not text.startswith(("*", "?"))


def _vixie_star_step(case: Case) -> bool:
    days = _day_fields(case)
    if days is None:
        return False
    dom, dow = days
    return any(first.startswith("*") and first != "*" and second not in ("*", "?")
               for first, second in ((dom, dow), (dow, dom)))


_SPECIAL_DOM = re.compile(r"(^|,)(L|LW|L-\d+|\d+W|W\d+|\d+-L)(,|$)")
_SPECIAL_DOW = re.compile(r"#|\dL|(^|,)L\d")


def _special_day_with_other_field(case: Case) -> bool:
    days = _day_fields(case)
    if days is None:
        return False
    dom, dow = days
    special = bool(_SPECIAL_DOM.search(dom)) or bool(_SPECIAL_DOW.search(dow))
    return special and _restricted(dom) and _restricted(dow)


def _star_in_list(case: Case) -> bool:
    return any("," in part and any(item.startswith("*") for item in part.split(",")) for part in _fields(case))


def _nearest_weekday_missing_day(case: Case) -> bool:
    days = _day_fields(case)
    if days is None:
        return False
    numbers = [int(a or b) for a, b in re.findall(r"(\d+)W|W(\d+)", days[0])]
    return any(n >= 29 for n in numbers)


def _dst(case: Case) -> bool:
    zone = ZoneInfo(case.zone)
    moment = min(t for t in (case.ours, case.theirs) if t is not None)
    around = (moment - timedelta(hours=26), moment + timedelta(hours=26))
    return len({t.astimezone(zone).utcoffset() for t in around}) > 1


_RANGE = re.compile(r"(?:^|,)([A-Z0-9]+)-([A-Z0-9]+)(/\d+)?(?=,|$)")
_FIELD_NAMES: tuple[tuple[str, ...], ...] = ((), (), (), _MONTHS, _DAYS)


def _ranges(case: Case) -> Iterator[tuple[int, int, bool]]:
    """(start, end, has a step) of every range in a 5-field expression, names read as numbers."""
    parts = _fields(case)
    if len(parts) != 5:
        return
    for index, part in enumerate(parts):
        names = _FIELD_NAMES[index]
        for first, second, step in _RANGE.findall(part):
            ends = []
            for end in (first, second):
                if end.isdigit():
                    ends.append(int(end) % 7 if index == 4 else int(end))
                elif end in names:
                    ends.append(names.index(end) + (1 if index == 3 else 0))
                else:
                    break
            if len(ends) == 2:
                yield ends[0], ends[1], bool(step)


def _wrap_with_step(case: Case) -> bool:
    return any(start > end and step for start, end, step in _ranges(case))


def _equal_range(case: Case) -> bool:
    return any(start == end for start, end, _ in _ranges(case))


def _hashed_day_of_month(case: Case) -> bool:
    days = _day_fields(case)
    return case.hash_id is not None and days is not None and days[0] == "H"


def _hashed_macro(case: Case) -> bool:
    return case.hash_id is not None and case.expression.startswith("@")


@dataclass(frozen=True, kw_only=True)
class Difference:
    """A deliberate difference from croniter: its key (a row of the table in docs/cron.md) and its test."""

    key: str
    applies: Callable[[Case], bool]


DIFFERENCES = (
    Difference(key="vixie-star-step", applies=_vixie_star_step),
    Difference(key="special-day-with-other-field", applies=_special_day_with_other_field),
    Difference(key="star-in-a-list", applies=_star_in_list),
    Difference(key="nearest-weekday-missing-day", applies=_nearest_weekday_missing_day),
    Difference(key="dst-policy", applies=_dst),
    Difference(key="wrap-around-step", applies=_wrap_with_step),
    Difference(key="equal-range", applies=_equal_range),
    Difference(key="hashed-day-of-month", applies=_hashed_day_of_month),
    Difference(key="hashed-macro", applies=_hashed_macro),
)


def explain(case: Case) -> str | None:
    """The key of the deliberate difference that explains a disagreement, or None."""
    return next((d.key for d in DIFFERENCES if d.applies(case)), None)
