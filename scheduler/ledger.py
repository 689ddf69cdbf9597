"""The run ledger: scheduled and backfill runs are written under ``UNIQUE(job_id, scheduled_for)``.

Whoever writes a tick's run first wins; every later attempt for the same tick — a second beat, a
replayed tick, a backfill — inserts nothing. This is the last line of defence against duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from scheduler.models import JobRun, RunEvent, RunStatus


def insert_ignore(session: Session, table: Any) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` in the session's dialect."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database dialect {dialect}")


def insert_tick_runs(
    session: Session,
    *,
    job_id: int,
    job_type: str,
    ticks: Sequence[datetime],
    trigger: str,
    actor: str,
    at: datetime,
    note: str,
    preview: bool = False,
) -> list[tuple[int, datetime]]:
    """Insert one ``CREATED`` run per tick unless the tick already has one; returns ``(run id, tick)`` inserted.

    Each inserted run gets its ``None → CREATED`` audit event in the same transaction. The caller commits.
    """
    if not ticks:
        return []
    rows = [
        {
            "job_id": job_id, "job_type": job_type, "trigger": trigger, "scheduled_for": tick,
            "status": RunStatus.CREATED, "preview": preview, "run_properties": {}, "created_by": actor,
            "created_at": at, "attempt": 0, "chunks_total": 0, "chunks_done": 0, "summary": {},
        }
        for tick in ticks
    ]
    stmt = (
        insert_ignore(session, JobRun)
        .on_conflict_do_nothing(index_elements=["job_id", "scheduled_for"])
        .returning(JobRun.id, JobRun.scheduled_for)
    )
    inserted = [(int(r[0]), r[1]) for tick_row in rows for r in session.execute(stmt.values(**tick_row))]
    if inserted:
        session.execute(
            insert(RunEvent),
            [
                {"run_id": run_id, "from_status": None, "to_status": RunStatus.CREATED, "at": at, "actor": actor,
                 "note": note}
                for run_id, _ in inserted
            ],
        )
    return inserted
