"""SQLModel tables of the core: jobs, runs, their audit trails, items, chunks, the beat lease, keys, sessions."""

from __future__ import annotations

import enum
import unicodedata
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Integer, String, UniqueConstraint, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapper
from sqlmodel import Field, SQLModel

from scheduler.clock import utcnow
from scheduler.db import UTCDateTime


class JobStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    """Fires on its schedule and accepts manual runs."""
    PAUSED = "PAUSED"
    """Fires nothing and refuses manual runs until resumed."""
    ARCHIVED = "ARCHIVED"
    """Hidden and inert; its history is kept."""


class MisfirePolicy(enum.StrEnum):
    SKIP = "SKIP"
    """Missed ticks are counted and logged, none is run."""
    ONCE = "ONCE"
    """One run for the latest missed tick within the catch-up window."""
    ALL = "ALL"
    """One run per missed tick within the window, up to ``max_catchup_runs``."""


class OverlapPolicy(enum.StrEnum):
    SKIP = "SKIP"
    """No new run while one of the same job is active; the skip is recorded."""
    BUFFER_ONE = "BUFFER_ONE"
    """At most one run waits while another is active."""
    ALLOW = "ALLOW"
    """Runs may overlap freely."""


class RunTrigger(enum.StrEnum):
    SCHEDULED = "SCHEDULED"
    """Beat created it for a tick of the job's schedule."""
    MANUAL = "MANUAL"
    """A user or a service asked for it."""
    RETRY = "RETRY"
    """A retry of a FAILED or INCOMPLETE run's failed items."""
    BACKFILL = "BACKFILL"
    """A backfill created it for a past tick."""


class RunStatus(enum.StrEnum):
    CREATED = "CREATED"
    """Recorded, not yet taken by a worker."""
    PROCESSING = "PROCESSING"
    """A worker evaluates and stages the run's effects; nothing is applied."""
    PREVIEW = "PREVIEW"
    """Staged effects wait for review: submit or delete."""
    SUBMITTED = "SUBMITTED"
    """Staged effects are being applied."""
    COMPLETED = "COMPLETED"
    """Every item applied."""
    INCOMPLETE = "INCOMPLETE"
    """Some items applied, some errored."""
    FAILED = "FAILED"
    """Nothing applied; ``error`` says why."""
    CANCELLED = "CANCELLED"
    """A created run cancelled before it started."""
    DELETED = "DELETED"
    """A preview deleted; the record stays for audit."""


