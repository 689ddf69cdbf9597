"""The executor's status decisions: end of evaluation, final status, failures, runtime limit, metrics.

Exactly one worker wins each of these transitions (a compare-and-set in ``transition()``); only the
winner records metrics and sends notifications.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.error_text import explain
from scheduler.jobkit.sql import SqlDialect
from scheduler.jobtypes import RunContext
from scheduler.lifecycle import (
    advance,
    announce,
    final_status,
    run_ended,
    stops_for_review,
    transition,
)
from scheduler.models import ItemOutcome, Job, JobRun, RunEvent, RunItem, RunStatus
from scheduler.notify import item_error_text
from scheduler.outcomes import ItemTally, item_tally
from scheduler.review_blocks import SUMMARY_KEY
from workers.runtime.outage import is_database_outage

if TYPE_CHECKING:
    from workers.runtime.env import WorkerEnv

log = logging.getLogger(__name__)

S = RunStatus


def error_planned_items(
    session: Session, run_id: int, message: str, *, chunk_no: int | None = None, while_status: str | None = None
) -> int:
    """Record the run's (or one chunk's) still-planned items as errors with ``message`` (only while the run
    is at ``while_status``, when given)."""
    dialect = SqlDialect(session.get_bind().dialect.name)
    where = "run_id = :run_id AND outcome = :planned"
    params: dict[str, Any] = {"run_id": run_id, "planned": ItemOutcome.PLANNED, "error": ItemOutcome.ERROR,
                              "message": message}
    if chunk_no is not None:
        where += " AND chunk_no = :chunk_no"
        params["chunk_no"] = chunk_no
    if while_status is not None:
        where += " AND EXISTS (SELECT 1 FROM job_run WHERE id = :run_id AND status = :while_status)"
        params["while_status"] = while_status
    merged = dialect.json_merge("detail", [("error", dialect.text_param("message"))])
    result = session.execute(text(f"UPDATE run_item SET outcome = :error, detail = {merged} WHERE {where}"), params)
    return int(result.rowcount)  # type: ignore[attr-defined]


def run_summary(
    env: WorkerEnv, run: JobRun, ctx: RunContext | None, *, has_items: bool = True
) -> tuple[dict[str, Any], dict[str, int]]:
    """The job type's summary plus item counts by outcome; a failing ``summarize`` is noted, not raised.

    ``has_items=False``: the caller knows the run has no items (it planned no chunk), so none are counted.
    """
    assert run.id is not None
    counts, reasons, refusal = ItemTally({}, {}, None)
    if has_items:
        with env.factory() as session:
            counts, reasons, refusal = item_tally(session, run.id)
    summary: dict[str, Any] = {}
    if ctx is not None:
        try:
            summary = dict(env.registry.get(run.job_type).summarize(ctx))
        except Exception as exc:
            if is_database_outage(exc):
                raise  # the step runs again once the database is back
            log.exception("run %s: summarize failed", run.id)
            summary = {"summary_error": explain(exc)}
    summary["items"] = counts
    summary["reasons"] = reasons
    if SUMMARY_KEY in run.summary:  # the ticks this run skipped while it awaited review stay on record
        summary[SUMMARY_KEY] = run.summary[SUMMARY_KEY]
    if refusal is not None:
        summary["retry_unavailable"] = refusal
    return summary, counts


def fail_run(env: WorkerEnv, run: JobRun, job: Job, error: str) -> bool:
    """End a run that applied nothing as ``FAILED`` with ``error``; ``False`` if it had moved on."""
    assert run.id is not None
    summary, counts = run_summary(env, run, None)
    now = env.clock.now()
    with env.factory() as session:
        won = transition(
            session, run.id, S.FAILED, actor=env.worker_id, expected=[S.CREATED, S.PROCESSING], at=now,
            note=error[:500], values={"error": error, "summary": summary, "heartbeat_at": now},
        )
        session.commit()
    if won:
        _terminal(env, run.id, counts)
    return won


def finish_evaluation(env: WorkerEnv, run: JobRun, job: Job, ctx: RunContext | None) -> RunStatus | None:
    """Every chunk is evaluated: stop at ``PREVIEW`` for review, or go on to ``SUBMITTED``.

    Returns the status this call moved the run to, ``None`` when another worker did it first.
    """
    assert run.id is not None
    summary, counts = run_summary(env, run, ctx)
    now = env.clock.now()
    review = stops_for_review(
        requires_review=job.requires_review, preview=run.preview,
        held_by_type=ctx is not None and env.registry.get(run.job_type).holds_for_review(ctx.properties),
        nothing_to_apply=not counts.get(ItemOutcome.PLANNED), review_empty=job.review_empty_previews,
    )
    target = S.PREVIEW if review else S.SUBMITTED
    values: dict[str, Any] = {"summary": summary, "heartbeat_at": now}
    if target is S.SUBMITTED:
        values["chunks_done"] = 0
    note = "staged for review" if review else "evaluated; applying" if counts.get(ItemOutcome.PLANNED) \
        else "evaluated: nothing to apply"
    moved = advance(env.engine, run, [(target, note)], source=S.PROCESSING, actor=env.worker_id, at=now,
                    values=values)
    if moved is None:
        return None
    log.info("run %s: %s", run.id, target)
    if target is S.PREVIEW:
        with env.factory() as session:
            announce(session, moved, job, hooks=env.run_hooks)
    return target


def finish_empty(env: WorkerEnv, run: JobRun, job: Job, ctx: RunContext) -> RunStatus | None:
    """A ``PROCESSING`` run whose plan yielded no chunk: nothing to evaluate or apply, so it goes on at once,
    in one transaction — to ``PREVIEW`` when its job reviews empty previews, else through ``SUBMITTED`` to
    ``COMPLETED`` (an audit row for each step). It has no items, so none are counted.

    Returns the status this call moved the run to, ``None`` when another worker planned it first.
    """
    assert run.id is not None
    summary, counts = run_summary(env, run, ctx, has_items=False)
    now = env.clock.now()
    review = stops_for_review(
        requires_review=job.requires_review, preview=run.preview,
        held_by_type=env.registry.get(run.job_type).holds_for_review(ctx.properties),
        nothing_to_apply=True, review_empty=job.review_empty_previews,
    )
    path = [(S.PREVIEW, "staged for review")] if review else [(S.SUBMITTED, "evaluated: nothing to apply"),
                                                              (S.COMPLETED, "")]
    ended = advance(env.engine, run, path, source=S.PROCESSING, actor=env.worker_id, at=now,
                    where={"chunks_total": 0},
                    values={"summary": summary, "error": None, "heartbeat_at": now, "chunks_done": 0})
    if ended is None:
        return None
    log.info("run %s: %s, no chunk planned", run.id, ended.status)  # the one line of the whole run
    with env.factory() as session:
        announce(session, ended, job, hooks=env.run_hooks, counts=counts)
    return RunStatus(ended.status)


def finish_if_applied(
    env: WorkerEnv, run: JobRun, job: Job, ctx: RunContext | None, *, error: str | None = None
) -> bool:
    """Every chunk is applied: ``COMPLETED``, ``INCOMPLETE`` or ``FAILED`` by the items' outcomes.

    ``run`` and ``job`` as the step read them; ``False`` when the run was no longer ``SUBMITTED``.
    """
    assert run.id is not None
    with env.factory() as session:
        # An item the job type left planned was not applied: it is an error, not a silent success.
        error_planned_items(session, run.id, error or "not applied by the job type", while_status=S.SUBMITTED)
        session.commit()
    summary, counts = run_summary(env, run, ctx)
    status = final_status(counts)
    message = None if status is S.COMPLETED else error or _first_error(env, run.id, counts)
    now = env.clock.now()
    ended = advance(env.engine, run, [(status, message[:500] if message else "")], source=S.SUBMITTED,
                    actor=env.worker_id, at=now, values={"summary": summary, "error": message, "heartbeat_at": now})
    if ended is None:
        return False
    log.info("run %s: %s %s", run.id, status, counts)
    with env.factory() as session:
        announce(session, ended, job, hooks=env.run_hooks, counts=counts)
    return True


def _first_error(env: WorkerEnv, run_id: int, counts: dict[str, int]) -> str:
    errored = counts.get(ItemOutcome.ERROR, 0)
    total = errored + counts.get(ItemOutcome.OK, 0) + counts.get(ItemOutcome.SKIPPED, 0)
    with env.factory() as session:
        first = session.execute(
            select(col(RunItem.item_key), col(RunItem.detail))
            .where(col(RunItem.run_id) == run_id, col(RunItem.outcome) == ItemOutcome.ERROR)
            .order_by(col(RunItem.id))
            .limit(1)
        ).first()
    reason = f"{first[0]}: {item_error_text(first[1] or {})}" if first else "no item recorded"
    return f"{errored} of {total} items failed; first: {reason}"[:2000]


def submitted_at(env: WorkerEnv, run: JobRun) -> datetime | None:
    """When applying started: the submit of a reviewed preview, else the run's start."""
    with env.factory() as session:
        at = session.scalar(
            select(func.max(RunEvent.at)).where(
                col(RunEvent.run_id) == run.id,
                col(RunEvent.from_status) == S.PREVIEW,
                col(RunEvent.to_status) == S.SUBMITTED,
            )
        )
    return at or run.started_at


def runtime_exceeded(job: Job, started: datetime | None, now: datetime) -> str | None:
    """The reason a run past its job's ``max_runtime`` must stop, or ``None``."""
    if not job.max_runtime or started is None:
        return None
    elapsed = (now - started).total_seconds()
    if elapsed <= job.max_runtime:
        return None
    return f"exceeded max_runtime of {job.max_runtime}s (running for {int(elapsed)}s)"


def _terminal(env: WorkerEnv, run_id: int, counts: dict[str, int]) -> None:
    with env.factory() as session:
        run_ended(session, run_id, hooks=env.run_hooks, counts=counts)
