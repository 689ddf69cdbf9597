"""Wire models of the API answers that are not data-layer models (``JobCreate``, ``JobPublic``, ``RunCreate``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.jobs import JobAction, JobPublic, job_actions, job_events
from scheduler.lifecycle import RETRYABLE, allowed_actions, item_counts
from scheduler.limits import MAX_NOTE_LENGTH, Text
from scheduler.models import (
    ApiKey,
    ApiRole,
    ItemOutcome,
    Job,
    JobEvent,
    JobRun,
    JobStatus,
    RunEvent,
    RunItem,
    RunStatus,
    RunTrigger,
)
from scheduler.outcomes import outcome_line
from scheduler.review_blocks import review_block
from scheduler.runs import progress, run_events

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` for the next page (null: no more)."""

    items: list[T]
    next_cursor: str | None = None


class ActionNote(BaseModel):
    """Optional body of a job or run action: why, for the audit trail."""

    model_config = ConfigDict(extra="forbid")

    note: Text = Field(default="", max_length=MAX_NOTE_LENGTH)


S = TypeVar("S", JobStatus, RunStatus)
RunAction = Literal["submit", "delete", "cancel", "retry"]


class StatusEvent(BaseModel, Generic[S]):
    """One entry of an audit trail."""

    from_status: S | None
    to_status: S
    at: datetime
    actor: str
    note: str


def job_event(event: JobEvent) -> StatusEvent[JobStatus]:
    return StatusEvent[JobStatus].model_validate(event, from_attributes=True)


def run_event(event: RunEvent) -> StatusEvent[RunStatus]:
    return StatusEvent[RunStatus].model_validate(event, from_attributes=True)


class AwaitingReview(BaseModel):
    """A preview of the job awaiting review, and the scheduled ticks it has made the job skip."""

    run_id: int
    awaiting_since: datetime | None = Field(description="when the run stopped at PREVIEW")
    skipped_ticks: int = Field(description="scheduled ticks the job skipped while this preview waits")
    first_skipped: datetime | None
    last_skipped: datetime | None


class JobDetail(JobPublic):
    """A job with its audit trail, the actions its status allows and the preview holding it up, if any."""

    events: list[StatusEvent[JobStatus]]
    actions: list[JobAction] = Field(description="what the job's status allows")
    awaiting_review: AwaitingReview | None = Field(
        default=None, description="the job's preview awaiting review: while it waits, the overlap policy skips "
        "the job's scheduled ticks (each noted on that run, counted in scheduler_missed_ticks_total"
        "{reason=\"awaiting_review\"})")

    @classmethod
    def build(cls, session: Session, job: Job) -> JobDetail:
        assert job.id is not None
        public = JobPublic.of(job)
        events = [job_event(e) for e in job_events(session, job.id)]
        block = review_block(session, job.id)
        return cls(**public.model_dump(), events=events, actions=job_actions(job.status),
                   awaiting_review=AwaitingReview(**block.as_dict()) if block is not None else None)


class JobTypeTemplate(BaseModel):
    """An installed job type and the JSON schemas of its custom fields."""

    name: str
    label: str
    queue: str
    description: str
    supports_preview: bool
    job_properties: dict[str, Any] = Field(description="JSON schema of the job's `properties`")
    run_properties: dict[str, Any] = Field(description="JSON schema of a manual run's `run_properties`")


class FireTime(BaseModel):
    utc: str = Field(description="the fire instant in UTC, e.g. 2026-03-29T01:00:00Z")
    local: str = Field(description="the same instant in the job's zone, e.g. 2026-03-29T03:00:00+02:00")
    dst_change: bool = Field(description="the zone's UTC offset changed since the previous fire")


class NextFires(BaseModel):
    description: str = Field(description="the schedule in words")
    timezone: str
    cron_expanded: str | None = Field(
        default=None, description="the cron the fires come from: the job's cron with each H field replaced"
    )
    fires: list[FireTime]


class RunProgress(BaseModel):
    chunks_total: int
    chunks_done: int
    percent: float


