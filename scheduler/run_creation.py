"""Creating runs: one place for what a new run is — its defaults and its audit note — whoever asks for it.

:func:`create_runs` writes a batch set-based (a tick's runs, a backfill): on PostgreSQL one statement
for all of them and their ``None → CREATED`` events (``INSERT … ON CONFLICT (job_id, scheduled_for) DO
NOTHING`` and the events' insert in one ``WITH``), elsewhere a multi-row insert of the runs and one of
their events, never a statement per run. The unique ledger
``(job_id, scheduled_for)`` makes a second attempt at a tick (another beat, a replayed tick, a
backfill) insert nothing. :func:`create_run` writes one run (a manual request, a retry) through the
same statement, skipping it too when its idempotency key is taken, and answers a repeated key with the
run it created first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, insert, select, text
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.errors import IdempotencyMismatch
from scheduler.jobkit.sql import insert_or_ignore_statement
from scheduler.models import JobRun, RunEvent, RunStatus, RunTrigger

JOB_RUNS: Table = JobRun.__table__  # type: ignore[attr-defined]
SQLITE_ROWS_PER_STATEMENT = 1_000
"""SQLite binds every value of a multi-row ``VALUES``: 15 columns a row stay well under its 32,766."""

LedgerKey = tuple[int, datetime | None, int | None, str | None]
"""What tells the runs of one batch apart: job, tick, the run retried, the idempotency key."""


@dataclass(frozen=True, kw_only=True)
class NewRun:
    """A run to create. Everything else a new run holds is the same for every run (see :func:`_row`)."""

    job_id: int
    job_type: str
    trigger: RunTrigger
    scheduled_for: datetime | None = None
    """The tick (scheduled and backfill runs): at most one run per job and tick."""
    preview: bool = False
    run_properties: Mapping[str, Any] = field(default_factory=dict)
    retry_of: int | None = None
    idempotency_key: str | None = None
    idempotency_fingerprint: str | None = None
    request_id: str | None = None
    """The request that asked for the run (an API request's id), carried into the worker's log lines."""
    context: str = ""
    """What the audit note adds to the trigger's own words (e.g. the backfill's range and mode)."""

    @property
    def ledger_key(self) -> LedgerKey:
        tick = self.scheduled_for.astimezone(UTC) if self.scheduled_for is not None else None
        return self.job_id, tick, self.retry_of, self.idempotency_key


@dataclass(frozen=True, kw_only=True)
class CreatedRun:
    """A run :func:`create_runs` inserted."""

    run_id: int
    job_id: int
    job_type: str
    scheduled_for: datetime | None


def request_fingerprint(*, job_id: int, preview: bool, run_properties: Mapping[str, Any]) -> str:
    """SHA-256 of a normalised run request: what an idempotency key promises stays the same.

    ``run_properties`` are the job type's validated dump, so ``{}`` and the same defaults spelled out
    are one request. A batch of runs (one key each) fingerprints each run with this.
    """
    canonical = json.dumps({"job_id": job_id, "preview": preview, "run_properties": run_properties},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class Idempotency:
    """A request's idempotency key and the request it stands for: the same key with the same request
    answers the run created first; with another request it is refused."""

    key: str
    job_id: int
    preview: bool = False
    run_properties: Mapping[str, Any] = field(default_factory=dict)
    """Normalised by the job type (its validated dump)."""

    @property
    def fingerprint(self) -> str:
        return request_fingerprint(job_id=self.job_id, preview=self.preview, run_properties=self.run_properties)

    def differences(self, earlier: JobRun) -> list[str]:
        """What of this request differs from the one that created ``earlier`` (empty: the same request)."""
        stored = earlier.idempotency_fingerprint or request_fingerprint(
            job_id=earlier.job_id, preview=earlier.preview, run_properties=earlier.run_properties)
        if stored == self.fingerprint:
            return []
        differs = [name for name, mine, theirs in (
            ("job_id", self.job_id, earlier.job_id), ("preview", self.preview, earlier.preview),
            ("run_properties", dict(self.run_properties), earlier.run_properties),
        ) if mine != theirs]
        return differs or ["request"]


def audit_note(run: NewRun) -> str:
    """The note of a new run's ``None → CREATED`` event: why it exists."""
    if run.trigger == RunTrigger.SCHEDULED and run.scheduled_for is not None:
        words = f"scheduled tick {run.scheduled_for.isoformat()}"
    elif run.trigger == RunTrigger.RETRY:
        words = f"retry of run {run.retry_of}"
    elif run.trigger == RunTrigger.MANUAL:
        words = "manual run"
    else:
        words = f"{run.trigger.lower()} run"
    if run.context:
        words = run.context if run.trigger == RunTrigger.BACKFILL else f"{words}: {run.context}"
        if run.retry_of is not None and run.trigger != RunTrigger.RETRY:
            words += f": retries run {run.retry_of}"
    return words


