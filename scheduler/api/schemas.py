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
from scheduler.money import amounts
from scheduler.outcomes import outcome_line
from scheduler.review_blocks import review_block
from scheduler.run_creation import creation_event
from scheduler.runs import ChunkRecords, chunk_records, progress, run_events

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
    percent: float = Field(description="records done of records_total when known, else chunks done of chunks_total")
    phase: Literal["staging", "applying"] | None = Field(
        default=None, description="staging: records evaluated so far; applying: records applied so far")
    records_done: int = Field(default=0, description="records (items) staged, applied or finished so far")
    records_total: int | None = Field(
        default=None, description="records the run holds; null while chunks remain to be evaluated")


class MoneyAmount(BaseModel):
    """An amount of a run's summary or an item's detail, in its currency's decimals."""

    field: str = Field(description="the summary or detail field it comes from, e.g. fees_total or money")
    name: str = Field(description="what it is: the field, or the name of a `money` total, e.g. late_fees")
    amount: str = Field(description="a decimal string in the currency's decimals, e.g. 2500.00")
    currency: str = Field(description="ISO 4217 code")
    display: str = Field(description="as people read it, e.g. EUR 2,500.00")

    @classmethod
    def all_of(cls, values: dict[str, Any], currency: str) -> list[MoneyAmount]:
        return [cls(field=a.field, name=a.name, amount=str(a.money.rounded), currency=a.money.currency,
                    display=a.money.display()) for a in amounts(values, currency)]


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
    amounts: list[MoneyAmount] = Field(
        default_factory=list, description="the summary's amounts of money with their currency, formatted")
    actions: list[RunAction] = Field(description="what the run's status allows")

    @classmethod
    def of(cls, run: JobRun, job_name: str, *, currency: str, counts: dict[str, int] | None = None,
           records: ChunkRecords | None = None) -> RunPublic:
        fields = run.model_dump(exclude={"chunks_total", "chunks_done", "idempotency_fingerprint"})
        summary = {**run.summary, "items": counts} if counts is not None else run.summary
        refusal = summary.get("retry_unavailable")
        actions = [a for a in allowed_actions(run.status) if not (a == "retry" and refusal)]
        return cls(**fields, job_name=job_name, progress=RunProgress(**progress(run, records)),
                   outcome=outcome_line(run.status, summary, run.error),
                   item_counts=dict(summary.get("items") or {}), reasons=dict(summary.get("reasons") or {}),
                   retry_unavailable=refusal if run.status in RETRYABLE else None,
                   amounts=MoneyAmount.all_of(run.summary or {}, currency), actions=actions)

    @classmethod
    def page(cls, session: Session, runs: list[JobRun], *, currency: str) -> list[RunPublic]:
        """The runs of a list page: job names and chunk records read once for all of them."""
        names = job_names(session, [r.job_id for r in runs])
        records = chunk_records(session, [r.id for r in runs if r.id is not None])
        return [cls.of(r, names.get(r.job_id, ""), currency=currency, records=records.get(r.id or 0)) for r in runs]


class RunDetail(RunPublic):
    """A run with its per-outcome item counts (read now) and its audit trail."""

    events: list[StatusEvent[RunStatus]]

    @classmethod
    def build(cls, session: Session, run: JobRun, *, currency: str) -> RunDetail:
        assert run.id is not None
        names = job_names(session, [run.job_id])
        records = chunk_records(session, [run.id]).get(run.id)
        public = RunPublic.of(run, names.get(run.job_id, ""), currency=currency, counts=item_counts(session, run.id),
                              records=records)
        return cls(**public.model_dump(), events=[run_event(e) for e in run_events(session, run.id)])

    @classmethod
    def created(cls, run: JobRun, job_name: str, *, currency: str) -> RunDetail:
        """A run just created, from its row and nothing read again: no items, no chunks, one event."""
        public = RunPublic.of(run, job_name, currency=currency, counts={})
        return cls(**public.model_dump(), events=[run_event(creation_event(run))])


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
    amounts: list[MoneyAmount] = Field(
        default_factory=list, description="the detail's amounts of money with their currency, formatted")
    applied_at: datetime | None

    @classmethod
    def of(cls, item: RunItem, *, currency: str) -> RunItemPublic:
        assert item.id is not None
        return cls(id=item.id, key=item.item_key, chunk_no=item.chunk_no, outcome=item.outcome,
                   detail=item.detail, amounts=MoneyAmount.all_of(item.detail or {}, currency),
                   applied_at=item.applied_at)


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
