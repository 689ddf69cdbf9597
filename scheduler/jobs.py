"""Job data functions: create (validated, immutable afterwards), list, show, pause, resume, archive."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.clock import Clock
from scheduler.cron import CronSchedule, validate_timezone
from scheduler.cron_hash import job_hash_seed
from scheduler.errors import InvalidInput, InvalidTransition, InvalidValue, JobNameTaken, JobNotFound
from scheduler.jobtypes import JobTypeRegistry
from scheduler.lifecycle import FINISHED
from scheduler.limits import (
    DEFAULT_MAX_PROPERTIES_BYTES,
    MAX_DESCRIPTION_LENGTH,
    MAX_NAME_LENGTH,
    MAX_NOTIFY_EMAILS,
    MAX_WINDOW_SECONDS,
    Text,
    json_problem,
    single_line,
)
from scheduler.models import (
    Job,
    JobEvent,
    JobRun,
    JobStatus,
    MisfirePolicy,
    OverlapPolicy,
    RunStatus,
    name_key,
)
from scheduler.settings import Settings


class NotifyEvent(enum.StrEnum):
    SOURCE_ERROR = "source_error"
    """A run could not read its input."""
    TARGET_ERROR = "target_error"
    """A run could not deliver its output."""
    COMPLETE_ERROR = "complete_error"
    """A run ended INCOMPLETE or FAILED."""
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    PREVIEW_READY = "preview_ready"
    """A run waits at PREVIEW for review."""
    REVIEW_BLOCKING = "review_blocking"
    """A preview awaiting review made the job skip a scheduled tick (mailed once per preview; also to those who
    chose ``preview_ready``)."""


JobAction = Literal["pause", "resume", "archive"]


def check_json_field(field: str, value: Any, *, max_bytes: int) -> None:
    """Refuse a JSON field (job ``properties``, ``run_properties``) that is too large or holds NUL."""
    if (problem := json_problem(value, max_bytes=max_bytes)) is not None:
        where, reason = problem
        raise InvalidValue(f"{field}.{where}" if where else field, reason, limit_bytes=max_bytes)


class JobCreate(BaseModel):
    """The wire contract of a job definition."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=MAX_NAME_LENGTH,
                       description="unique among live jobs, ignoring case and Unicode form")
    job_type: Text = Field(min_length=1, max_length=64)
    status: JobStatus = JobStatus.ACTIVE
    description: Text = Field(default="", max_length=MAX_DESCRIPTION_LENGTH)
    cron: Text | None = Field(default=None, max_length=200,
                              description="Cron expression; empty for manual-only jobs")
    timezone: Text = Field(default="UTC", max_length=64, description="IANA time zone, e.g. Europe/London")
    properties: dict[str, Any] = Field(
        default_factory=dict, description="the job type's custom fields (see GET /job-types); at most "
        "SCHEDULER_MAX_PROPERTIES_BYTES serialized")
    notify_emails: list[EmailStr] = Field(default_factory=list, max_length=MAX_NOTIFY_EMAILS)
    notify_on: list[NotifyEvent] = Field(default_factory=list, max_length=len(NotifyEvent))
    can_run_manual: bool = True
    requires_review: bool = False
    review_empty_previews: bool = Field(
        default=False, description="A preview with nothing to apply waits for review anyway; by default it "
        "completes at once as 'nothing to do'")
    misfire_policy: MisfirePolicy = MisfirePolicy.ONCE
    catchup_window: int = Field(default=3600, ge=0, le=MAX_WINDOW_SECONDS, description="seconds")
    max_catchup_runs: int = Field(default=10, ge=1, le=1000)
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP
    max_runtime: int | None = Field(default=None, gt=0, le=MAX_WINDOW_SECONDS, description="seconds")
    pause_on_failure: int | None = Field(
        default=None, ge=1, le=1000, description="Pause the job after this many consecutive FAILED runs; empty: never"
    )

    @field_validator("status")
    @classmethod
    def _not_archived(cls, value: JobStatus) -> JobStatus:
        if value is JobStatus.ARCHIVED:
            raise ValueError("a job is created ACTIVE or PAUSED")
        return value

    @field_validator("name")
    @classmethod
    def _strip_name(cls, value: str) -> str:
        value = single_line(value.strip())
        if not value:
            raise ValueError("name must not be blank")
        return value

    @field_validator("notify_on")
    @classmethod
    def _events_once(cls, value: list[NotifyEvent]) -> list[NotifyEvent]:
        return list(dict.fromkeys(value))