def creation_event(run: JobRun) -> RunEvent:
    """The ``None → CREATED`` event a run was created with, as :func:`create_runs` wrote it (for an answer
    built without reading it back; a manual or retry run's note has no context)."""
    new = NewRun(job_id=run.job_id, job_type=run.job_type, trigger=RunTrigger(run.trigger),
                 scheduled_for=run.scheduled_for, retry_of=run.retry_of)
    assert run.id is not None
    return RunEvent(run_id=run.id, from_status=None, to_status=RunStatus.CREATED, at=run.created_at,
                    actor=run.created_by, note=audit_note(new))


def replay(session: Session, idempotency: Idempotency) -> JobRun | None:
    """The run an earlier request with this key created, or ``None``.

    Raises :class:`IdempotencyMismatch`, naming what differs, when the key was used for another request.
    """
    earlier = session.scalar(select(JobRun).where(col(JobRun.idempotency_key) == idempotency.key))
    if earlier is not None and (differs := idempotency.differences(earlier)):
        assert earlier.id is not None
        raise IdempotencyMismatch(idempotency.key, earlier.id, differs)
    return earlier


def create_run(
    *, session: Session, run: NewRun, actor: str, at: datetime, idempotency: Idempotency | None = None,
    sending: bool = False,
) -> tuple[JobRun, bool]:
    """Create one run (``CREATED``) with its audit event; returns ``(run, created)``.

    ``created`` is ``False`` when the run already existed: an earlier request with the same
    idempotency key (its run is returned, or :class:`IdempotencyMismatch` raised), or a tick that
    already has its run. The insert comes first and skips a taken key, so a new run costs no lookup and
    a request racing another with the same key waits for it and answers with its run. ``sending``: as for
    :func:`create_runs`. The caller commits.
    """
    if idempotency is not None:
        run = replace(run, idempotency_key=idempotency.key, idempotency_fingerprint=idempotency.fingerprint)
    created = create_runs(session=session, runs=[run], actor=actor, at=at, skip_taken_keys=True, sending=sending)
    if not created and idempotency is not None:
        earlier = replay(session, idempotency)
        assert earlier is not None
        return earlier, False
    if not created:
        existing = session.scalar(
            select(JobRun).where(col(JobRun.job_id) == run.job_id, col(JobRun.scheduled_for) == run.scheduled_for)
        )
        assert existing is not None
        return existing, False
    # Everything the row holds but its id was written from here: the run is built, not read back.
    return JobRun(id=created[0].run_id, **_row(run, actor=actor, at=at, sending=sending)), True


def create_runs(
    *, session: Session, runs: Sequence[NewRun], actor: str, at: datetime, skip_taken_keys: bool = False,
    sending: bool = False,
) -> list[CreatedRun]:
    """Create the ``runs`` whose tick has no run yet, each with its ``None → CREATED`` event, set-based.

    Returns the runs inserted, in the order asked. A run whose idempotency key is taken raises
    :class:`IntegrityError`, or with ``skip_taken_keys`` is skipped too. ``sending``: the caller sends the
    runs right after committing, so they are stamped sent (``enqueued_at`` = ``at``) here rather than by a
    second transaction after the send; a send that fails takes the stamp back
    (:func:`scheduler.runs.send_created`). The caller commits.
    """
    if not runs:
        return []
    insert = _insert_postgres if session.get_bind().dialect.name == "postgresql" else _insert_sqlite
    inserted = insert(session, runs, actor=actor, at=at, any_conflict=skip_taken_keys, sending=sending)
    return [CreatedRun(run_id=run_id, job_id=runs[n].job_id, job_type=runs[n].job_type,
                       scheduled_for=runs[n].scheduled_for) for n, run_id in sorted(inserted)]


def _row(run: NewRun, *, actor: str, at: datetime, sending: bool) -> dict[str, Any]:
    """Every column of a new run: what it was asked for, and what is the same for every run of a batch."""
    return {**_asked(run), **_shared(actor=actor, at=at, sending=sending)}


