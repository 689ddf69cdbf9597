"""Retry runs (trigger ``RETRY``, ``retry_of`` set) keep their first run's as-of instant."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select
from sqlmodel import col

from scheduler.models import JobRun


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
