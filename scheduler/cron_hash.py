"""Hashed cron fields (``H``), spread deterministically per job by croniter's hashing.

``H 2 * * *`` means "once a day in the 02:00 hour, at a minute chosen by the job": thousands of
jobs written that way land on different minutes instead of firing in one second. croniter turns
each ``H`` field into plain values from a seed (the job's name, see :func:`job_hash_seed`); the
product's own engine then iterates the plain expression, so the DST policy and Quartz dialect hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from croniter import CroniterError, croniter

from scheduler.models import name_key

_HASHED = re.compile(r"H(?:\((\d+)-(\d+)\))?(?:/(\d+))?", re.IGNORECASE | re.ASCII)
_RANDOM = re.compile(r"R(?:\(\d+-\d+\))?(?:/\d+)?", re.IGNORECASE | re.ASCII)


class BadHash(ValueError):
    """An ``H`` field that cannot be expanded; the message says why."""


@dataclass(frozen=True)
class _Field:
    name: str
    croniter_index: int  # position in croniter's 7-field layout (seconds and year last)
    lo: int
    hi: int
    shift: int = 0  # Quartz day-of-week counts from 1 (Sunday), croniter's from 0
    default: tuple[int, int] | None = None  # the range a bare H draws from, when not the whole field


_SECOND = _Field("second", 5, 0, 59)
_MINUTE = _Field("minute", 0, 0, 59)
_HOUR = _Field("hour", 1, 0, 23)
# A bare H in day-of-month draws from 1-28, so the job fires in every month (February included).
_DOM = _Field("day-of-month", 2, 1, 31, default=(1, 28))
_MONTH = _Field("month", 3, 1, 12)
_DOW_UNIX = _Field("day-of-week", 4, 0, 6)
_DOW_QUARTZ = _Field("day-of-week", 4, 1, 7, shift=1)
_YEAR = _Field("year", 6, 1970, 2099)

_UNIX = (_MINUTE, _HOUR, _DOM, _MONTH, _DOW_UNIX)
_QUARTZ = (_SECOND, _MINUTE, _HOUR, _DOM, _MONTH, _DOW_QUARTZ, _YEAR)


def job_hash_seed(job_name: str) -> str:
    """The seed of a job's ``H`` fields: its name in Unicode NFC, case-folded.

    The name exists before the job is inserted (its id does not) and never changes (jobs are
    immutable); NFC and case-folding give the same slot to the same name however it was typed.
    """
    return name_key(job_name)


def expand_hashes(parts: list[str], *, quartz: bool, seed: str | None) -> list[str]:
    """The fields with every ``H`` field replaced by the plain values croniter hashes it to."""
    specs = _QUARTZ if quartz else _UNIX
    out: list[str] = []
    for text, spec in zip(parts, specs, strict=False):
        items = [item.upper() for item in text.split(",")]
        if any(_RANDOM.fullmatch(item) for item in items):
            raise BadHash(f"{spec.name} field {text!r}: 'R' (random) is not supported, a schedule must be"
                          " reproducible; use 'H' to spread jobs")
        if not any(item.startswith("H") for item in items):
            out.append(text)
            continue
        if len(items) > 1:
            raise BadHash(f"{spec.name} field {text!r}: 'H' must be the whole field (H, H(a-b), H/n or H(a-b)/n)")
        if seed is None:
            raise BadHash(f"{spec.name} field {text!r}: 'H' is spread by the job's name, so it is only"
                          " allowed in a job's schedule")
        out.append(_expand(text, spec, seed))
    return out


def _expand(text: str, spec: _Field, seed: str) -> str:
    match = _HASHED.fullmatch(text)
    if match is None:
        raise BadHash(f"{spec.name} field: cannot parse {text!r}; hashed forms are H, H(a-b), H/n and H(a-b)/n")
    lo_text, hi_text, step_text = match.groups()
    lo, hi = (int(lo_text), int(hi_text)) if lo_text else (spec.default or (spec.lo, spec.hi))
    if lo_text and not spec.lo <= lo < hi <= spec.hi:
        raise BadHash(f"{spec.name} field {text!r}: the range must run upwards within {spec.lo}-{spec.hi}")
    token = f"H({lo - spec.shift}-{hi - spec.shift})" if (lo, hi) != (spec.lo, spec.hi) else "H"
    if step_text:
        step = int(step_text)
        if step < 1:
            raise BadHash(f"{spec.name} field {text!r}: the step must be at least 1")
        token += f"/{step}"
    layout = ["*"] * 7
    layout[spec.croniter_index] = token
    try:
        expanded, _ = croniter.expand(" ".join(layout), hash_id=seed.encode())
    except CroniterError as e:
        raise BadHash(f"{spec.name} field {text!r}: {e}") from None
    found = expanded[spec.croniter_index]
    values = range(lo, hi + 1) if found == ["*"] else sorted(int(v) + spec.shift for v in found)
    return ",".join(map(str, values))
