"""Backfill: runs for the ticks of a past range, audited, through the same unique ledger as beat."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.clock import Clock
from scheduler.errors import InvalidInput, JobNotRunnable
from scheduler.jobs import get_job, job_schedule
from scheduler.lifecycle import RETRYABLE
from scheduler.limits import SupportedDatetime
from scheduler.models import JobEvent, JobRun, JobStatus, RunTrigger
from scheduler.run_creation import NewRun, create_runs

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

    start: SupportedDatetime = Field(description="first instant of the range (inclusive), from 1900")
    end: SupportedDatetime = Field(description="last instant of the range (inclusive); not in the future")
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
    context = f"backfill {request.mode} {request.start.isoformat()}..{request.end.isoformat()} by {actor}"
    runs: list[NewRun] = []
    if request.mode in (BackfillMode.MISSING, BackfillMode.ALL):
        runs += [NewRun(job_id=job_id, job_type=job.job_type, trigger=RunTrigger.BACKFILL, scheduled_for=tick,
                        preview=request.preview, context=context) for tick in ticks if tick not in existing]
    if request.mode in (BackfillMode.FAILED, BackfillMode.ALL):
        # The tick's ledger entry is taken by the failed run: the new run points back to it.
        runs += [NewRun(job_id=job_id, job_type=job.job_type, trigger=RunTrigger.BACKFILL, retry_of=original.id,
                        preview=request.preview, run_properties=original.run_properties, context=context)
                 for tick in ticks if (original := existing.get(tick)) is not None and original.status in RETRYABLE]
    created = [run.run_id for run in create_runs(session=session, runs=runs, actor=actor, at=now)]
    session.add(JobEvent(job_id=job_id, from_status=job.status, to_status=job.status, at=now, actor=actor,
                         note=f"{context}: {len(created)} runs"))
    session.commit()
    return BackfillResult(ticks=len(ticks), created=created, unchanged=len(ticks) - len(created))
