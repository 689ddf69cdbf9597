"""Backfill: runs for the ticks of a past range, audited, through the same unique ledger as beat."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.clock import Clock
from scheduler.errors import InvalidInput, JobNotRunnable
from scheduler.jobs import get_job, job_schedule
from scheduler.ledger import insert_tick_runs
from scheduler.models import JobEvent, JobRun, JobStatus, RunEvent, RunStatus, RunTrigger

MAX_BACKFILL_RUNS = 1000


class BackfillMode(enum.StrEnum):
    MISSING = "MISSING"
    """Ticks that have no run at all."""
    FAILED = "FAILED"
    """Ticks whose run ended FAILED or INCOMPLETE: a new run retries them."""
    ALL = "ALL"
    """Both: every tick of the range that has no successful or active run."""


class BackfillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime = Field(description="first instant of the range (inclusive)")
    end: AwareDatetime = Field(description="last instant of the range (inclusive); not in the future")
    mode: BackfillMode = BackfillMode.MISSING
    preview: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> BackfillRequest:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self


@dataclass(frozen=True, kw_only=True)
class BackfillResult:
    ticks: int
    created: list[int]
    unchanged: int


def backfill(
    *, session: Session, job_id: int, request: BackfillRequest, actor: str, clock: Clock
) -> BackfillResult:
    """Create runs for the job's ticks in ``[start, end]`` per ``mode``; never a second run for a tick."""
    job = get_job(session, job_id)
    if job.status == JobStatus.ARCHIVED:
        raise JobNotRunnable(job_id, "the job is archived")
    schedule = job_schedule(job)
    if schedule is None:
        raise InvalidInput(f"job {job_id} has no schedule to backfill", details={"job_id": job_id})
    now = clock.now()
    if request.end > now:
        raise InvalidInput("a backfill range must end in the past", details={"end": request.end.isoformat()})
    ticks: list[datetime] = []
    for tick in schedule.fires_between(request.start - timedelta(microseconds=1), request.end):
        ticks.append(tick)
        if len(ticks) > MAX_BACKFILL_RUNS:
            raise InvalidInput(
                f"the range holds more than {MAX_BACKFILL_RUNS} ticks; backfill a shorter range",
                details={"max_runs": MAX_BACKFILL_RUNS},
            )
    existing = {
        run.scheduled_for: run
        for run in session.scalars(
            select(JobRun).where(
                col(JobRun.job_id) == job_id,
                col(JobRun.scheduled_for) >= request.start,
                col(JobRun.scheduled_for) <= request.end,
            )
        )
    }
    note = f"backfill {request.mode} {request.start.isoformat()}..{request.end.isoformat()} by {actor}"
    created: list[int] = []
    if request.mode in (BackfillMode.MISSING, BackfillMode.ALL):
        missing = [t for t in ticks if t not in existing]
        created += [run_id for run_id, _ in insert_tick_runs(
            session, job_id=job_id, job_type=job.job_type, ticks=missing, trigger=RunTrigger.BACKFILL,
            actor=actor, at=now, note=note, preview=request.preview,
        )]
    if request.mode in (BackfillMode.FAILED, BackfillMode.ALL):
        failed = [r for t in ticks if (r := existing.get(t)) is not None
                  and r.status in (RunStatus.FAILED, RunStatus.INCOMPLETE)]
        for original in failed:
            # The tick's ledger entry is taken by the failed run: the new run points back to it.
            run = JobRun(job_id=job_id, job_type=job.job_type, trigger=RunTrigger.BACKFILL, retry_of=original.id,
                         preview=request.preview, run_properties=original.run_properties, created_by=actor,
                         created_at=now)
            session.add(run)
            session.flush()
            assert run.id is not None
            session.add(RunEvent(run_id=run.id, from_status=None, to_status=RunStatus.CREATED, at=now, actor=actor,
                                 note=f"{note}: retries run {original.id} of tick {original.scheduled_for}"))
            created.append(run.id)
    session.add(JobEvent(job_id=job_id, from_status=job.status, to_status=job.status, at=now, actor=actor,
                         note=f"{note}: {len(created)} runs"))
    session.commit()
    return BackfillResult(ticks=len(ticks), created=created, unchanged=len(ticks) - len(created))
