"""Creating runs: one set-based insert for a batch, the unique ledger per tick, one audit event per run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.errors import IdempotencyMismatch
from scheduler.models import Job, JobRun, RunEvent, RunStatus, RunTrigger
from scheduler.run_creation import Idempotency, NewRun, create_run, create_runs

AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TICK = datetime(2026, 6, 1, 11, 0, tzinfo=UTC)


def _jobs(session: Session, count: int) -> list[int]:
    jobs = [Job(name=f"job {n}", job_type="fake", cron="* * * * *") for n in range(count)]
    session.add_all(jobs)
    session.commit()
    return [job.id for job in jobs if job.id is not None]


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements the engine executes while the test runs."""
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_a_tick_batch_creates_the_runs_whose_tick_is_free_each_with_its_audit_event(session: Session) -> None:
    # Given three jobs, the first of which already has its run for the 11:00 tick
    first, second, third = _jobs(session, 3)
    session.add(JobRun(job_id=first, job_type="fake", trigger=RunTrigger.SCHEDULED, scheduled_for=TICK,
                       status=RunStatus.COMPLETED))
    session.commit()

    # When a tick asks for the 11:00 and 11:01 runs of each job
    ticks = [TICK, TICK + timedelta(minutes=1)]
    wanted = [NewRun(job_id=job_id, job_type="fake", trigger=RunTrigger.SCHEDULED, scheduled_for=tick)
              for job_id in (third, first, second) for tick in ticks]
    created = create_runs(session=session, runs=wanted, actor="beat-a", at=AT)
    session.commit()

    # Then every run but the one already in the ledger exists, in the order asked, CREATED by beat
    assert [(c.job_id, c.scheduled_for) for c in created] == [
        (third, ticks[0]), (third, ticks[1]), (first, ticks[1]), (second, ticks[0]), (second, ticks[1])
    ]
    for c in created:
        run = session.get(JobRun, c.run_id)
        assert run is not None
        assert (run.status, run.trigger, run.created_by, run.created_at, run.preview, run.run_properties,
                run.attempt, run.summary) == (RunStatus.CREATED, RunTrigger.SCHEDULED, "beat-a", AT, False, {}, 0, {})
        [audit] = session.scalars(select(RunEvent).where(col(RunEvent.run_id) == c.run_id)).all()
        assert (audit.from_status, audit.to_status, audit.actor, audit.at) == (None, RunStatus.CREATED, "beat-a", AT)
        assert audit.note == f"scheduled tick {run.scheduled_for.isoformat() if run.scheduled_for else ''}"

    # And asking again creates nothing: the ledger has every tick
    assert create_runs(session=session, runs=wanted, actor="beat-b", at=AT) == []


def test_a_batch_is_one_statement_however_many_runs(
    engine: Engine, session: Session, statements: list[str]
) -> None:
    # Given 40 jobs due for 50 ticks each: 2,000 runs
    job_ids = _jobs(session, 40)
    wanted = [NewRun(job_id=job_id, job_type="fake", trigger=RunTrigger.SCHEDULED,
                     scheduled_for=TICK + timedelta(minutes=n)) for job_id in job_ids for n in range(50)]
    statements.clear()

    # When they are created
    created = create_runs(session=session, runs=wanted, actor="beat-a", at=AT)
    session.commit()

    # Then one statement wrote the runs and their events (SQLite: runs in slices of 1,000 a statement, then
    # the events)
    assert len(created) == 2000
    writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "WITH"))]
    expected = 1 if engine.dialect.name == "postgresql" else 3
    assert len(writes) == expected, writes
    events = session.scalars(select(RunEvent.run_id).where(col(RunEvent.run_id).in_([c.run_id for c in created])))
    assert sorted(events) == sorted(c.run_id for c in created)


def test_manual_run_with_a_key_is_created_once_and_the_key_is_refused_for_another_job(session: Session) -> None:
    first, second = _jobs(session, 2)
    manual = NewRun(job_id=first, job_type="fake", trigger=RunTrigger.MANUAL, run_properties={"as_of": "2026-05-31"})

    run, created = create_run(session=session, run=manual, actor="alice", at=AT,
                              idempotency=Idempotency(key="req-1", job_id=first))
    again, created_again = create_run(session=session, run=manual, actor="alice", at=AT,
                                      idempotency=Idempotency(key="req-1", job_id=first))
    session.commit()

    assert created and not created_again and again.id == run.id
    assert (run.trigger, run.idempotency_key, run.run_properties) == ("MANUAL", "req-1", {"as_of": "2026-05-31"})
    [audit] = session.scalars(select(RunEvent).where(col(RunEvent.run_id) == run.id)).all()
    assert (audit.note, audit.actor) == ("manual run", "alice")
    with pytest.raises(IdempotencyMismatch):
        create_run(session=session, run=NewRun(job_id=second, job_type="fake", trigger=RunTrigger.MANUAL),
                   actor="alice", at=AT, idempotency=Idempotency(key="req-1", job_id=second))


def test_retry_and_backfill_runs_say_which_run_they_retry(session: Session) -> None:
    [job_id] = _jobs(session, 1)
    failed = JobRun(job_id=job_id, job_type="fake", trigger=RunTrigger.SCHEDULED, scheduled_for=TICK,
                    status=RunStatus.FAILED)
    session.add(failed)
    session.commit()

    created = create_runs(session=session, actor="bob", at=AT, runs=[
        NewRun(job_id=job_id, job_type="fake", trigger=RunTrigger.RETRY, retry_of=failed.id),
        NewRun(job_id=job_id, job_type="fake", trigger=RunTrigger.BACKFILL, retry_of=failed.id,
               context="backfill FAILED 2026-06-01..2026-06-01 by bob"),
    ])
    session.commit()

    notes = [session.scalars(select(RunEvent.note).where(col(RunEvent.run_id) == c.run_id)).one() for c in created]
    assert notes == [f"retry of run {failed.id}",
                     f"backfill FAILED 2026-06-01..2026-06-01 by bob: retries run {failed.id}"]
