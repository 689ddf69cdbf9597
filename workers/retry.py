"""Helpers for retry runs (trigger ``RETRY``, ``retry_of`` set): redo only what failed in the original run."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlmodel import col

from scheduler.jobtypes import RunContext
from scheduler.models import ItemOutcome, JobRun, RunItem


def failed_item_keys(ctx: RunContext) -> list[str] | None:
    """The keys of the items that errored in the run this one retries, or ``None`` for "everything".

    ``None`` when the run is not a retry, or when the original run failed before applying anything
    (it has no applied or errored items, so the whole run must be redone).
    """
    if ctx.retry_of is None:
        return None
    return errored_keys(ctx.engine, ctx.retry_of)


def errored_keys(engine: Engine, run_id: int) -> list[str] | None:
    with engine.connect() as conn:
        reached_apply = conn.execute(
            select(func.count())
            .select_from(RunItem)
            .where(col(RunItem.run_id) == run_id, col(RunItem.outcome) != ItemOutcome.PLANNED)
        ).scalar_one()
        if not reached_apply:
            return None
        keys = conn.execute(
            select(col(RunItem.item_key))
            .where(col(RunItem.run_id) == run_id, col(RunItem.outcome) == ItemOutcome.ERROR)
            .order_by(RunItem.item_key)
        ).scalars()
        return list(keys)


def original_as_of(engine: Engine, run: JobRun) -> datetime:
    """The as-of instant of a run: its tick, else its creation; a retry keeps its first run's."""
    as_of = run.scheduled_for or run.created_at
    retry_of = run.retry_of
    seen: set[int] = set()
    with engine.connect() as conn:
        while retry_of is not None and retry_of not in seen:
            seen.add(retry_of)
            row = conn.execute(
                select(col(JobRun.scheduled_for), col(JobRun.created_at), col(JobRun.retry_of))
                .where(col(JobRun.id) == retry_of)
            ).first()
            if row is None:
                break
            as_of = row.scheduled_for or row.created_at
            retry_of = row.retry_of
    return as_of