class ItemOutcome(enum.StrEnum):
    PLANNED = "planned"
    """Staged, not applied yet."""
    OK = "ok"
    """Applied."""
    ERROR = "error"
    """Not applied; the detail says why."""
    SKIPPED = "skipped"
    """Not applied on purpose (e.g. the account paid since the preview)."""


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class Job(SQLModel, table=True):
    """A system job. Its definition is immutable once created; only its status changes."""

    __tablename__ = "job"
    __table_args__ = (
        # Names are unique among live jobs after NFC and case folding (``name_key``).
        Index(
            "uq_job_name_key_live",
            "name_key",
            unique=True,
            sqlite_where=text("status != 'ARCHIVED'"),
            postgresql_where=text("status != 'ARCHIVED'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(200), nullable=False))
    name_key: str = Field(default="", sa_column=Column(String(600), nullable=False))
    """The name after Unicode NFC and case folding: what uniqueness compares."""
    job_type: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    status: str = Field(default=JobStatus.ACTIVE, sa_column=Column(String(16), nullable=False))
    description: str = ""
    cron: str | None = None
    timezone: str = "UTC"
    properties: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    notify_emails: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    notify_on: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    can_run_manual: bool = True
    requires_review: bool = False
    review_empty_previews: bool = False
    """A preview with nothing to apply waits for review anyway; else it completes at once as "nothing to do"."""
    misfire_policy: str = MisfirePolicy.ONCE
    catchup_window: int = 3600
    max_catchup_runs: int = 10
    overlap_policy: str = OverlapPolicy.SKIP
    max_runtime: int | None = None
    pause_on_failure: int | None = None
    """Pause the job after this many consecutive FAILED runs; ``None``: never."""
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    created_by: str = "system"
    next_fire_at: datetime | None = _ts(index=True)
    last_scheduled_for: datetime | None = _ts()


def name_key(name: str) -> str:
    """A job name's identity: the name in Unicode NFC, case-folded.

    Live job names are unique by it (``Café`` and ``CAFE\u0301`` are one name), and it seeds the
    job's hashed cron fields (``H``), so the same name lands on the same slot however it was typed.
    """
    return unicodedata.normalize("NFC", name).casefold()


@event.listens_for(Job, "before_insert")
def _fill_name_key(_mapper: Mapper[Job], _connection: Connection, job: Job) -> None:
    job.name_key = name_key(job.name)


class JobEvent(SQLModel, table=True):
    """Audit of every job status change: who, when, why."""

    __tablename__ = "job_event"

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", index=True)
    from_status: str | None = None
    to_status: str
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    actor: str
    note: str = ""


class JobRun(SQLModel, table=True):
    """One execution of a job."""

    __tablename__ = "job_run"
    __table_args__ = (
        UniqueConstraint("job_id", "scheduled_for", name="uq_run_job_tick"),
        Index("ix_run_status_created", "status", "created_at"),
        Index("ix_run_job_created", "job_id", "created_at"),
        Index("ix_run_status_finished", "status", "finished_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id")
    job_type: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    trigger: str = RunTrigger.MANUAL
    scheduled_for: datetime | None = _ts()
    idempotency_key: str | None = Field(default=None, sa_column=Column(String(200), unique=True))
    idempotency_fingerprint: str | None = Field(default=None, sa_column=Column(String(64)))
    """SHA-256 of the normalised request that used ``idempotency_key`` (job, preview, run properties)."""
    status: str = Field(default=RunStatus.CREATED, sa_column=Column(String(16), nullable=False))
    preview: bool = False
    run_properties: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_by: str = "system"
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    enqueued_at: datetime | None = _ts()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    heartbeat_at: datetime | None = _ts()
    worker: str | None = None
    attempt: int = 0
    chunks_total: int = 0
    chunks_done: int = 0
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str | None = None
    retry_of: int | None = Field(default=None, foreign_key="job_run.id")
    request_id: str | None = Field(default=None, sa_column=Column(String(128)))
    """The API request that created the run (``X-Request-Id``); its worker's log lines carry it."""


class RunEvent(SQLModel, table=True):
    """Append-only audit of every run transition."""

    __tablename__ = "run_event"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="job_run.id", index=True)
    from_status: str | None = None
    to_status: str
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    actor: str
    note: str = ""


class RunChunk(SQLModel, table=True):
    """One unit of a run's work (a keyset range, a file, a batch), one queue message per phase."""

    __tablename__ = "run_chunk"

    run_id: int = Field(foreign_key="job_run.id", primary_key=True)
    chunk_no: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    evaluated_at: datetime | None = _ts()
    applied_at: datetime | None = _ts()
    items: int = 0
    error: str | None = None


class RunItem(SQLModel, table=True):
    """A per-type detail row: what a run staged and what became of it."""

    __tablename__ = "run_item"
    __table_args__ = (
        UniqueConstraint("run_id", "item_key", name="uq_item_run_key"),
        Index("ix_item_run_chunk", "run_id", "chunk_no"),
        Index("ix_item_run_outcome", "run_id", "outcome"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="job_run.id")
    chunk_no: int = 0
    item_key: str = Field(sa_column=Column(String(200), nullable=False))
    outcome: str = ItemOutcome.PLANNED
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    applied_at: datetime | None = _ts()


class BeatLease(SQLModel, table=True):
    """The beat leader lease; ``epoch`` grows with every change of holder (fencing token)."""

    __tablename__ = "beat_lease"

    name: str = Field(primary_key=True)
    holder: str
    epoch: int = 0
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class ApiRole(enum.StrEnum):
    VIEWER = "viewer"
    """Reads jobs and runs."""
    OPERATOR = "operator"
    """Also creates runs and acts on them."""
    ADMIN = "admin"
    """Also creates, pauses and archives jobs and manages keys."""


class ApiKey(SQLModel, table=True):
    """An API key, stored as a SHA-256 hash; the token is shown once at creation. Names are unique."""

    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(100), nullable=False, unique=True))
    prefix: str = Field(sa_column=Column(String(16), nullable=False, index=True))
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    role: str = ApiRole.VIEWER
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    created_by: str = Field(default="unknown", sa_column=Column(String(200), nullable=False,
                                                                server_default="unknown"))
    revoked_at: datetime | None = _ts()
    revoked_by: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))


class ApiSession(SQLModel, table=True):
    """A page session. The cookie holds a random id; only its SHA-256 hash is stored, with the CSRF token's."""

    __tablename__ = "api_session"

    id_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    key_id: int = Field(foreign_key="api_key.id", index=True)
    csrf_hash: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))


class RefusedRequest(SQLModel, table=True):
    """A ``request_run`` message the scheduler refused: why, and what it asked for (secrets masked).

    Kept for operators (``GET /api/v1/refused-requests``) for ``SCHEDULER_REFUSED_REQUESTS_RETENTION_DAYS``.
    """

    __tablename__ = "refused_request"

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    reason: str = Field(sa_column=Column(String(64), nullable=False))
    """The refusal's code: ``job_not_found``, ``invalid_properties``, ``invalid_message`` …"""
    message: str = Field(sa_column=Column(String(1000), nullable=False))
    """Why, in one line for a person."""
    job: str | None = Field(default=None, sa_column=Column(String(200)))
    """The job the sender named (an id or a name), as sent."""
    idempotency_key: str | None = Field(default=None, sa_column=Column(String(200), index=True))
    message_id: str | None = Field(default=None, sa_column=Column(String(64)))
    """Dramatiq's id of the refused message."""
    body: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    """The message's arguments, secret-looking values masked, bounded in size."""
