"""Creating runs: one place for what a new run is — its defaults and its audit note — whoever asks for it.

:func:`create_runs` writes a batch set-based (a tick's runs, a backfill): one multi-row
``INSERT … ON CONFLICT (job_id, scheduled_for) DO NOTHING … RETURNING`` for all of them, then one
multi-row insert of their ``None → CREATED`` events, never a statement per run. The unique ledger
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

from scheduler.db import UTCDateTime
from scheduler.errors import IdempotencyMismatch
from scheduler.jobkit.sql import insert_or_ignore_statement
from scheduler.models import JobRun, RunEvent, RunStatus, RunTrigger

JOB_RUNS: Table = JobRun.__table__  # type: ignore[attr-defined]
SQLITE_ROWS_PER_STATEMENT = 1_000
"""SQLite binds every value of a multi-row ``VALUES``: 15 columns a row stay well under its 32,766."""

LedgerKey = tuple[int, datetime | None, int | None, str | None]
"""What tells the runs of one batch apart: job, tick, the run retried, the idempotency key."""
InsertedKey = tuple[int, LedgerKey]


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
    *, session: Session, run: NewRun, actor: str, at: datetime, idempotency: Idempotency | None = None
) -> tuple[JobRun, bool]:
    """Create one run (``CREATED``) with its audit event; returns ``(run, created)``.

    ``created`` is ``False`` when the run already existed: an earlier request with the same
    idempotency key (its run is returned, or :class:`IdempotencyMismatch` raised), or a tick that
    already has its run. The insert comes first and skips a taken key, so a new run costs no lookup and
    a request racing another with the same key waits for it and answers with its run. The caller commits.
    """
    if idempotency is not None:
        run = replace(run, idempotency_key=idempotency.key, idempotency_fingerprint=idempotency.fingerprint)
    created = create_runs(session=session, runs=[run], actor=actor, at=at, skip_taken_keys=True)
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
    new = session.get(JobRun, created[0].run_id)
    assert new is not None
    return new, True


def create_runs(
    *, session: Session, runs: Sequence[NewRun], actor: str, at: datetime, skip_taken_keys: bool = False
) -> list[CreatedRun]:
    """Create the ``runs`` whose tick has no run yet, each with its ``None → CREATED`` event, set-based.

    Returns the runs inserted, in the order asked. A run whose idempotency key is taken raises
    :class:`IntegrityError`, or with ``skip_taken_keys`` is skipped too. The caller commits.
    """
    if not runs:
        return []
    if session.get_bind().dialect.name == "postgresql":
        inserted = _insert_postgres(session, runs, actor=actor, at=at, any_conflict=skip_taken_keys)
    else:
        inserted = _insert_sqlite(session, runs, actor=actor, at=at, any_conflict=skip_taken_keys)
    ids: dict[LedgerKey, list[int]] = {}
    for run_id, key in sorted(inserted):
        ids.setdefault(key, []).append(run_id)
    created: list[tuple[CreatedRun, str]] = []
    for run in runs:
        if ids.get(run.ledger_key):
            run_id = ids[run.ledger_key].pop(0)
            created.append((CreatedRun(run_id=run_id, job_id=run.job_id, job_type=run.job_type,
                                       scheduled_for=run.scheduled_for), audit_note(run)))
    _insert_events(session, [(c.run_id, note) for c, note in created], actor=actor, at=at)
    return [c for c, _ in created]


def _row(run: NewRun, *, actor: str, at: datetime) -> dict[str, Any]:
    """Every column of a new run: what it was asked for, and the same defaults for every run."""
    return {
        "job_id": run.job_id, "job_type": run.job_type, "trigger": str(run.trigger),
        "scheduled_for": run.scheduled_for, "idempotency_key": run.idempotency_key,
        "idempotency_fingerprint": run.idempotency_fingerprint, "status": RunStatus.CREATED,
        "preview": run.preview, "run_properties": dict(run.run_properties), "created_by": actor, "created_at": at,
        "attempt": 0, "chunks_total": 0, "chunks_done": 0, "summary": {}, "retry_of": run.retry_of,
        "request_id": run.request_id,
    }


def _returned_key(row: Any) -> LedgerKey:
    tick = row.scheduled_for.astimezone(UTC) if row.scheduled_for is not None else None
    return int(row.job_id), tick, row.retry_of, row.idempotency_key


RETURNED = "id, job_id, scheduled_for, retry_of, idempotency_key"


def _insert_postgres(
    session: Session, runs: Sequence[NewRun], *, actor: str, at: datetime, any_conflict: bool
) -> list[InsertedKey]:
    """One ``INSERT … SELECT FROM json_to_recordset(…)``: however many runs, they travel as one JSON parameter."""
    rows = [_row(run, actor=actor, at=at) for run in runs]
    dialect = session.get_bind().dialect
    columns = ", ".join(rows[0])
    typed = ", ".join(f"{name} {JOB_RUNS.c[name].type.compile(dialect=dialect)}" for name in rows[0])
    statement = text(
        f"INSERT INTO job_run ({columns}) SELECT {columns} "
        f"FROM json_to_recordset(CAST(:runs AS json)) AS u({typed}) "
        f"ON CONFLICT {'' if any_conflict else '(job_id, scheduled_for)'} DO NOTHING RETURNING {RETURNED}"
    ).columns(scheduled_for=UTCDateTime())
    runs_json = json.dumps(rows, default=lambda value: value.isoformat())
    return [(int(row.id), _returned_key(row)) for row in session.execute(statement, {"runs": runs_json})]


def _insert_sqlite(
    session: Session, runs: Sequence[NewRun], *, actor: str, at: datetime, any_conflict: bool
) -> list[InsertedKey]:
    """Multi-row ``INSERT … VALUES`` of at most :data:`SQLITE_ROWS_PER_STATEMENT` runs each."""
    rows = [_row(run, actor=actor, at=at) for run in runs]
    inserted: list[InsertedKey] = []
    for start in range(0, len(rows), SQLITE_ROWS_PER_STATEMENT):
        statement = (
            insert_or_ignore_statement(session, JOB_RUNS, keys=None if any_conflict else ["job_id", "scheduled_for"])
            .values(rows[start : start + SQLITE_ROWS_PER_STATEMENT])
            .returning(*(JOB_RUNS.c[name.strip()] for name in RETURNED.split(",")))
        )
        inserted += [(int(row.id), _returned_key(row)) for row in session.execute(statement)]
    return inserted


def _insert_events(session: Session, events: list[tuple[int, str]], *, actor: str, at: datetime) -> None:
    """The ``None → CREATED`` event of each new run, with its note, in one statement."""
    if not events:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "INSERT INTO run_event (run_id, from_status, to_status, at, actor, note) "
                "SELECT u.run_id, NULL, :created, :at, :actor, u.note "
                "FROM json_to_recordset(CAST(:events AS json)) AS u(run_id integer, note text)"
            ),
            {"events": json.dumps([{"run_id": run_id, "note": note} for run_id, note in events]),
             "created": RunStatus.CREATED, "at": at, "actor": actor},
        )
        return
    session.execute(
        insert(RunEvent),
        [{"run_id": run_id, "from_status": None, "to_status": RunStatus.CREATED, "at": at, "actor": actor,
          "note": note} for run_id, note in events],
    )