class JobPublic(BaseModel):
    id: int
    name: str
    job_type: str
    status: JobStatus
    description: str
    cron: str | None
    timezone: str
    properties: dict[str, Any]
    notify_emails: list[str]
    notify_on: list[NotifyEvent]
    can_run_manual: bool
    requires_review: bool
    review_empty_previews: bool = False
    misfire_policy: MisfirePolicy
    catchup_window: int
    max_catchup_runs: int
    overlap_policy: OverlapPolicy
    max_runtime: int | None
    pause_on_failure: int | None = None
    created_at: datetime
    created_by: str
    next_fire_at: datetime | None
    last_scheduled_for: datetime | None
    schedule_description: str | None = None
    cron_expanded: str | None = Field(
        default=None, description="the cron the schedule iterates: `cron` with each H field replaced by its values"
    )

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        schedule = job_schedule(job)
        return cls.model_validate({
            **job.model_dump(),
            "schedule_description": schedule.describe() if schedule else None,
            "cron_expanded": schedule.expanded if schedule else None,
        })


def job_schedule(job: Job) -> CronSchedule | None:
    """The job's parsed schedule (its ``H`` fields spread by its name); None for a manual-only job."""
    if not job.cron:
        return None
    return CronSchedule.parse(job.cron, job.timezone, seed=job_hash_seed(job.name))


def create_job(
    *, session: Session, registry: JobTypeRegistry, job_in: JobCreate, actor: str, clock: Clock,
    settings: Settings | None = None,
) -> Job:
    """Validate and insert a job; nothing is written when any part is invalid.

    ``settings``: the installation's, which the properties must also satisfy (e.g. the ERP allow-lists)
    and whose ``max_properties_bytes`` bounds them; the API, the CLI and ``scheduler up`` always pass them.
    Job types check them again at run time.
    """
    max_bytes = settings.max_properties_bytes if settings is not None else DEFAULT_MAX_PROPERTIES_BYTES
    check_json_field("properties", job_in.properties, max_bytes=max_bytes)
    job_type = registry.get(job_in.job_type)
    properties = job_type.validate_properties(job_in.properties, settings=settings)
    validate_timezone(job_in.timezone)
    now = clock.now()
    next_fire: datetime | None = None
    if job_in.cron:
        schedule = CronSchedule.parse(job_in.cron, job_in.timezone, seed=job_hash_seed(job_in.name))
        next_fire = schedule.next_after(now)
    elif not job_in.can_run_manual:
        raise InvalidInput(
            "a job without a cron schedule must allow manual runs", details={"field": "can_run_manual"}
        )
    if job_in.requires_review and not job_type.supports_preview:
        raise InvalidInput(f"job type {job_type.name} does not support review", details={})
    key = name_key(job_in.name)
    if session.scalar(select(col(Job.id)).where(col(Job.name_key) == key, col(Job.status) != JobStatus.ARCHIVED)):
        raise JobNameTaken(job_in.name)
    job = Job(
        **job_in.model_dump(exclude={"properties", "notify_emails", "notify_on", "cron"}),
        cron=job_in.cron or None,
        properties=properties.model_dump(mode="json"),
        notify_emails=[str(e) for e in job_in.notify_emails],
        notify_on=[str(e) for e in job_in.notify_on],
        created_at=now,
        created_by=actor,
        next_fire_at=next_fire,
    )
    session.add(job)
    try:
        session.flush()
    except IntegrityError as exc:
        # Another request took the name between the check and the insert: the index decides.
        session.rollback()
        raise JobNameTaken(job_in.name) from exc
    assert job.id is not None
    session.add(JobEvent(job_id=job.id, from_status=None, to_status=job.status, at=now, actor=actor, note="created"))
    session.commit()
    return job


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


