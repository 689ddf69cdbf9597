"""A simulated year of DST transitions in two zones, with an injected clock: beat's own ``tick()`` turns
fixed-time jobs into exactly one run per local date — 365 in 2026 — however the clocks change.

Within three days of each transition the clock jumps from one ``next_fire_at`` to the next (every fire
on time), and on the transition days it also walks through the small hours every ten minutes, so beat
looks at the skipped and the repeated hour too. The rest of the year beat ticks once a day at noon
UTC and catches up the day's fires (a one-day catch-up window): both paths must give one run a day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fault_types import TICK
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from beat.service import Beat
from scheduler.clock import FrozenClock
from scheduler.cron import CronSchedule
from scheduler.dispatch import Dispatcher, RunStep
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import Job, JobRun, MisfirePolicy, OverlapPolicy, RunStatus
from scheduler.settings import Settings

pytestmark = [pytest.mark.faults]

NEW_YORK, LONDON = "America/New_York", "Europe/London"
JOBS = [("30 1 * * *", NEW_YORK), ("0 2 * * *", NEW_YORK), ("30 1 * * *", LONDON), ("0 2 * * *", LONDON)]
START, END = datetime(2025, 12, 31, 12, 0, tzinfo=UTC), datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
SPRING = {NEW_YORK: date(2026, 3, 8), LONDON: date(2026, 3, 29)}
FALL = {NEW_YORK: date(2026, 11, 1), LONDON: date(2026, 10, 25)}
# The one fire of each job on its zone's transition days, in UTC: a skipped wall time fires at the first
# instant after the gap; a repeated one fires on its first pass only.
TRANSITION_FIRES = {
    ("30 1 * * *", NEW_YORK): [datetime(2026, 3, 8, 6, 30, tzinfo=UTC), datetime(2026, 11, 1, 5, 30, tzinfo=UTC)],
    ("0 2 * * *", NEW_YORK): [datetime(2026, 3, 8, 7, 0, tzinfo=UTC), datetime(2026, 11, 1, 7, 0, tzinfo=UTC)],
    ("30 1 * * *", LONDON): [datetime(2026, 3, 29, 1, 0, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)],
    ("0 2 * * *", LONDON): [datetime(2026, 3, 29, 1, 0, tzinfo=UTC), datetime(2026, 10, 25, 2, 0, tzinfo=UTC)],
}


class OfflineRedis:
    """Enough of a Redis client for beat's wake-up listener and broker watch, without a server."""

    def set(self, *args: Any, **kwargs: Any) -> bool:
        return False

    def info(self, section: str) -> dict[str, str]:
        return {"run_id": "offline"}

    def ping(self) -> bool:
        return True


class CountingDispatcher(Dispatcher):
    def __init__(self) -> None:
        self.url = "memory://"
        self.broker: Any = type("OfflineBroker", (), {"client": OfflineRedis()})()
        self.sent: Counter[int] = Counter()

    def send_steps(self, steps: Sequence[tuple[str, RunStep]]) -> None:
        self.sent.update(step.run_id for _, step in steps)

    def wake_beat(self) -> None:
        return None


def near_a_transition(moment: datetime) -> bool:
    return any(abs((moment.date() - day).days) <= 3 for day in (*SPRING.values(), *FALL.values()))


def small_hours(zone: str, day: date) -> list[datetime]:
    """Every ten minutes from local midnight to 04:00 of ``day``, as UTC instants."""
    midnight = datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)
    return [midnight + timedelta(minutes=10 * k) for k in range(6 * 5)]


def test_a_year_of_dst_fires_each_fixed_time_job_once_per_local_date(
    sqlite_engine: Engine, tmp_path: Path, figures: list[str]
) -> None:
    # Given four fixed-time jobs in New York and London, and a beat on a frozen clock
    clock = FrozenClock(START)
    dispatcher = CountingDispatcher()
    settings = Settings(data_dir=tmp_path / "data")
    beat = Beat(settings, sqlite_engine, JobTypeRegistry([TICK]), dispatcher, clock, "beat-dst")
    ids: dict[tuple[str, str], int] = {}
    with Session(sqlite_engine) as session:
        for cron, zone in JOBS:
            job = Job(name=f"{cron} {zone}", job_type=TICK.name, cron=cron, timezone=zone,
                      next_fire_at=CronSchedule.parse(cron, zone).next_after(START),
                      misfire_policy=MisfirePolicy.ONCE, catchup_window=2 * 86400,
                      overlap_policy=OverlapPolicy.SKIP)
            session.add(job)
            session.flush()
            assert job.id is not None
            ids[(cron, zone)] = job.id
        session.commit()
    extra = sorted(t for zone in (NEW_YORK, LONDON) for day in (SPRING[zone], FALL[zone])
                   for t in small_hours(zone, day))

    # When the clock runs through 2026, tick by tick, each run finishing before the next tick
    missed: Counter[str] = Counter()
    ticks = 0
    next_fire: datetime | None = START
    while next_fire is not None:
        now = clock.now()
        noon = datetime.combine(now.date(), time(12), tzinfo=UTC)
        candidates = [noon if noon > now else noon + timedelta(days=1), *[t for t in extra if t > now][:1]]
        if near_a_transition(next_fire):
            candidates.append(next_fire)
        moment = min(candidates)
        if moment >= END:
            break
        clock.set(moment)
        result = beat.tick()
        ticks += 1
        missed.update(result.missed)
        next_fire = result.next_fire_at
        with sqlite_engine.begin() as conn:
            conn.execute(update(JobRun).where(JobRun.status == RunStatus.CREATED)  # type: ignore[arg-type]
                         .values(status=RunStatus.COMPLETED, finished_at=clock.now()))

    # Then each job has one run per local date of 2026, no more, none missed, each sent once
    year = {date(2026, 1, 1) + timedelta(days=n) for n in range(365)}
    with Session(sqlite_engine) as session:
        runs = list(session.scalars(select(JobRun).order_by(JobRun.scheduled_for)))  # type: ignore[arg-type]
    assert not missed, missed
    assert set(dispatcher.sent.values()) == {1}
    for (cron, zone), job_id in ids.items():
        fires = [r.scheduled_for for r in runs if r.job_id == job_id and r.scheduled_for is not None]
        local = [f.astimezone(ZoneInfo(zone)) for f in fires]
        assert len(fires) == 365, f"{cron} in {zone}: {len(fires)} runs"
        assert {t.date() for t in local} == year, f"{cron} in {zone}: a local date has no run or two"
        hour, minute = (1, 30) if cron.startswith("30") else (2, 0)
        transition_days = {SPRING[zone], FALL[zone]}
        assert all((t.hour, t.minute) == (hour, minute) for t in local if t.date() not in transition_days)
        assert [f for f, t in zip(fires, local, strict=True) if t.date() in transition_days] == \
            TRANSITION_FIRES[(cron, zone)]
    assert ticks > 365
    figures.append(f"2026 in {NEW_YORK} and {LONDON}: {len(JOBS)} fixed-time jobs x 365 local dates, one run each "
                   f"(transition days as specified), over {ticks} beat ticks, 0 missed")
