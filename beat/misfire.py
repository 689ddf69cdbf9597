"""Which due ticks of a job get a run: the misfire policy over a bounded enumeration of fires.

Pure functions of (schedule, job settings, now): no database, no clock. A tick is *due* when
``next_fire_at <= t <= now``. The latest due tick is *on time* when ``now - t <= grace``; the others
were missed (beat was down, the database was down, the job was far behind). Every tick that gets no
run is returned in a :class:`MissedTicks` group with its reason, so the caller can count and log it.

Enumeration is bounded: a job five years behind on an every-second cron costs at most a few
``MAX_ENUMERATED`` steps, not 150 million; counts past the bound are reported as lower bounds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

from scheduler.cron import CronSchedule
from scheduler.models import MisfirePolicy

MAX_ENUMERATED = 10_000
"""Most fires enumerated per segment of one job in one tick."""
SAMPLE = 5
"""Ticks of each missed group kept for individual log lines."""

_EPSILON = timedelta(microseconds=1)


class MissReason:
    """Why a due tick got no run (the ``reason`` label of ``scheduler_missed_ticks_total``)."""

    SKIPPED = "skipped"
    """Misfire policy SKIP: a missed tick is not run."""
    COALESCED = "coalesced"
    """Misfire policy ONCE: folded into the run of the latest tick."""
    MAX_CATCHUP_RUNS = "max_catchup_runs"
    """Misfire policy ALL: older than the ``max_catchup_runs`` most recent ticks."""
    OUTSIDE_CATCHUP_WINDOW = "outside_catchup_window"
    """Older than ``catchup_window`` seconds."""
    OVERLAP = "overlap"
    """Refused by the overlap policy: another run of the job is active or waiting."""
    AWAITING_REVIEW = "awaiting_review"
    """Refused by the overlap policy while a preview of the job awaits review (noted on that preview)."""

    ALL = (SKIPPED, COALESCED, MAX_CATCHUP_RUNS, OUTSIDE_CATCHUP_WINDOW, OVERLAP, AWAITING_REVIEW)


@dataclass(frozen=True, kw_only=True)
class MissedTicks:
    """A group of due ticks that got no run, for one reason."""

    reason: str
    count: int
    at_least: bool = False
    """``count`` is a lower bound: enumeration stopped at ``MAX_ENUMERATED``."""
    sample: tuple[datetime, ...] = ()
    """The earliest few of them, for log lines."""
    last: datetime | None = None
    """The latest of them when known."""


@dataclass(frozen=True, kw_only=True)
class TickPlan:
    """The ticks to run (ascending) and the ticks that get no run."""

    run_ticks: list[datetime]
    missed: list[MissedTicks] = field(default_factory=list)
    latest: datetime | None = None
    """The latest due tick, run or not."""


@dataclass(frozen=True, kw_only=True)
class _Segment:
    count: int
    exact: bool
    head: list[datetime]
    tail: list[datetime]


def plan_ticks(
    schedule: CronSchedule,
    *,
    next_fire_at: datetime,
    now: datetime,
    grace: timedelta,
    policy: str,
    catchup_window: timedelta,
    max_catchup_runs: int,
) -> TickPlan:
    """Apply ``policy`` to the ticks in ``[next_fire_at, now]``.

    An on-time latest tick always runs. The window is at least ``grace`` wide, so a tick on time
    is never "outside the window".
    """
    window_start = now - max(catchup_window, grace)
    keep = max(1, max_catchup_runs) if policy == MisfirePolicy.ALL else 1
    missed: list[MissedTicks] = []

    lower = next_fire_at - _EPSILON  # fires_between excludes its start
    if next_fire_at < window_start:
        old = _scan(schedule, lower, window_start - _EPSILON, keep=1)
        if old.count:
            missed.append(
                MissedTicks(
                    reason=MissReason.OUTSIDE_CATCHUP_WINDOW,
                    count=old.count,
                    at_least=not old.exact,
                    sample=tuple(old.head),
                    last=old.tail[-1] if old.exact else None,
                )
            )
        lower = window_start - _EPSILON
    recent = _scan(schedule, lower, now, keep=keep)
    if not recent.count:
        return TickPlan(run_ticks=[], missed=missed)

    latest = recent.tail[-1]
    on_time = now - latest <= grace
    if policy == MisfirePolicy.SKIP:
        runs = [latest] if on_time else []
        reason = MissReason.SKIPPED
    elif policy == MisfirePolicy.ALL:
        runs = recent.tail[-keep:]
        reason = MissReason.MAX_CATCHUP_RUNS
    else:
        runs = [latest]
        reason = MissReason.COALESCED
    not_run = recent.count - len(runs)
    if not_run > 0:
        first_run = runs[0] if runs else None
        sample = tuple(t for t in recent.head if first_run is None or t < first_run)
        before = [t for t in recent.tail if first_run is None or t < first_run]
        missed.append(
            MissedTicks(
                reason=reason,
                count=not_run,
                at_least=not recent.exact,
                sample=sample,
                last=before[-1] if before else None,
            )
        )
    return TickPlan(run_ticks=runs, missed=missed, latest=latest)


def _scan(schedule: CronSchedule, after: datetime, until: datetime, *, keep: int) -> _Segment:
    """Count the fires in ``(after, until]`` (up to the bound) keeping the first few and last ``keep``."""
    fires = schedule.fires_between(after, until)
    head: list[datetime] = []
    tail: deque[datetime] = deque(maxlen=keep + SAMPLE)
    count = 0
    for t in fires:
        count += 1
        if len(head) < SAMPLE:
            head.append(t)
        tail.append(t)
        if count >= MAX_ENUMERATED:
            break
    exact = count < MAX_ENUMERATED or next(fires, None) is None
    if exact:
        return _Segment(count=count, exact=True, head=head, tail=list(tail))
    # Too many to walk: find the latest ones directly (one extra to know the tick before them).
    later = latest_fires(schedule, tail[-1], until, keep + 1)
    latest = later if len(later) > keep else [*tail, *later]
    return _Segment(count=count, exact=False, head=head, tail=latest)


def latest_fires(schedule: CronSchedule, after: datetime, until: datetime, count: int) -> list[datetime]:
    """The latest ``count`` fires in ``(after, until]``, ascending, without enumerating all of them.

    Probes windows ending at ``until``: doubles the span while it holds too few fires, bisects
    while it holds more than ``MAX_ENUMERATED``.
    """
    narrow = timedelta(0)
    wide: timedelta | None = None
    span = timedelta(seconds=1)
    best: list[datetime] = []
    for _ in range(80):
        start = max(after, until - span)
        fires = list(islice(schedule.fires_between(start, until), MAX_ENUMERATED + 1))
        if len(fires) > MAX_ENUMERATED:
            wide = span
        else:
            best = fires
            if len(fires) >= count or start == after:
                break
            narrow = span
        span = (narrow + wide) / 2 if wide is not None else span * 2
    return best[-count:]