def list_jobs(
    session: Session,
    *,
    include_archived: bool = False,
    job_type: str | None = None,
    status: str | None = None,
    limit: int = 100,
    after_id: int | None = None,
) -> list[Job]:
    stmt = select(Job).order_by(col(Job.id)).limit(limit)
    if not include_archived and status != JobStatus.ARCHIVED:
        stmt = stmt.where(col(Job.status) != JobStatus.ARCHIVED)
    if job_type:
        stmt = stmt.where(col(Job.job_type) == job_type)
    if status:
        stmt = stmt.where(col(Job.status) == status)
    if after_id is not None:
        stmt = stmt.where(col(Job.id) > after_id)
    return list(session.scalars(stmt))


JOB_ACTIONS: dict[JobAction, tuple[tuple[JobStatus, ...], JobStatus]] = {
    "pause": ((JobStatus.ACTIVE,), JobStatus.PAUSED),
    "resume": ((JobStatus.PAUSED,), JobStatus.ACTIVE),
    "archive": ((JobStatus.ACTIVE, JobStatus.PAUSED), JobStatus.ARCHIVED),
}


def job_actions(status: str) -> list[JobAction]:
    return [name for name, (sources, _) in JOB_ACTIONS.items() if status in sources]


def change_job_status(
    *, session: Session, job_id: int, action: JobAction, actor: str, clock: Clock, note: str = ""
) -> Job:
    """Pause, resume or archive a job, audited. Resuming schedules from now on, not the past."""
    job = get_job(session, job_id)
    sources, target = JOB_ACTIONS[action]
    if job.status not in sources:
        raise InvalidTransition(f"job {job_id}", job.status, action, job_actions(job.status))
    now = clock.now()
    previous = job.status
    job.status = target
    schedule = job_schedule(job)
    if target is JobStatus.ACTIVE and schedule is not None:
        job.next_fire_at = schedule.next_after(now)
    elif target is not JobStatus.ACTIVE:
        job.next_fire_at = None
    session.add(JobEvent(job_id=job_id, from_status=previous, to_status=target, at=now, actor=actor, note=note))
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise JobNameTaken(job.name) from exc
    return job


def pause_if_failing(*, session: Session, job_id: int, actor: str, clock: Clock) -> bool:
    """Pause an ACTIVE job whose latest ``pause_on_failure`` finished runs all FAILED; ``True`` if paused.

    Called when a run ends FAILED. The job row is locked first (PostgreSQL), so two runs failing at
    once pause the job once; the audit note carries the last run's error.
    """
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    limit = job.pause_on_failure if job is not None else None
    if job is None or not limit or job.status != JobStatus.ACTIVE:
        session.rollback()
        return False
    latest = session.execute(
        select(col(JobRun.status), col(JobRun.error))
        .where(col(JobRun.job_id) == job_id, col(JobRun.status).in_(FINISHED))
        .order_by(col(JobRun.finished_at).desc().nulls_last(), col(JobRun.id).desc())
        .limit(limit)
    ).all()
    if len(latest) < limit or any(status != RunStatus.FAILED for status, _ in latest):
        session.rollback()
        return False
    last_error = (latest[0].error or "no error recorded").splitlines()[0]
    note = f"paused after {limit} consecutive failed runs: {last_error}"[:2000]
    change_job_status(session=session, job_id=job_id, action="pause", actor=actor, clock=clock, note=note)
    return True


def job_events(session: Session, job_id: int) -> list[JobEvent]:
    stmt = select(JobEvent).where(col(JobEvent.job_id) == job_id).order_by(col(JobEvent.id))
    return list(session.scalars(stmt))
