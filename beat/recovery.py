"""Beat's repair passes: the outbox, stale runs, and runs over their ``max_runtime``.

- Outbox: a run is written before it is sent, so a run still ``CREATED`` and never sent (Redis was
  down, the sender crashed) or sent long ago and never started is sent again.
- Stale runs: a ``PROCESSING`` or ``SUBMITTED`` run whose worker stopped heart-beating gets its
  unfinished steps re-sent. Workers treat a duplicate step as a no-op, so re-sending is safe.
- Overrunning runs: a run still PROCESSING (nothing applied yet) that started longer ago than its job's
  ``max_runtime`` fails with that reason. A SUBMITTED run may have applied items, so beat only sends
  it one final-check step once it is over (counted from its submit): the worker taking it ends the run
  by what it applied (INCOMPLETE or FAILED), with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, not_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from beat.metrics import RECLAIMED_RUNS, RESENT_RUNS
from beat.tables import JOBS, RUN_CHUNKS, RUN_EVENTS, RUNS
from scheduler.clock import Clock
from scheduler.dispatch import Dispatcher, Phase, RunStep
from scheduler.errors import BrokerUnavailable
from scheduler.jobtypes import JobTypeRegistry
from scheduler.lifecycle import RUNNING, WORKING, RunHook, run_ended, transition
from scheduler.models import OverlapPolicy, RunStatus
from scheduler.runs import record_event, send_apply, send_run

log = logging.getLogger(__name__)

UNSENT_GRACE = timedelta(seconds=2)
"""A run's creator sends it right after committing; only older unsent runs are the outbox's."""


@dataclass(frozen=True, kw_only=True)
class Repairs:
    """What beat needs to repair runs: where they are, how to send, who it is."""

    factory: sessionmaker[Session]
    run_hooks: tuple[RunHook, ...]
    """What follows a run beat ends (metrics, pause on failure, mail)."""
    dispatcher: Dispatcher
    registry: JobTypeRegistry
    clock: Clock
    actor: str
    heartbeat_timeout: timedelta
    resend_after: timedelta
    batch_size: int
    write: Callable[[], AbstractContextManager[Session]]
    """A fenced write transaction: raises StaleLeader (rolled back) when this beat lost the lease."""
    stopping: set[int] = field(default_factory=set)
    """SUBMITTED runs over their runtime already sent their final-check step."""


def resend_outbox(ctx: Repairs, now: datetime, *, lost_at: datetime | None = None) -> int:
    """Send again the ``CREATED`` runs that were never sent, or sent but not started in time.

    ``lost_at``: Redis lost its data then, so every run sent before is sent again at once.
    """
    resend_before = now - ctx.resend_after if lost_at is None else max(now - ctx.resend_after, lost_at)
    running = RUNS.alias("running")
    job_has_running = exists().where(running.c.job_id == RUNS.c.job_id, running.c.status.in_(RUNNING))
    stmt = (
        select(RUNS.c.id, RUNS.c.created_at, RUNS.c.enqueued_at)
        .join(JOBS, JOBS.c.id == RUNS.c.job_id)
        .where(
            RUNS.c.status == RunStatus.CREATED,
            RUNS.c.job_type.in_(ctx.registry.names()),
            or_(
                and_(RUNS.c.enqueued_at.is_(None), RUNS.c.created_at < now - UNSENT_GRACE),
                RUNS.c.enqueued_at < resend_before,
            ),
            # A BUFFER_ONE run waits, unsent, until its job's running run has finished.
            not_(and_(JOBS.c.overlap_policy == OverlapPolicy.BUFFER_ONE, job_has_running)),
        )
        .order_by(RUNS.c.created_at)
        .limit(ctx.batch_size)
    )
    with ctx.factory() as session:
        pending = session.execute(stmt).all()
    sent = 0
    for run_id, created_at, enqueued_at in pending:
        if not send_run(
            factory=ctx.factory, dispatcher=ctx.dispatcher, registry=ctx.registry, run_id=run_id, clock=ctx.clock
        ):
            break  # Redis is down (send_run said so) or the run just started: try again next tick
        sent += 1
        RESENT_RUNS.inc()
        why = _why_resent(created_at, enqueued_at)
        _audit(ctx, run_id, RunStatus.CREATED, "re-sent from the outbox: " + why, now)
        log.info("run %s re-sent from the outbox (%s)", run_id, why, extra={"run_id": run_id})
    return sent


def _why_resent(created_at: datetime, enqueued_at: datetime | None) -> str:
    """The audit note's reason. A run stamped sent when it was recorded (the API, ``request_run``) was sent
    right after its commit, unless its sender stopped in between: its note says it was due then."""
    if enqueued_at is None:
        return "never sent"
    if enqueued_at == created_at:
        return f"recorded at {enqueued_at.isoformat()} to be sent at once, but not started"
    return f"sent at {enqueued_at.isoformat()} but not started"


def fail_overrunning(ctx: Repairs, now: datetime) -> int:
    """Fail the PROCESSING runs of jobs with ``max_runtime`` that started longer ago than that.

    Not SUBMITTED runs: they may have applied items already (FAILED means nothing applied), and a
    reviewed run's runtime starts again at its submit. The worker's step check ends those.
    """
    stmt = (
        select(RUNS.c.id, RUNS.c.status, RUNS.c.started_at, JOBS.c.max_runtime)
        .join(JOBS, JOBS.c.id == RUNS.c.job_id)
        .where(
            RUNS.c.status == RunStatus.PROCESSING,
            JOBS.c.max_runtime.is_not(None),
            RUNS.c.started_at.is_not(None),
        )
        .limit(ctx.batch_size)
    )
    with ctx.factory() as session:
        rows = session.execute(stmt).all()
    overdue = [r for r in rows if r.started_at + timedelta(seconds=r.max_runtime) < now]
    if not overdue:
        return 0
    failed = []
    with ctx.write() as session:
        free = _lock_free(session, [row.id for row in overdue])
        for row in overdue:
            if row.id not in free:
                continue  # a worker is writing it right now: next tick
            error = f"exceeded max_runtime of {row.max_runtime} s"
            if transition(
                session, row.id, RunStatus.FAILED, actor=ctx.actor, expected=[RunStatus(row.status)], note=error,
                at=now, values={"error": error},
            ):
                failed.append(row)
    for row in failed:
        log.warning(
            "run %s failed: exceeded max_runtime of %s s (started %s)",
            row.id, row.max_runtime, row.started_at.isoformat(), extra={"run_id": row.id},
        )
        with ctx.factory() as session:
            run_ended(session, row.id, hooks=ctx.run_hooks)
    return len(failed)


def stop_overrunning_submitted(ctx: Repairs, now: datetime) -> int:
    """Send each SUBMITTED run over its ``max_runtime`` (counted from its submit) one final-check step.

    The worker that takes it errors the items not applied yet and ends the run INCOMPLETE or FAILED
    with the reason, even while another step of the run hangs.
    """
    submits = (
        select(RUN_EVENTS.c.run_id, func.max(RUN_EVENTS.c.at).label("at"))
        .where(RUN_EVENTS.c.from_status == RunStatus.PREVIEW, RUN_EVENTS.c.to_status == RunStatus.SUBMITTED)
        .group_by(RUN_EVENTS.c.run_id)
        .subquery()
    )
    stmt = (
        select(RUNS.c.id, RUNS.c.job_type, RUNS.c.started_at, submits.c.at.label("submitted_at"), JOBS.c.max_runtime)
        .join(JOBS, JOBS.c.id == RUNS.c.job_id)
        .outerjoin(submits, submits.c.run_id == RUNS.c.id)
        .where(RUNS.c.status == RunStatus.SUBMITTED, JOBS.c.max_runtime.is_not(None), RUNS.c.started_at.is_not(None))
        .limit(ctx.batch_size)
    )
    with ctx.factory() as session:
        rows = session.execute(stmt).all()
    overdue = [r for r in rows if (r.submitted_at or r.started_at) + timedelta(seconds=r.max_runtime) < now]
    ctx.stopping.intersection_update(r.id for r in overdue)
    sent = 0
    for row in overdue:
        if row.id in ctx.stopping:
            continue
        try:
            ctx.dispatcher.send_step(ctx.registry.get(row.job_type).queue,
                                     RunStep(run_id=row.id, phase=Phase.APPLY, chunk_no=-1))
        except BrokerUnavailable:
            break  # Redis is down: next tick
        ctx.stopping.add(row.id)
        sent += 1
        log.warning("run %s is over its max_runtime of %s s while applying: a worker ends it by what it applied",
                    row.id, row.max_runtime, extra={"run_id": row.id})
    return sent


def reclaim_stale(ctx: Repairs, now: datetime, *, timeout: timedelta | None = None) -> int:
    """Re-send the unfinished steps of runs whose worker stopped heart-beating (for ``timeout``, by default
    the heartbeat timeout; shorter right after Redis lost its data)."""
    cutoff = now - (timeout or ctx.heartbeat_timeout)
    last_sign = func.coalesce(RUNS.c.heartbeat_at, RUNS.c.started_at, RUNS.c.created_at)
    stale_filter = (
        RUNS.c.status.in_(WORKING),
        RUNS.c.job_type.in_(ctx.registry.names()),
        last_sign < cutoff,
    )
    stmt = (
        select(RUNS.c.id, RUNS.c.status, RUNS.c.job_type, RUNS.c.heartbeat_at)
        .where(*stale_filter)
        .order_by(last_sign)
        .limit(ctx.batch_size)
    )
    with ctx.factory() as session:
        candidates = session.execute(stmt).all()
    if not candidates:
        return 0
    claimed = []
    with ctx.write() as session:
        free = _lock_free(session, [row.id for row in candidates])
        for row in candidates:
            if row.id not in free:
                continue  # a worker is writing it right now, so it is not stale
            # Claim by bumping the heartbeat, unless the worker heart-beat meanwhile: one re-send
            # per timeout, not one per tick.
            result = session.execute(
                update(RUNS)
                .where(RUNS.c.id == row.id, RUNS.c.status == row.status, last_sign < cutoff)
                .values(heartbeat_at=now)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(row)
    reclaimed = 0
    for index, row in enumerate(claimed):
        steps = _resend_steps(ctx, row.id, row.status, row.job_type)
        if steps is None:
            # Redis is down: give the claims back so the next tick tries again.
            _unclaim(ctx, [(r.id, r.heartbeat_at) for r in claimed[index:]], now)
            break
        reclaimed += 1
        RECLAIMED_RUNS.inc()
        _audit(ctx, row.id, row.status, "stale (no heartbeat): re-sent " + steps, now)
        log.warning(
            "run %s (%s) stale since %s: re-sent %s",
            row.id, row.status, row.heartbeat_at.isoformat() if row.heartbeat_at else "start", steps,
            extra={"run_id": row.id},
        )
    return reclaimed


def _resend_steps(ctx: Repairs, run_id: int, status: str, job_type: str) -> str | None:
    """Send the steps a stale run still needs; a description of them, or ``None`` if Redis is down."""
    if status == RunStatus.SUBMITTED:
        count = send_apply(factory=ctx.factory, dispatcher=ctx.dispatcher, registry=ctx.registry, run_id=run_id)
        return f"{count} apply step(s)" if count else None
    with ctx.factory() as session:
        chunks = session.execute(
            select(RUN_CHUNKS.c.chunk_no, RUN_CHUNKS.c.evaluated_at)
            .where(RUN_CHUNKS.c.run_id == run_id)
            .order_by(RUN_CHUNKS.c.chunk_no)
        ).all()
    if not chunks:
        steps = [RunStep(run_id=run_id, phase=Phase.PLAN)]
    else:
        todo = [c.chunk_no for c in chunks if c.evaluated_at is None]
        # Every chunk evaluated: chunk -1 asks only for the completion check that moves the run on.
        steps = [RunStep(run_id=run_id, phase=Phase.EVALUATE, chunk_no=n) for n in todo or [-1]]
    queue = ctx.registry.get(job_type).queue
    try:
        for step in steps:
            ctx.dispatcher.send_step(queue, step)
    except BrokerUnavailable as exc:
        log.warning("stale run %s not re-sent (will retry): %s", run_id, exc.message, extra={"run_id": run_id})
        return None
    if steps[0].phase == Phase.PLAN:
        return "the plan step"
    return "evaluate chunk(s) " + ", ".join(str(s.chunk_no) for s in steps)


def _lock_free(session: Session, run_ids: list[int]) -> set[int]:
    """Lock the runs no other transaction holds (PostgreSQL ``SKIP LOCKED``): a worker frozen or slow
    inside a transaction on a run must not stall beat, whose transaction holds the lease row."""
    if not run_ids:
        return set()
    stmt = select(RUNS.c.id).where(RUNS.c.id.in_(run_ids)).with_for_update(skip_locked=True)
    return set(session.scalars(stmt))


def _audit(ctx: Repairs, run_id: int, status: str, note: str, now: datetime) -> None:
    with ctx.factory() as session, session.begin():
        record_event(session, run_id, actor=ctx.actor, note=note, status=status, at=now)


def _unclaim(ctx: Repairs, claims: list[tuple[int, datetime | None]], now: datetime) -> None:
    with ctx.factory() as session, session.begin():
        for run_id, heartbeat_at in claims:
            session.execute(
                update(RUNS).where(RUNS.c.id == run_id, RUNS.c.heartbeat_at == now).values(heartbeat_at=heartbeat_at)
            )
