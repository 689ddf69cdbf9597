"""Backfill goes through the unique ledger: it fills gaps and retries failures, never duplicates a tick."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.backfill import BackfillMode, BackfillRequest, backfill
from scheduler.clock import FrozenClock
from scheduler.errors import InvalidInput
from scheduler.models import Job, JobEvent, JobRun, RunStatus, RunTrigger

T = lambda h: datetime(2026, 5, 1, h, tzinfo=UTC)  # noqa: E731


def _hourly_job(session: Session) -> int:
    job = Job(name="hourly GL", job_type="fake", cron="0 * * * *", timezone="UTC")
    session.add(job)
    session.commit()
    assert job.id is not None
    return job.id


def _runs(session: Session, job_id: int) -> list[tuple[datetime | None, str, str, int | None]]:
    rows = session.scalars(select(JobRun).where(col(JobRun.job_id) == job_id).order_by(col(JobRun.id)))
    return [(r.scheduled_for, r.trigger, r.status, r.retry_of) for r in rows]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 6, 1, tzinfo=UTC))


def test_missing_fills_only_the_gaps(session: Session, clock: FrozenClock) -> None:
    # Given an hourly job whose 02:00 tick ran and 03:00 tick failed
    job_id = _hourly_job(session)
    session.add(JobRun(job_id=job_id, job_type="fake", trigger=RunTrigger.SCHEDULED, scheduled_for=T(2),
                       status=RunStatus.COMPLETED))
    session.add(JobRun(job_id=job_id, job_type="fake", trigger=RunTrigger.SCHEDULED, scheduled_for=T(3),
                       status=RunStatus.FAILED))
    session.commit()

    # When the range 01:00..05:00 is backfilled for missing ticks, twice
    request = BackfillRequest(start=T(1), end=T(5), mode=BackfillMode.MISSING)
    first = backfill(session=session, job_id=job_id, request=request, actor="alice", clock=clock)
    second = backfill(session=session, job_id=job_id, request=request, actor="alice", clock=clock)

    # Then ticks 01, 04, 05 got one run each, and the second backfill added nothing
    assert first.ticks == 5 and len(first.created) == 3
    assert second.created == []
    ticks = session.scalars(select(JobRun.scheduled_for).where(col(JobRun.job_id) == job_id)).all()
    assert sorted(t for t in ticks if t) == [T(1), T(2), T(3), T(4), T(5)]
    audit = session.scalars(select(JobEvent.note).where(col(JobEvent.job_id) == job_id)).all()
    assert any("backfill MISSING" in n and "3 runs" in n for n in audit)


def test_failed_retries_failed_ticks_pointing_back(session: Session, clock: FrozenClock) -> None:
    job_id = _hourly_job(session)
    failed = JobRun(job_id=job_id, job_type="fake", trigger=RunTrigger.SCHEDULED, scheduled_for=T(3),
                    status=RunStatus.INCOMPLETE)
    session.add(failed)
    session.commit()

    result = backfill(session=session, job_id=job_id, request=BackfillRequest(start=T(1), end=T(4),
                      mode=BackfillMode.FAILED), actor="alice", clock=clock)

    assert len(result.created) == 1
    assert _runs(session, job_id)[-1] == (None, RunTrigger.BACKFILL, RunStatus.CREATED, failed.id)
    assert session.scalar(select(func.count()).select_from(JobRun)) == 2


def test_range_in_the_future_or_too_long_is_refused_and_writes_nothing(session: Session, clock: FrozenClock) -> None:
    job_id = _hourly_job(session)
    with pytest.raises(InvalidInput, match="in the past"):
        backfill(session=session, job_id=job_id, request=BackfillRequest(start=T(1), end=datetime(2027, 1, 1,
                 tzinfo=UTC)), actor="a", clock=clock)
    with pytest.raises(InvalidInput, match="more than 1000 ticks"):
        backfill(session=session, job_id=job_id, request=BackfillRequest(start=datetime(2026, 1, 1, tzinfo=UTC),
                 end=T(1)), actor="a", clock=clock)
    session.rollback()
    assert _runs(session, job_id) == []


def test_a_yearly_backfill_reaches_back_to_1950(session: Session, clock: FrozenClock) -> None:
    # Given a yearly job (no look-ahead horizon stops a range of 77 years)
    job = Job(name="annual close", job_type="fake", cron="@yearly", timezone="Europe/London")
    session.add(job)
    session.commit()
    assert job.id is not None
    # When 1950..2026 is backfilled
    request = BackfillRequest(start=datetime(1950, 1, 1, tzinfo=UTC), end=datetime(2026, 5, 1, tzinfo=UTC))
    result = backfill(session=session, job_id=job.id, request=request, actor="alice", clock=clock)
    # Then every year has its run, at local midnight (1968-1971 London kept UTC+1 all year round)
    assert result.ticks == 77 and len(result.created) == 77
    ticks = session.scalars(select(JobRun.scheduled_for).where(col(JobRun.job_id) == job.id)).all()
    local = sorted(t.astimezone(ZoneInfo("Europe/London")) for t in ticks if t)
    assert [t.year for t in local] == list(range(1950, 2027))
    assert {(t.month, t.day, t.hour) for t in local} == {(1, 1, 0)}
