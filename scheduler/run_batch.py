"""Manual runs in bulk: up to :data:`MAX_BATCH_RUNS` runs in one request, one transaction, set-based.

Each entry carries its own idempotency key, as strict as a single request's ``Idempotency-Key``: a key
used before with the same request answers the run it created (``created`` false); a key used before with
a different request refuses the **whole batch** with ``idempotency_mismatch`` (nothing is created, the
details name the entry), as does any other refused entry (unknown job, job not runnable, invalid
properties). So a batch is all or nothing, and repeating a batch that succeeded is safe.

The work is a handful of statements whatever the batch size: the jobs read in one, the earlier runs of
the keys in one, the new runs and their audit events written by :func:`~scheduler.run_creation.create_runs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.clock import Clock
from scheduler.db import one_of
from scheduler.errors import (
    IdempotencyMismatch,
    InvalidInput,
    InvalidValue,
    JobNotFound,
    JobNotRunnable,
    SchedulerError,
)
from scheduler.jobs import check_json_field
from scheduler.jobtypes import JobTypeRegistry
from scheduler.limits import DEFAULT_MAX_PROPERTIES_BYTES, IDEMPOTENCY_KEY_PATTERN
from scheduler.models import Job, JobRun, JobStatus, RunStatus, RunTrigger
from scheduler.run_creation import Idempotency, NewRun, create_runs
from scheduler.runs import RunCreate
from scheduler.settings import Settings

MAX_BATCH_RUNS = 1_000
"""Runs one batch request may ask for (422 beyond; the body is also bounded by SCHEDULER_MAX_REQUEST_BYTES)."""


class BatchRunCreate(RunCreate):
    """One run of a batch: a manual run request with its own idempotency key."""

    idempotency_key: str = Field(
        pattern=IDEMPOTENCY_KEY_PATTERN, max_length=200,
        description="this run's key, unique within the batch: the same key with the same request answers "
        "the run it created first; with a different request the batch is refused (idempotency_mismatch)")


class RunBatchCreate(BaseModel):
    """The wire contract of a batch of manual runs."""

    model_config = ConfigDict(extra="forbid")

    runs: list[BatchRunCreate] = Field(min_length=1, max_length=MAX_BATCH_RUNS,
                                       description=f"1 to {MAX_BATCH_RUNS:,} runs, each with its own key")


@dataclass(frozen=True, kw_only=True)
class BatchRun:
    """A run of the batch, in the order asked: created now, or the one its key created before."""

    run_id: int
    job_id: int
    job_type: str
    idempotency_key: str
    status: str
    created: bool


def create_manual_runs(
    *,
    session: Session,
    registry: JobTypeRegistry,
    batch: RunBatchCreate,
    actor: str,
    clock: Clock,
    request_id: str | None = None,
    settings: Settings | None = None,
) -> list[BatchRun]:
    """Record the batch's runs (``CREATED``, recorded as sent: the caller sends the new ones with
    :func:`~scheduler.runs.send_created`) in one transaction and commit; returns every entry's run.

    A refused entry refuses the whole batch (its error names it: ``details.index``). A concurrent request
    that wins the race for a key makes this one start over once, then answer that key's run.
    """
    try:
        return _create(session=session, registry=registry, batch=batch, actor=actor, clock=clock,
                       request_id=request_id, settings=settings)
    except IntegrityError:
        session.rollback()
        return _create(session=session, registry=registry, batch=batch, actor=actor, clock=clock,
                       request_id=request_id, settings=settings)


def _create(
    *, session: Session, registry: JobTypeRegistry, batch: RunBatchCreate, actor: str, clock: Clock,
    request_id: str | None, settings: Settings | None,
) -> list[BatchRun]:
    entries = batch.runs
    _check_unique_keys(entries)
    max_bytes = settings.max_properties_bytes if settings is not None else DEFAULT_MAX_PROPERTIES_BYTES
    jobs = {job.id: job for job in session.scalars(
        select(Job).where(col(Job.id).in_({entry.job_id for entry in entries})))}
    asked = [_idempotency(index, entry, jobs, registry, max_bytes) for index, entry in enumerate(entries)]
    earlier = {run.idempotency_key: run for run in session.scalars(
        select(JobRun).where(one_of(session, col(JobRun.idempotency_key), [e.idempotency_key for e in entries])))}
    answers: list[BatchRun | None] = []
    wanted: list[NewRun] = []
    for index, (entry, idempotency) in enumerate(zip(entries, asked, strict=True)):
        first = earlier.get(entry.idempotency_key)
        if first is not None:
            assert first.id is not None
            if differs := idempotency.differences(first):
                raise _at(index, IdempotencyMismatch(entry.idempotency_key, first.id, differs))
            answers.append(BatchRun(run_id=first.id, job_id=first.job_id, job_type=first.job_type,
                                    idempotency_key=entry.idempotency_key, status=first.status, created=False))
            continue
        job = jobs[entry.job_id]
        _check_runnable(index, job, entry, registry)
        answers.append(None)
        wanted.append(NewRun(job_id=entry.job_id, job_type=job.job_type, trigger=RunTrigger.MANUAL,
                             preview=entry.preview, run_properties=idempotency.run_properties,
                             idempotency_key=idempotency.key, idempotency_fingerprint=idempotency.fingerprint,
                             request_id=request_id))
    created = iter(create_runs(session=session, runs=wanted, actor=actor, at=clock.now(), sending=True))
    session.commit()
    result: list[BatchRun] = []
    keys = iter(wanted)
    for answer in answers:
        if answer is None:
            new, asked_for = next(created), next(keys)
            assert asked_for.idempotency_key is not None
            answer = BatchRun(run_id=new.run_id, job_id=new.job_id, job_type=new.job_type,
                              idempotency_key=asked_for.idempotency_key, status=RunStatus.CREATED, created=True)
        result.append(answer)
    return result


def _check_unique_keys(entries: Sequence[BatchRunCreate]) -> None:
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        if (first := seen.setdefault(entry.idempotency_key, index)) != index:
            raise InvalidValue(f"runs[{index}].idempotency_key", f"repeats the key of runs[{first}]",
                               index=index, idempotency_key=entry.idempotency_key)


def _idempotency(
    index: int, entry: BatchRunCreate, jobs: dict[int | None, Job], registry: JobTypeRegistry, max_bytes: int
) -> Idempotency:
    """The entry's key and its normalised request; the entry's job must exist and its properties be valid."""
    job = jobs.get(entry.job_id)
    if job is None:
        raise _at(index, JobNotFound(entry.job_id))
    try:
        check_json_field("run_properties", entry.run_properties, max_bytes=max_bytes)
        properties = registry.get(job.job_type).validate_run_properties(entry.run_properties).model_dump(mode="json")
    except SchedulerError as exc:
        raise _at(index, exc) from None
    return Idempotency(key=entry.idempotency_key, job_id=entry.job_id, preview=entry.preview,
                       run_properties=properties)


def _check_runnable(index: int, job: Job, entry: BatchRunCreate, registry: JobTypeRegistry) -> None:
    """What a single manual run checks of a job not asked for before (a replay answers even a paused job)."""
    assert job.id is not None
    if job.status != JobStatus.ACTIVE:
        raise _at(index, JobNotRunnable(job.id, f"the job is {job.status}"))
    if not job.can_run_manual:
        raise _at(index, JobNotRunnable(job.id, "manual runs are disabled for this job"))
    if entry.preview and not registry.get(job.job_type).supports_preview:
        raise _at(index, InvalidInput(f"job type {job.job_type} does not support preview",
                                      details={"field": "preview"}))


def _at(index: int, error: SchedulerError) -> SchedulerError:
    """The error of one entry, naming it: ``runs[3]: …`` and ``details.index``."""
    error.message = f"runs[{index}]: {error.message}"
    error.args = (error.message,)
    error.details = {**error.details, "index": index}
    return error