def _asked(run: NewRun) -> dict[str, Any]:
    return {
        "job_id": run.job_id, "job_type": run.job_type, "trigger": str(run.trigger),
        "scheduled_for": run.scheduled_for, "idempotency_key": run.idempotency_key,
        "idempotency_fingerprint": run.idempotency_fingerprint, "preview": run.preview,
        "run_properties": dict(run.run_properties), "retry_of": run.retry_of, "request_id": run.request_id,
    }


def _shared(*, actor: str, at: datetime, sending: bool) -> dict[str, Any]:
    return {
        "status": RunStatus.CREATED, "created_by": actor, "created_at": at, "enqueued_at": at if sending else None,
        "attempt": 0, "chunks_total": 0, "chunks_done": 0, "summary": {},
    }


Inserted = list[tuple[int, int]]
"""``(n, id)``: the id of ``runs[n]``, for each run inserted."""


def _insert_postgres(
    session: Session, runs: Sequence[NewRun], *, actor: str, at: datetime, any_conflict: bool, sending: bool
) -> Inserted:
    """One statement for the runs and their events: what each run was asked for travels as one JSON parameter
    (what all share as one parameter each), each run with its id drawn from the sequence first, so that the
    events of the runs inserted join them by id."""
    rows = [{**_asked(run), "n": n, "note": audit_note(run)} for n, run in enumerate(runs)]
    shared = _shared(actor=actor, at=at, sending=sending)
    dialect = session.get_bind().dialect

    def sql_type(name: str) -> str:
        return str(JOB_RUNS.c[name].type.compile(dialect=dialect))

    asked = [name for name in rows[0] if name in JOB_RUNS.c]
    typed = ", ".join(f"{name} {sql_type(name)}" for name in asked)
    statement = text(
        "WITH u AS MATERIALIZED (SELECT nextval(pg_get_serial_sequence('job_run', 'id')) AS id, r.* "
        f"FROM json_to_recordset(CAST(:runs AS json)) AS r({typed}, n integer, note text)), "
        f"run AS (INSERT INTO job_run (id, {', '.join(asked)}, {', '.join(shared)}) "
        f"SELECT id, {', '.join(asked)}, {', '.join(f'CAST(:{name} AS {sql_type(name)})' for name in shared)} "
        f"FROM u ON CONFLICT {'' if any_conflict else '(job_id, scheduled_for)'} DO NOTHING RETURNING id), "
        "event AS (INSERT INTO run_event (run_id, from_status, to_status, at, actor, note) "
        "SELECT u.id, NULL, :status, :created_at, :created_by, u.note FROM run JOIN u ON u.id = run.id) "
        "SELECT u.n, u.id FROM run JOIN u ON u.id = run.id"
    )
    params = {**shared, "summary": json.dumps(shared["summary"]),
              "runs": json.dumps(rows, default=lambda value: value.isoformat())}
    return [(int(n), int(run_id)) for n, run_id in session.execute(statement, params)]


def _insert_sqlite(
    session: Session, runs: Sequence[NewRun], *, actor: str, at: datetime, any_conflict: bool, sending: bool
) -> Inserted:
    """Multi-row ``INSERT … VALUES`` of at most :data:`SQLITE_ROWS_PER_STATEMENT` runs each, the inserted ones
    told apart by their ledger key; then their events in one statement."""
    rows = [_row(run, actor=actor, at=at, sending=sending) for run in runs]
    ledger = [JOB_RUNS.c[name] for name in ("job_id", "scheduled_for", "retry_of", "idempotency_key")]
    ids: dict[LedgerKey, list[int]] = {}
    for start in range(0, len(rows), SQLITE_ROWS_PER_STATEMENT):
        statement = (
            insert_or_ignore_statement(session, JOB_RUNS, keys=None if any_conflict else ["job_id", "scheduled_for"])
            .values(rows[start : start + SQLITE_ROWS_PER_STATEMENT])
            .returning(JOB_RUNS.c.id, *ledger)
        )
        for row in session.execute(statement):
            tick = row.scheduled_for.astimezone(UTC) if row.scheduled_for is not None else None
            ids.setdefault((int(row.job_id), tick, row.retry_of, row.idempotency_key), []).append(int(row.id))
    for taken in ids.values():
        taken.sort()
    inserted = [(n, ids[run.ledger_key].pop(0)) for n, run in enumerate(runs) if ids.get(run.ledger_key)]
    if inserted:
        session.execute(insert(RunEvent), [
            {"run_id": run_id, "from_status": None, "to_status": RunStatus.CREATED, "at": at, "actor": actor,
             "note": audit_note(runs[n])} for n, run_id in inserted])
    return inserted