class RunPublic(BaseModel):
    """A run's common columns, as in the run list."""

    id: int
    job_id: int
    job_name: str
    job_type: str
    trigger: RunTrigger
    status: RunStatus
    preview: bool
    run_properties: dict[str, Any]
    idempotency_key: str | None
    scheduled_for: datetime | None
    created_at: datetime
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    created_by: str
    worker: str | None
    attempt: int
    retry_of: int | None
    request_id: str | None = Field(default=None, description="the X-Request-Id of the API request that created it")
    summary: dict[str, Any]
    error: str | None
    progress: RunProgress
    outcome: str = Field(description="what became of the run, in one line: 'nothing to do', "
                                     "'applied 1,204 items, 3 failed: ERP target refused', …")
    item_counts: dict[str, int] = Field(description="run items per outcome: planned, ok, error, skipped")
    reasons: dict[str, dict[str, int]] = Field(
        description="skipped and failed (error) items counted by reason, e.g. {'skipped': {'paid since preview': 12}}"
    )
    retry_unavailable: str | None = Field(
        default=None, description="why a FAILED or INCOMPLETE run offers no retry (a retry would redo nothing)"
    )
    actions: list[RunAction] = Field(description="what the run's status allows")

    @classmethod
    def of(cls, run: JobRun, job_name: str, counts: dict[str, int] | None = None) -> RunPublic:
        fields = run.model_dump(exclude={"chunks_total", "chunks_done", "idempotency_fingerprint"})
        summary = {**run.summary, "items": counts} if counts is not None else run.summary
        refusal = summary.get("retry_unavailable")
        actions = [a for a in allowed_actions(run.status) if not (a == "retry" and refusal)]
        return cls(**fields, job_name=job_name, progress=RunProgress(**progress(run)),
                   outcome=outcome_line(run.status, summary, run.error),
                   item_counts=dict(summary.get("items") or {}), reasons=dict(summary.get("reasons") or {}),
                   retry_unavailable=refusal if run.status in RETRYABLE else None, actions=actions)


class RunDetail(RunPublic):
    """A run with its per-outcome item counts (read now) and its audit trail."""

    events: list[StatusEvent[RunStatus]]

    @classmethod
    def build(cls, session: Session, run: JobRun) -> RunDetail:
        assert run.id is not None
        public = RunPublic.of(run, job_names(session, [run.job_id]).get(run.job_id, ""),
                              counts=item_counts(session, run.id))
        return cls(**public.model_dump(), events=[run_event(e) for e in run_events(session, run.id)])


class BatchRunPublic(BaseModel):
    """One entry of a batch's answer: its run, created now or by an earlier request with its key."""

    id: int
    job_id: int
    idempotency_key: str
    status: RunStatus
    created: bool = Field(description="false: the key was used before for the same request; this is that run")


class RunBatchPublic(BaseModel):
    """A batch's runs, in the order asked."""

    created: int = Field(description="how many runs this request created")
    runs: list[BatchRunPublic]


class RunItemPublic(BaseModel):
    """A per-type detail row of a run."""

    id: int
    key: str
    chunk_no: int
    outcome: ItemOutcome
    detail: dict[str, Any]
    applied_at: datetime | None

    @classmethod
    def of(cls, item: RunItem) -> RunItemPublic:
        assert item.id is not None
        return cls(id=item.id, key=item.item_key, chunk_no=item.chunk_no, outcome=item.outcome,
                   detail=item.detail, applied_at=item.applied_at)


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=100)
    role: Annotated[ApiRole, BeforeValidator(lambda v: v.strip().lower() if isinstance(v, str) else v)] = (
        ApiRole.VIEWER)


class KeyPublic(BaseModel):
    id: int
    name: str
    prefix: str
    role: ApiRole
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    revoked_by: str | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyPublic:
        return cls.model_validate(key.model_dump(exclude={"token_hash"}))


class KeyCreated(KeyPublic):
    token: str = Field(description="the key itself; it is shown only in this answer")


def job_names(session: Session, job_ids: list[int]) -> dict[int, str]:
    if not job_ids:
        return {}
    rows = session.execute(select(col(Job.id), col(Job.name)).where(col(Job.id).in_(set(job_ids))))
    return {job_id: name for job_id, name in rows.all() if job_id is not None}


def iso_utc(moment: datetime) -> str:
    """ISO-8601 in UTC with ``Z``, as every timestamp on the wire."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
