"""The run executor: the ``plan``, ``evaluate`` and ``apply`` steps of a run, each idempotent.

The database is the truth and a message only says "look at run N now". Every step starts from the
run's status and its chunks' marks, so a duplicated message is a no-op and a lost one is re-sent by
beat. Job type code runs outside the executor's own transactions (SQLite allows one writer at a time).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any

from sqlalchemy import func, select, update
from sqlmodel import col

from scheduler.dispatch import Phase, RunStep
from scheduler.error_text import explain
from scheduler.errors import BrokerUnavailable
from scheduler.jobkit import insert_or_ignore
from scheduler.jobtypes import JobType, RunContext
from scheduler.lifecycle import run_and_job, take
from scheduler.logs import add_run_fields, run_fields
from scheduler.metrics import START_LAG
from scheduler.models import Job, JobRun, RunChunk, RunStatus
from scheduler.runs import send_apply
from workers.retry import original_as_of
from workers.runtime.env import WorkerEnv
from workers.runtime.finalize import (
    error_planned_items,
    fail_run,
    finish_empty,
    finish_evaluation,
    finish_if_applied,
    runtime_exceeded,
    submitted_at,
)
from workers.runtime.outage import is_database_outage

log = logging.getLogger(__name__)

S = RunStatus
FINAL_CHECK = -1
"""``chunk_no`` of a step that only checks whether the phase is complete (beat sends it when reclaiming)."""


def execute_step(env: WorkerEnv, run_id: int, phase: str, chunk_no: int = 0) -> None:
    """Execute one step of a run; safe to call any number of times with the same arguments."""
    beating = env.heartbeat.beating(run_id) if env.heartbeat is not None else nullcontext()
    with run_fields(run_id=run_id), beating:
        if phase == Phase.PLAN:
            plan_run(env, run_id)
        elif phase == Phase.EVALUATE:
            evaluate_chunk(env, run_id, chunk_no)
        elif phase == Phase.APPLY:
            apply_chunk(env, run_id, chunk_no)
        else:
            log.error("run %s: unknown step phase %r ignored", run_id, phase)


def load_run(env: WorkerEnv, run_id: int) -> tuple[JobRun, Job] | None:
    """The run and its job (one query), as plain objects."""
    with env.engine.connect() as conn:
        found = run_and_job(conn, run_id)
    if found is None:
        log.warning("run %s does not exist; step ignored", run_id)
        return None
    run, _ = found
    add_run_fields(job_id=run.job_id, job_type=run.job_type, request_id=run.request_id)
    return found


def build_context(env: WorkerEnv, run: JobRun, job: Job) -> RunContext:
    """What the job type sees: validated properties and the run's as-of instant."""
    job_type = env.registry.get(run.job_type)
    assert run.id is not None and job.id is not None
    as_of = original_as_of(env.engine, run) if run.retry_of is not None else run.scheduled_for or run.created_at
    return RunContext(
        run_id=run.id,
        job_id=job.id,
        job_name=job.name,
        trigger=run.trigger,
        properties=job_type.validate_properties(job.properties),
        run_properties=job_type.validate_run_properties(run.run_properties),
        scheduled_for=run.scheduled_for,
        as_of=as_of,
        created_at=run.created_at,
        retry_of=run.retry_of,
        requires_review=job.requires_review,
        settings=env.settings,
        _core_engine=env.engine,
        billing_engine=env.billing_engine,
        clock=env.clock,
        extra={"timezone": job.timezone, "preview": run.preview, "worker": env.worker_id},
    )


def describe(exc: BaseException) -> str:
    """What failed, for the run's error and its items: words, never the exception's class (that is logged)."""
    return explain(exc)


# -- plan ------------------------------------------------------------------------------------------


def plan_run(env: WorkerEnv, run_id: int) -> None:
    """Take a ``CREATED`` run, split it into chunks and send one ``evaluate`` step per chunk.

    A run whose plan yields no chunk has nothing to evaluate or apply: it is finished in this step.
    """
    taken = _take_run(env, run_id)
    if taken is None:
        taken = _reclaimed_run(env, run_id)
        if taken is None:
            return
    run, job = taken
    if _stop_if_over_runtime(env, run, job):
        return
    job_type = env.registry.get(run.job_type)
    try:
        ctx = build_context(env, run, job)
        specs = job_type.plan(ctx)
    except Exception as exc:
        if is_database_outage(exc):
            raise  # not the run's fault: the step runs again once the database is back
        log.exception("run %s: plan failed", run_id)
        fail_run(env, run, job, f"planning failed: {describe(exc)}")
        return
    if not specs:
        if finish_empty(env, run, job, ctx) is None:
            log.info("run %s: another worker planned it first", run_id)
        return
    if not _record_chunks(env, run_id, specs):
        log.info("run %s: another worker planned it first", run_id)
        return
    log.info("run %s: planned %d chunk(s)", run_id, len(specs))
    try:
        env.dispatcher.send_steps([(job_type.queue, RunStep(run_id=run_id, phase=Phase.EVALUATE, chunk_no=chunk_no))
                                   for chunk_no in range(len(specs))])
    except BrokerUnavailable as exc:
        log.warning("run %s: evaluate steps not all sent (beat re-sends them): %s", run_id, exc.message)


