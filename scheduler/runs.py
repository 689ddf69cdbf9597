"""Run data functions: manual runs with idempotency keys, user actions, listing and sending."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, case, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from scheduler.clock import Clock
from scheduler.db import one_of
from scheduler.dispatch import Dispatcher, Phase, RunStep
from scheduler.errors import (
    BrokerUnavailable,
    InvalidCursor,
    InvalidInput,
    InvalidTransition,
    InvalidValue,
    JobNotRunnable,
    RetryUnavailable,
    RunNotFound,
    SchedulerError,
)
from scheduler.jobs import check_json_field, get_job
from scheduler.jobtypes import JobTypeRegistry
from scheduler.lifecycle import ACTIONS, TERMINAL, allowed_actions, run_ended, transition
from scheduler.limits import (
    DEFAULT_MAX_PROPERTIES_BYTES,
    IDEMPOTENCY_KEY_PATTERN,
    MAX_CURSOR_LENGTH,
    MAX_DB_INT,
    SUPPORTED_FROM,
    SUPPORTED_UNTIL,
    DbId,
)
from scheduler.models import JobRun, JobStatus, RunChunk, RunEvent, RunItem, RunStatus, RunTrigger
from scheduler.outcomes import retry_refusal
from scheduler.run_creation import Idempotency, NewRun, create_run, replay
from scheduler.run_hooks import standard_hooks
from scheduler.settings import Settings

log = logging.getLogger(__name__)


class RunCreate(BaseModel):
    """The wire contract of a manual run request."""

    model_config = ConfigDict(extra="forbid")

    job_id: DbId
    preview: bool = False
    run_properties: dict[str, Any] = Field(
        default_factory=dict, description="the job type's run inputs (see GET /job-types); at most "
        "SCHEDULER_MAX_PROPERTIES_BYTES serialized")


@dataclass(frozen=True, kw_only=True)
class RunFilter:
    status: list[str] | None = None
    job_id: int | None = None
    job_type: str | None = None
    trigger: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    idempotency_key: str | None = None


def create_manual_run(
    *,
    session: Session,
    registry: JobTypeRegistry,
    run_in: RunCreate,
    actor: str,
    clock: Clock,
    idempotency_key: str | None = None,
    request_id: str | None = None,
    settings: Settings | None = None,
    sending: bool = False,
) -> tuple[JobRun, bool]:
    """Record a manual run (``CREATED``); returns ``(run, created)``.

    A repeated ``idempotency_key`` with the same request (job, preview, normalised run properties)
    returns the first run (``created`` false), even once the job is paused; with a different request
    it is refused with :class:`IdempotencyMismatch`, naming what differs. ``request_id`` (the API
    request's) is kept with the run so the worker's log lines show it. ``settings`` bound the run
    properties' size (``max_properties_bytes``). ``sending``: the caller sends a new run with
    :func:`send_created` right after, so it is recorded as sent.
    """
    if idempotency_key is not None and not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, idempotency_key):
        raise InvalidValue("idempotency_key", "must be 1 to 200 visible ASCII characters (no spaces)")
    max_bytes = settings.max_properties_bytes if settings is not None else DEFAULT_MAX_PROPERTIES_BYTES
    check_json_field("run_properties", run_in.run_properties, max_bytes=max_bytes)
    job = get_job(session, run_in.job_id)
    job_type = registry.get(job.job_type)
    run_properties = job_type.validate_run_properties(run_in.run_properties).model_dump(mode="json")
    idempotency = Idempotency(key=idempotency_key, job_id=run_in.job_id, preview=run_in.preview,
                              run_properties=run_properties) if idempotency_key else None
    refusal: SchedulerError | None = None
    if job.status != JobStatus.ACTIVE:
        refusal = JobNotRunnable(run_in.job_id, f"the job is {job.status}")
    elif not job.can_run_manual:
        refusal = JobNotRunnable(run_in.job_id, "manual runs are disabled for this job")
    elif run_in.preview and not job_type.supports_preview:
        refusal = InvalidInput(f"job type {job.job_type} does not support preview", details={"field": "preview"})
    if refusal is not None:
        if idempotency is not None and (earlier := replay(session, idempotency)) is not None:
            return earlier, False
        raise refusal
    new = NewRun(job_id=run_in.job_id, job_type=job.job_type, trigger=RunTrigger.MANUAL, preview=run_in.preview,
                 run_properties=run_properties, request_id=request_id)
    run, created = create_run(session=session, run=new, actor=actor, at=clock.now(), idempotency=idempotency,
                              sending=sending)
    if created:
        session.commit()
    return run, created


def retry_run(
    *, session: Session, run_id: int, actor: str, clock: Clock, request_id: str | None = None
) -> JobRun:
    """A new run (trigger RETRY) of a FAILED or INCOMPLETE run; the job type retries failed items only."""
    original = get_run(session, run_id)
    needs, _ = ACTIONS["retry"]
    if original.status not in needs:
        raise InvalidTransition(f"run {run_id}", original.status, "retry", allowed_actions(original.status))
    if (refusal := retry_refusal(session, original)) is not None:
        raise RetryUnavailable(run_id, refusal)
    job = get_job(session, original.job_id)
    if job.status == JobStatus.ARCHIVED:
        raise JobNotRunnable(job.id or 0, "the job is archived")
    new = NewRun(job_id=original.job_id, job_type=original.job_type, trigger=RunTrigger.RETRY,
                 preview=original.preview, run_properties=original.run_properties, retry_of=original.id,
                 request_id=request_id)
    run, _ = create_run(session=session, run=new, actor=actor, at=clock.now())
    session.commit()
    return run


def act_on_run(
    *, session: Session, run_id: int, action: str, actor: str, clock: Clock, note: str = "",
    settings: Settings | None = None,
) -> JobRun:
    """Submit, delete or cancel a run: a guarded transition, refused with the allowed actions.

    A cancel or delete ends the run: the standard run hooks follow (mail only when given ``settings``).
    """
    if action not in ACTIONS or action == "retry":
        raise InvalidInput(f"unknown run action {action!r}", details={"action": action})
    _, target = ACTIONS[action]
    assert target is not None
    now = clock.now()
    values: dict[str, Any] = {}
    if target is RunStatus.SUBMITTED:
        # Apply starts now: the stale-run clock starts with it.
        values = {"heartbeat_at": now, "chunks_done": 0}
    transition(session, run_id, target, actor=actor, action=action, note=note, at=now, values=values)
    session.commit()
    if target in TERMINAL:
        run_ended(session, run_id, hooks=standard_hooks(settings=settings, clock=clock, actor=actor))
    return get_run(session, run_id)


def get_run(session: Session, run_id: int) -> JobRun:
    run = session.get(JobRun, run_id)
    if run is None:
        raise RunNotFound(run_id)
    session.refresh(run)
    return run


def run_events(session: Session, run_id: int) -> list[RunEvent]:
    stmt = select(RunEvent).where(col(RunEvent.run_id) == run_id).order_by(col(RunEvent.id))
    return list(session.scalars(stmt))


def encode_cursor(created_at: datetime, run_id: int) -> str:
    raw = json.dumps([created_at.isoformat(), run_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The ``(created_at, id)`` a runs cursor holds; :class:`InvalidCursor` for anything the API did not issue."""
    if len(cursor) > MAX_CURSOR_LENGTH or not _BASE64URL.fullmatch(cursor):
        raise InvalidCursor(cursor)
    try:
        created, run_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = datetime.fromisoformat(created)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidCursor(cursor) from exc
    if (moment.tzinfo is None or not SUPPORTED_FROM <= moment <= SUPPORTED_UNTIL
            or type(run_id) is not int or not 1 <= run_id <= MAX_DB_INT):
        raise InvalidCursor(cursor)
    return moment, run_id


def list_runs(
    session: Session, filters: RunFilter, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[JobRun], str | None]:
    """Runs newest first, keyset-paginated on ``(created_at, id)``."""
    stmt = _filtered(select(JobRun), filters)
    if cursor:
        created, run_id = decode_cursor(cursor)
        stmt = stmt.where(
            (col(JobRun.created_at) < created) | ((col(JobRun.created_at) == created) & (col(JobRun.id) < run_id))
        )
    stmt = stmt.order_by(col(JobRun.created_at).desc(), col(JobRun.id).desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        assert last.id is not None
        next_cursor = encode_cursor(last.created_at, last.id)
    return rows, next_cursor


def count_runs(session: Session, filters: RunFilter) -> int:
    return int(session.scalar(_filtered(select(func.count()).select_from(JobRun), filters)) or 0)


def _filtered(stmt: Select[Any], filters: RunFilter) -> Select[Any]:
    if filters.status:
        stmt = stmt.where(col(JobRun.status).in_(filters.status))
    if filters.job_id is not None:
        stmt = stmt.where(col(JobRun.job_id) == filters.job_id)
    if filters.job_type:
        stmt = stmt.where(col(JobRun.job_type) == filters.job_type)
    if filters.trigger:
        stmt = stmt.where(col(JobRun.trigger) == filters.trigger)
    if filters.created_from:
        stmt = stmt.where(col(JobRun.created_at) >= filters.created_from)
    if filters.created_to:
        stmt = stmt.where(col(JobRun.created_at) < filters.created_to)
    if filters.idempotency_key:
        stmt = stmt.where(col(JobRun.idempotency_key) == filters.idempotency_key)
    return stmt


def list_items(
    session: Session, run_id: int, *, outcome: str | None = None, limit: int = 100, after_id: int | None = None
) -> tuple[list[RunItem], str | None]:
    get_run(session, run_id)
    stmt = select(RunItem).where(col(RunItem.run_id) == run_id)
    if outcome:
        stmt = stmt.where(col(RunItem.outcome) == outcome)
    if after_id is not None:
        stmt = stmt.where(col(RunItem.id) > after_id)
    rows = list(session.scalars(stmt.order_by(col(RunItem.id)).limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = str(rows[-1].id)
    return rows, next_cursor


@dataclass(frozen=True)
class ChunkRecords:
    """A run's chunks and the records (items) in them: all chunks, evaluated ones, applied ones."""

    chunks: int = 0
    evaluated: int = 0
    staged: int = 0
    applied: int = 0


def chunk_records(session: Session, run_ids: list[int]) -> dict[int, ChunkRecords]:
    """Per run, from its chunk rows (a few per run): how many records are staged and applied so far."""
    if not run_ids:
        return {}
    evaluated = col(RunChunk.evaluated_at).is_not(None)
    applied = col(RunChunk.applied_at).is_not(None)
    items = col(RunChunk.items)
    stmt = (
        select(col(RunChunk.run_id), func.count(), func.count(col(RunChunk.evaluated_at)),
               func.coalesce(func.sum(case((evaluated, items), else_=0)), 0),
               func.coalesce(func.sum(case((applied, items), else_=0)), 0))
        .where(col(RunChunk.run_id).in_(set(run_ids)))
        .group_by(col(RunChunk.run_id))
    )
    return {int(r[0]): ChunkRecords(int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in session.execute(stmt)}


def progress(run: JobRun, records: ChunkRecords | None = None) -> dict[str, Any]:
    """How far a run is, in records: staged while it evaluates, applied once submitted.

    ``records_total`` is null while chunks remain to be evaluated (the records in them are not counted yet);
    then ``percent`` follows the chunks.
    """
    records = records or ChunkRecords()
    total = run.chunks_total
    chunk_percent = round(100.0 * run.chunks_done / total, 1) if total else (100.0 if run.finished_at else 0.0)
    finished_items = run.summary.get("items") if isinstance(run.summary, dict) else None
    all_evaluated = records.chunks > 0 and records.evaluated == records.chunks
    phase: str | None = None
    if run.status == RunStatus.PROCESSING:
        phase, done = "staging", records.staged
        records_total: int | None = records.staged if all_evaluated else None
    elif run.status == RunStatus.SUBMITTED:
        phase, done, records_total = "applying", records.applied, records.staged
    elif run.finished_at is not None and isinstance(finished_items, dict):
        done = records_total = sum(int(v) for v in finished_items.values() if isinstance(v, int))
    else:
        done, records_total = records.staged, records.staged if all_evaluated else None
    if records_total and run.finished_at is None:
        percent = round(100.0 * min(done, records_total) / records_total, 1)
    else:
        percent = chunk_percent
    return {"chunks_total": total, "chunks_done": run.chunks_done, "percent": percent, "phase": phase,
            "records_done": done, "records_total": records_total}


def send_run(
    *,
    factory: sessionmaker[Session],
    dispatcher: Dispatcher,
    registry: JobTypeRegistry,
    run_id: int,
    clock: Clock,
) -> bool:
    """Send a ``CREATED`` run's plan step and stamp ``enqueued_at``; ``False`` when Redis is down.

    The run is already committed, so a failed send loses nothing: beat's outbox sends it later.
    """
    with factory() as session:
        run = session.get(JobRun, run_id)
        if run is None or run.status != RunStatus.CREATED:
            return False
        job_type = run.job_type
    return bool(send_runs(factory=factory, dispatcher=dispatcher, registry=registry, runs=[(run_id, job_type)],
                          clock=clock))


def send_runs(
    *,
    factory: sessionmaker[Session],
    dispatcher: Dispatcher,
    registry: JobTypeRegistry,
    runs: Sequence[tuple[int, str]],
    clock: Clock,
    at: datetime | None = None,
) -> list[int]:
    """Send the plan step of each ``(run_id, job_type)`` just created, in one Redis round trip, then stamp
    their ``enqueued_at`` (``at``, or the clock's time once sent) in one statement; returns the ids sent
    (none when Redis is down).

    The runs are already committed, so a failed send loses nothing: beat's outbox sends them later.
    """
    if not runs:
        return []
    try:
        dispatcher.send_steps([(registry.get(job_type).queue, RunStep(run_id=run_id, phase=Phase.PLAN))
                               for run_id, job_type in runs])
    except BrokerUnavailable as exc:
        log.warning("%d run(s) recorded but not sent (will be re-sent): %s", len(runs), exc.message,
                    extra={"run_id": runs[0][0]})
        return []
    ids = [run_id for run_id, _ in runs]
    with factory() as session:
        stamp = at or clock.now()
        session.execute(update(JobRun).where(one_of(session, col(JobRun.id), ids)).values(enqueued_at=stamp))
        session.commit()
    return ids


def send_created(
    *,
    factory: sessionmaker[Session],
    dispatcher: Dispatcher | None,
    registry: JobTypeRegistry,
    runs: Sequence[tuple[int, str]],
) -> bool:
    """Send the plan step of each ``(run_id, job_type)`` just committed already stamped sent
    (``create_runs(sending=True)``), in one Redis round trip; ``False`` when not sent (``dispatcher`` is
    ``None``: no broker).

    A send that fails takes the stamp back (``enqueued_at`` null), so beat's outbox sends the runs within
    seconds. Should the process die between its commit and the send, the runs look sent: the outbox sends
    them again once they are :attr:`~scheduler.settings.Settings.outbox_resend_after` old and not started.
    """
    if not runs:
        return False
    if dispatcher is not None:
        try:
            dispatcher.send_steps([(registry.get(job_type).queue, RunStep(run_id=run_id, phase=Phase.PLAN))
                                   for run_id, job_type in runs])
            return True
        except BrokerUnavailable as exc:
            log.warning("%d run(s) recorded but not sent (will be re-sent): %s", len(runs), exc.message,
                        extra={"run_id": runs[0][0]})
    with factory() as session:
        session.execute(update(JobRun).where(one_of(session, col(JobRun.id), [run_id for run_id, _ in runs]),
                                             col(JobRun.status) == RunStatus.CREATED).values(enqueued_at=None))
        session.commit()
    return False


def send_apply(
    *,
    factory: sessionmaker[Session],
    dispatcher: Dispatcher,
    registry: JobTypeRegistry,
    run_id: int,
) -> int:
    """Send an apply step for each chunk of a ``SUBMITTED`` run not yet applied; returns how many."""
    with factory() as session:
        run = session.get(JobRun, run_id)
        if run is None or run.status != RunStatus.SUBMITTED:
            return 0
        queue = registry.get(run.job_type).queue
        chunks = list(
            session.scalars(
                select(col(RunChunk.chunk_no)).where(col(RunChunk.run_id) == run_id, col(RunChunk.applied_at).is_(None))
            )
        )
    # No chunk left to apply: one finalize step moves the run to its final status.
    steps = [RunStep(run_id=run_id, phase=Phase.APPLY, chunk_no=chunk_no) for chunk_no in chunks or [-1]]
    try:
        dispatcher.send_steps([(queue, step) for step in steps])
    except BrokerUnavailable as exc:
        log.warning("run %s submitted but apply not sent (will be re-sent): %s", run_id, exc.message)
        return 0
    return max(len(chunks), 1)


def record_event(session: Session, run_id: int, *, actor: str, note: str, status: str, at: datetime) -> None:
    """An audit note that is not a status change (e.g. a skipped tick or a re-send)."""
    session.execute(
        insert(RunEvent).values(run_id=run_id, from_status=status, to_status=status, at=at, actor=actor, note=note)
    )

