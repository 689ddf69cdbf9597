"""Ticks a preview awaiting review makes its job skip: recorded, shown on the job, never silent.

Under the overlap policy ``skip`` (and ``buffer_one`` once its one waiting run exists), a run at PREVIEW
keeps its job's next ticks from running. Beat records each skip on the preview run, in the same
transaction that advances the job: an audit note (``run_event``) and the running total in the run's
summary (``summary["review_blocked"]``: ``ticks``, ``first``, ``last``). ``GET /jobs/{id}`` shows the
blocking preview with those figures, and the job's recipients are mailed once per preview.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.models import JobRun, RunEvent, RunStatus

SUMMARY_KEY = "review_blocked"


@dataclass(frozen=True, kw_only=True)
class ReviewBlock:
    """A job's preview awaiting review and the ticks it has made the job skip."""

    run_id: int
    awaiting_since: datetime | None
    skipped_ticks: int
    first_skipped: str | None
    last_skipped: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "awaiting_since": self.awaiting_since, "skipped_ticks": self.skipped_ticks,
                "first_skipped": self.first_skipped, "last_skipped": self.last_skipped}


def blocking_preview(session: Session, job_id: int) -> JobRun | None:
    """The job's oldest run awaiting review, if any."""
    return session.scalars(
        select(JobRun).where(col(JobRun.job_id) == job_id, col(JobRun.status) == RunStatus.PREVIEW)
        .order_by(col(JobRun.id)).limit(1)
    ).first()


def record_skipped_ticks(
    session: Session, job_id: int, *, count: int, ticks: list[datetime], at: datetime, actor: str
) -> tuple[int, bool] | None:
    """Note ``count`` skipped ticks (``ticks``: the earliest few) on the job's blocking preview.

    Returns ``(run_id, first)`` — ``first`` when these are the preview's first skipped ticks (mail then) —
    or ``None`` when the job has no preview awaiting review. The caller commits.
    """
    run = blocking_preview(session, job_id)
    if run is None or run.id is None or count <= 0:
        return None
    before = dict(run.summary.get(SUMMARY_KEY) or {})
    shown = ", ".join(t.isoformat() for t in ticks)
    more = count - len(ticks)
    first, last = ticks[0].isoformat() if ticks else None, ticks[-1].isoformat() if ticks else None
    blocked = {"ticks": int(before.get("ticks", 0)) + count, "first": before.get("first") or first,
               "last": last or before.get("last")}
    session.execute(update(JobRun).where(col(JobRun.id) == run.id)
                    .values(summary={**run.summary, SUMMARY_KEY: blocked})
                    .execution_options(synchronize_session=False))
    note = (f"scheduled tick{'s' if count > 1 else ''} {shown}{f' and {more} more' if more > 0 else ''} skipped: "
            "this preview awaits review (the job's overlap policy runs nothing while it waits)")
    session.add(RunEvent(run_id=run.id, from_status=RunStatus.PREVIEW, to_status=RunStatus.PREVIEW, at=at,
                         actor=actor, note=note[:2000]))
    return run.id, not before


def review_block(session: Session, job_id: int) -> ReviewBlock | None:
    """What ``GET /jobs/{id}`` shows: the preview holding the job up, since when, and the ticks skipped."""
    run = blocking_preview(session, job_id)
    if run is None or run.id is None:
        return None
    since = session.scalar(
        select(func.max(col(RunEvent.at))).where(col(RunEvent.run_id) == run.id,
                                                 col(RunEvent.to_status) == RunStatus.PREVIEW,
                                                 col(RunEvent.from_status) != RunStatus.PREVIEW)
    )
    blocked = dict(run.summary.get(SUMMARY_KEY) or {})
    return ReviewBlock(run_id=run.id, awaiting_since=since, skipped_ticks=int(blocked.get("ticks", 0)),
                       first_skipped=blocked.get("first"), last_skipped=blocked.get("last"))