def _take_run(env: WorkerEnv, run_id: int) -> tuple[JobRun, Job] | None:
    """Claim and start a ``CREATED`` run in one transaction (CREATED → PROCESSING and its audit row): the run
    as written and its job, or ``None`` when it was not ``CREATED`` (taken already, or no such run)."""
    now = env.clock.now()
    taken = take(env.engine, run_id, (S.PROCESSING, "planning"), source=S.CREATED, actor=env.worker_id, at=now,
                 values={"started_at": now, "heartbeat_at": now, "worker": env.worker_id})
    if taken is None:
        return None
    run, job = taken
    add_run_fields(job_id=run.job_id, job_type=run.job_type, request_id=run.request_id)
    if run.scheduled_for is not None:
        START_LAG.labels(job_type=run.job_type).observe(max(0.0, (now - run.scheduled_for).total_seconds()))
    return run, job


def _reclaimed_run(env: WorkerEnv, run_id: int) -> tuple[JobRun, Job] | None:
    """A run another worker took but never planned (beat reclaimed it): the run and its job, stamped as this
    worker's; ``None`` (logged) for a run that is gone, planned or past ``PROCESSING`` — a duplicate step."""
    loaded = load_run(env, run_id)
    if loaded is None:
        return None
    run, _ = loaded
    if run.status != S.PROCESSING or _has_chunks(env, run_id):
        log.info("run %s: plan step ignored, run is %s", run_id, run.status)
        return None
    log.info("run %s: re-planning a reclaimed run", run_id)
    _stamp_worker(env, run_id)
    return loaded


def _has_chunks(env: WorkerEnv, run_id: int) -> bool:
    with env.factory() as session:
        return bool(session.scalar(select(func.count()).select_from(RunChunk).where(col(RunChunk.run_id) == run_id)))


def _stamp_worker(env: WorkerEnv, run_id: int) -> None:
    with env.factory() as session:
        session.execute(
            update(JobRun)
            .where(col(JobRun.id) == run_id)
            .values(worker=env.worker_id, heartbeat_at=env.clock.now(), attempt=col(JobRun.attempt) + 1)
        )
        session.commit()


def _record_chunks(env: WorkerEnv, run_id: int, specs: list[dict[str, Any]]) -> bool:
    """Write the chunks once: only the worker that moves ``chunks_total`` off zero writes them."""
    with env.factory() as session:
        claimed = session.execute(
            update(JobRun)
            .where(col(JobRun.id) == run_id, col(JobRun.status) == S.PROCESSING, col(JobRun.chunks_total) == 0)
            .values(chunks_total=len(specs), chunks_done=0, heartbeat_at=env.clock.now())
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            return False
        insert_or_ignore(
            session,
            RunChunk.__table__,  # type: ignore[attr-defined]
            [{"run_id": run_id, "chunk_no": k, "spec": spec, "items": 0} for k, spec in enumerate(specs)],
        )
        session.commit()
    return True


# -- evaluate --------------------------------------------------------------------------------------


def evaluate_chunk(env: WorkerEnv, run_id: int, chunk_no: int) -> None:
    """Stage chunk ``chunk_no``'s effects, then move the run on when every chunk is evaluated."""
    taken = _step_run(env, run_id, S.PROCESSING, "evaluate")
    if taken is None:
        return
    run, job = taken
    if chunk_no != FINAL_CHECK:
        chunk = _pending_chunk(env, run_id, chunk_no, "evaluated_at")
        if chunk is not None:
            job_type = env.registry.get(run.job_type)
            try:
                staged = job_type.evaluate(build_context(env, run, job), chunk_no, chunk.spec)
            except Exception as exc:
                if is_database_outage(exc):
                    raise
                log.exception("run %s: evaluation of chunk %s failed", run_id, chunk_no)
                fail_run(env, run, job, f"evaluation of chunk {chunk_no} failed: {describe(exc)}")
                return
            _mark_chunk(env, run_id, chunk_no, "evaluated_at", items=int(staged or 0), status=S.PROCESSING)
    _after_evaluation(env, run, job)


def _step_run(env: WorkerEnv, run_id: int, status: RunStatus, step: str) -> tuple[JobRun, Job] | None:
    """The run and its job when its ``step`` step may go on: the run is still ``status`` and within its
    job's ``max_runtime`` (past it, the run is stopped here); else None."""
    loaded = load_run(env, run_id)
    if loaded is None:
        return None
    run, job = loaded
    if run.status != status:
        log.info("run %s: %s step ignored, run is %s", run_id, step, run.status)
        return None
    if _stop_if_over_runtime(env, run, job):
        return None
    return run, job


def _pending_chunk(env: WorkerEnv, run_id: int, chunk_no: int, done_column: str) -> RunChunk | None:
    """The chunk, unless it is missing (logged) or ``done_column`` already says it was done."""
    with env.factory() as session:
        chunk = session.get(RunChunk, (run_id, chunk_no))
        if chunk is None:
            log.warning("run %s has no chunk %s; step ignored", run_id, chunk_no)
            return None
        session.expunge(chunk)
    return chunk if getattr(chunk, done_column) is None else None


def _mark_chunk(
    env: WorkerEnv, run_id: int, chunk_no: int, column: str, *, status: RunStatus,
    items: int | None = None, error: str | None = None,
) -> bool:
    """Stamp a chunk done for a phase (once) and count it on the run; ``False`` if it was already done."""
    now = env.clock.now()
    values: dict[str, Any] = {column: now}
    if items is not None:
        values["items"] = items
    if error is not None:
        values["error"] = error
    with env.factory() as session:
        if error is not None:
            error_planned_items(session, run_id, error, chunk_no=chunk_no)
        marked = session.execute(
            update(RunChunk)
            .where(col(RunChunk.run_id) == run_id, col(RunChunk.chunk_no) == chunk_no,
                   getattr(RunChunk, column).is_(None))
            .values(**values)
        )
        done = bool(marked.rowcount == 1)  # type: ignore[attr-defined]
        if done:
            session.execute(
                update(JobRun)
                .where(col(JobRun.id) == run_id, col(JobRun.status) == status)
                .values(chunks_done=col(JobRun.chunks_done) + 1, heartbeat_at=now)
            )
        session.commit()
    return done


def _after_evaluation(env: WorkerEnv, run: JobRun, job: Job) -> None:
    """Every chunk evaluated: the run moves on (``run`` and ``job`` as the step read them; the move is a
    compare-and-set, so a run that moved on meanwhile stays as it is)."""
    assert run.id is not None
    if _chunks_left(env, run.id, "evaluated_at"):
        return
    target = finish_evaluation(env, run, job, build_context_safely(env, run, job))
    if target is S.SUBMITTED:
        send_apply(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=run.id)


def _chunks_left(env: WorkerEnv, run_id: int, column: str) -> int:
    with env.factory() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(RunChunk)
                .where(col(RunChunk.run_id) == run_id, getattr(RunChunk, column).is_(None))
            )
            or 0
        )


