"""Run statuses, the transitions allowed between them, and the one ``transition()`` function.

Every status change of a run is a compare-and-set on its current status plus a ``run_event`` row,
in the caller's transaction: two actors racing for the same run cannot both win.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from scheduler.clock import utcnow
from scheduler.errors import InvalidTransition, RunNotFound
from scheduler.models import JobRun, RunEvent, RunStatus

S = RunStatus

ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    S.CREATED: frozenset({S.PROCESSING, S.CANCELLED, S.FAILED}),
    S.PROCESSING: frozenset({S.PREVIEW, S.SUBMITTED, S.FAILED}),
    S.PREVIEW: frozenset({S.SUBMITTED, S.DELETED, S.FAILED}),
    S.SUBMITTED: frozenset({S.COMPLETED, S.INCOMPLETE, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.INCOMPLETE: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.DELETED: frozenset(),
}

# User actions: the status each needs and, for status changes, the status it leads to.
ACTIONS: dict[str, tuple[frozenset[RunStatus], RunStatus | None]] = {
    "submit": (frozenset({S.PREVIEW}), S.SUBMITTED),
    "delete": (frozenset({S.PREVIEW}), S.DELETED),
    "cancel": (frozenset({S.CREATED}), S.CANCELLED),
    "retry": (frozenset({S.FAILED, S.INCOMPLETE}), None),
}


def allowed_actions(status: str) -> list[str]:
    """The user actions a run at ``status`` offers, in a stable order."""
    return [name for name, (needs, _) in ACTIONS.items() if status in needs]


def transition(
    session: Session,
    run_id: int,
    to: RunStatus,
    *,
    actor: str,
    expected: Iterable[RunStatus] | None = None,
    note: str = "",
    action: str | None = None,
    at: datetime | None = None,
    values: dict[str, Any] | None = None,
) -> bool:
    """Move run ``run_id`` to ``to`` if its status is still one of ``expected``.

    ``expected`` defaults to every status from which ``to`` is allowed. Returns ``True`` when this
    call made the change. When it did not, returns ``False`` for internal callers (``action`` is
    ``None``: someone else got there first) or raises :class:`InvalidTransition` naming the
    allowed actions for a user ``action``. The caller commits.
    """
    sources = {s for s, targets in ALLOWED.items() if to in targets}
    if expected is not None:
        sources &= set(expected)
    at = at or utcnow()
    changes: dict[str, Any] = {"status": to, **(values or {})}
    if to in (S.COMPLETED, S.INCOMPLETE, S.FAILED, S.CANCELLED, S.DELETED):
        changes.setdefault("finished_at", at)
    current = session.execute(select(col(JobRun.status)).where(col(JobRun.id) == run_id)).scalar_one_or_none()
    if current is None:
        raise RunNotFound(run_id)
    changed = False
    if current in sources:
        # Compare-and-set on the status just read: a concurrent change makes this a no-op.
        result = session.execute(
            update(JobRun)
            .where(col(JobRun.id) == run_id, col(JobRun.status) == current)
            .values(**changes)
            .execution_options(synchronize_session=False)
        )
        changed = result.rowcount == 1  # type: ignore[attr-defined]
    if not changed:
        if action is not None:
            latest = session.execute(select(col(JobRun.status)).where(col(JobRun.id) == run_id)).scalar_one()
            raise InvalidTransition(f"run {run_id}", latest, action, allowed_actions(latest))
        return False
    session.execute(
        insert(RunEvent).values(run_id=run_id, from_status=current, to_status=to, at=at, actor=actor, note=note)
    )
    return True