def build_context_safely(env: WorkerEnv, run: JobRun, job: Job) -> RunContext | None:
    try:
        return build_context(env, run, job)
    except Exception as exc:
        if is_database_outage(exc):
            raise
        log.exception("run %s: cannot build the run context for its summary", run.id)
        return None


# -- apply -----------------------------------------------------------------------------------------


def apply_chunk(env: WorkerEnv, run_id: int, chunk_no: int) -> None:
    """Apply chunk ``chunk_no``'s staged items, then finalize the run when every chunk is applied."""
    taken = _step_run(env, run_id, S.SUBMITTED, "apply")
    if taken is None:
        return
    run, job = taken
    if chunk_no != FINAL_CHECK:
        chunk = _pending_chunk(env, run_id, chunk_no, "applied_at")
        if chunk is not None:
            job_type: JobType = env.registry.get(run.job_type)
            error: str | None = None
            try:
                job_type.apply(build_context(env, run, job), chunk_no, chunk.spec)
            except Exception as exc:
                if is_database_outage(exc):
                    raise  # the chunk's transaction rolled back: applying it again is safe
                log.exception("run %s: apply of chunk %s failed", run_id, chunk_no)
                error = f"apply of chunk {chunk_no} failed: {describe(exc)}"
            _mark_chunk(env, run_id, chunk_no, "applied_at", status=S.SUBMITTED, error=error)
    if not _chunks_left(env, run_id, "applied_at"):
        finish_if_applied(env, run, job, build_context_safely(env, run, job))


# -- max runtime -----------------------------------------------------------------------------------


def _stop_if_over_runtime(env: WorkerEnv, run: JobRun, job: Job) -> bool:
    """Fail (or, once applying, finish with errors) a run past its job's ``max_runtime``."""
    assert run.id is not None
    if not job.max_runtime:
        return False
    started = submitted_at(env, run) if run.status == S.SUBMITTED else run.started_at
    reason = runtime_exceeded(job, started, env.clock.now())
    if reason is None:
        return False
    log.warning("run %s: %s", run.id, reason)
    if run.status == S.PROCESSING:
        fail_run(env, run, job, reason)
        return True
    with env.factory() as session:
        error_planned_items(session, run.id, reason)
        session.execute(
            update(RunChunk)
            .where(col(RunChunk.run_id) == run.id, col(RunChunk.applied_at).is_(None))
            .values(applied_at=env.clock.now(), error=reason)
        )
        session.commit()
    finish_if_applied(env, run, job, build_context_safely(env, run, job), error=reason)
    return True
