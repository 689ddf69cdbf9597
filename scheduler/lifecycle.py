"""Every rule of a run's life: its status groups, the transitions allowed between statuses, the one
``transition()`` function, the decisions on which status a run moves to, and what follows its end.

Every status change of a run is a compare-and-set on its current status plus a ``run_event`` row,
in the caller's transaction: two actors racing for the same run cannot both win. The worker's hot path
makes the same change with :func:`advance` (and :func:`take`), a statement of its own that returns the run.
Whoever wins a transition into a terminal status calls :func:`run_ended` once that change is committed —
a worker finishing or failing a run, beat failing one over its ``max_runtime``, a user cancelling or
deleting one — with the process's :class:`RunHook` s (the standard ones are in :mod:`scheduler.run_hooks`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Connection, Engine, Select, String, Update, bindparam, func, insert, select, union_all, update
from sqlalchemy.orm import Session, class_mapper
from sqlmodel import col

from scheduler.clock import utcnow
from scheduler.db import UTCDateTime
from scheduler.errors import InvalidTransition, RunNotFound
from scheduler.models import ItemOutcome, Job, JobRun, RunEvent, RunItem, RunStatus

log = logging.getLogger(__name__)

S = RunStatus

# -- status groups ---------------------------------------------------------------------------------

ACTIVE: frozenset[RunStatus] = frozenset({S.CREATED, S.PROCESSING, S.PREVIEW, S.SUBMITTED})
"""Not ended yet: the overlap policy counts these, and a job's active runs are listed by them."""
RUNNING: frozenset[RunStatus] = frozenset({S.PROCESSING, S.PREVIEW, S.SUBMITTED})
"""Active and taken: a worker or a reviewer holds the run (a BUFFER_ONE run waits for these)."""
WORKING: frozenset[RunStatus] = frozenset({S.PROCESSING, S.SUBMITTED})
"""A worker is on it: the run heart-beats, and beat reclaims it when the heartbeat stops."""
REVIEWABLE: frozenset[RunStatus] = frozenset({S.PREVIEW})
"""Staged effects wait for a person: submit or delete."""
IN_PROGRESS: frozenset[RunStatus] = ACTIVE - REVIEWABLE
"""Active runs that move on by themselves (the page follows their progress)."""
TERMINAL: frozenset[RunStatus] = frozenset({S.COMPLETED, S.INCOMPLETE, S.FAILED, S.CANCELLED, S.DELETED})
"""Ended: nothing changes a run's status any more."""
FINISHED: frozenset[RunStatus] = frozenset({S.COMPLETED, S.INCOMPLETE, S.FAILED})
"""Ended by running: the outcomes that make or break a failure streak (cancelled and deleted runs do neither)."""
RETRYABLE: frozenset[RunStatus] = frozenset({S.FAILED, S.INCOMPLETE})
"""Ended with errors: they raise ``complete_error``, and a retry redoes their failed items."""

ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    S.CREATED: frozenset({S.PROCESSING, S.CANCELLED, S.FAILED}),
    S.PROCESSING: frozenset({S.PREVIEW, S.SUBMITTED, S.FAILED}),
    S.PREVIEW: frozenset({S.SUBMITTED, S.DELETED, S.FAILED}),
    S.SUBMITTED: frozenset({S.COMPLETED, S.INCOMPLETE, S.FAILED}),
    **{status: frozenset() for status in TERMINAL},
}

# User actions: the status each needs and, for status changes, the status it leads to.
ACTIONS: dict[str, tuple[frozenset[RunStatus], RunStatus | None]] = {
    "submit": (REVIEWABLE, S.SUBMITTED),
    "delete": (REVIEWABLE, S.DELETED),
    "cancel": (frozenset({S.CREATED}), S.CANCELLED),
    "retry": (RETRYABLE, None),
}


def allowed_actions(status: str) -> list[str]:
    """The user actions a run at ``status`` offers, in a stable order."""
    return [name for name, (needs, _) in ACTIONS.items() if status in needs]


# -- decisions -------------------------------------------------------------------------------------


def stops_for_review(
    *, requires_review: bool, preview: bool, held_by_type: bool, nothing_to_apply: bool = False,
    review_empty: bool = False,
) -> bool:
    """Whether an evaluated run stops at PREVIEW: its job requires review, the run asked for a preview,
    or its job type holds runs with these properties for review — unless it has nothing to apply and its
    job does not ask to review empty previews (``review_empty_previews``): then it completes at once."""
    if nothing_to_apply and not review_empty:
        return False
    return requires_review or preview or held_by_type


def final_status(counts: Mapping[str, int]) -> RunStatus:
    """The status an applied run ends in, by its items' outcomes: COMPLETED without an error, INCOMPLETE
    when some items errored and others were applied (or skipped), FAILED when nothing was applied."""
    if not counts.get(ItemOutcome.ERROR, 0):
        return S.COMPLETED
    applied = counts.get(ItemOutcome.OK, 0) + counts.get(ItemOutcome.SKIPPED, 0)
    return S.INCOMPLETE if applied else S.FAILED


def item_counts(session: Session, run_id: int) -> dict[str, int]:
    """The run's items by outcome (what its final status is decided from)."""
    outcome = col(RunItem.outcome)
    stmt = select(outcome, func.count()).where(col(RunItem.run_id) == run_id).group_by(outcome)
    return {str(outcome_): int(count) for outcome_, count in session.execute(stmt).all()}


# -- the one transition ----------------------------------------------------------------------------


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
    allowed actions for a user ``action``. The caller commits (and, for a terminal ``to``, then
    calls :func:`run_ended`).
    """
    sources = {s for s, targets in ALLOWED.items() if to in targets}
    if expected is not None:
        sources &= set(expected)
    at = at or utcnow()
    changes: dict[str, Any] = {"status": to, **(values or {})}
    if to in TERMINAL:
        changes.setdefault("finished_at", at)
    # With one possible source the compare-and-set needs no read first; the status is read only when it fails.
    current = next(iter(sources)) if len(sources) == 1 else _status(session, run_id)
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
        latest = _status(session, run_id)
        if action is not None:
            raise InvalidTransition(f"run {run_id}", latest, action, allowed_actions(latest))
        return False
    session.execute(
        insert(RunEvent).values(run_id=run_id, from_status=current, to_status=to, at=at, actor=actor, note=note)
    )
    return True


def _status(session: Session, run_id: int) -> str:
    """The run's status; :class:`RunNotFound` when there is no such run."""
    current = session.execute(select(col(JobRun.status)).where(col(JobRun.id) == run_id)).scalar_one_or_none()
    if current is None:
        raise RunNotFound(run_id)
    return str(current)


_RUN = JobRun.__table__  # type: ignore[attr-defined]
_JOB = Job.__table__  # type: ignore[attr-defined]
_EVENT = RunEvent.__table__  # type: ignore[attr-defined]
_RUN_AND_JOB = select(_RUN, _JOB).join_from(_RUN, _JOB, _JOB.c.id == _RUN.c.job_id) \
    .where(_RUN.c.id == bindparam("run_id"))


def advance(
    engine: Engine,
    run: JobRun,
    path: Sequence[tuple[RunStatus, str]],
    *,
    source: RunStatus,
    actor: str,
    at: datetime,
    values: Mapping[str, Any] | None = None,
    where: Mapping[str, Any] | None = None,
) -> JobRun | None:
    """:func:`transition` for the worker's hot path: move ``run`` from ``source`` through ``path`` (each
    ``(status, note)`` one allowed step, with its own audit row) in one compare-and-set; the run as this
    change left it (``run`` with the changed columns), ``None`` when it was not at ``source`` (someone else got
    there first). ``values``: further columns to set; ``where``: further columns the change needs to find as given.

    Its own transaction, committed on return (the caller calls :func:`run_ended` after a terminal change).
    On PostgreSQL it is one statement (the update and its audit rows in one ``WITH``), so one round trip; on
    SQLite two, in one transaction. No read precedes or follows the change.
    """
    assert run.id is not None
    changes = _changes(path, at, values or {})
    if _advance(engine, run.id, path, changes, source=source, actor=actor, at=at, where=where or {},
                with_job=False) is None:
        return None
    return as_loaded(JobRun, {**{key: getattr(run, key) for key in _RUN.c.keys()}, **changes})


def take(
    engine: Engine, run_id: int, to: tuple[RunStatus, str], *, source: RunStatus, actor: str, at: datetime,
    values: Mapping[str, Any] | None = None,
) -> tuple[JobRun, Job] | None:
    """:func:`advance` one step of run ``run_id`` that adds one to its ``attempt`` and returns the run as
    written and its job (a worker taking a run needs both): on PostgreSQL still one statement, on SQLite a
    third in the same transaction. ``None`` when it was not at ``source`` (or there is no such run)."""
    row = _advance(engine, run_id, [to], _changes([to], at, values or {}), source=source, actor=actor, at=at,
                   where={}, with_job=True)
    if row is None:
        return None
    run, job = _run_and_job_of(row, with_job=True)
    assert job is not None
    return run, job


class _Shape(NamedTuple):
    """What a change's statements depend on; its values are bound parameters."""

    postgres: bool
    hops: int
    values: tuple[str, ...]
    where: tuple[str, ...]
    with_job: bool


def _changes(path: Sequence[tuple[RunStatus, str]], at: datetime, values: Mapping[str, Any]) -> dict[str, Any]:
    """The columns a change along ``path`` sets: the last status, ``values``, and the end of a terminal one."""
    changes: dict[str, Any] = {"status": path[-1][0], **values}
    if path[-1][0] in TERMINAL:
        changes.setdefault("finished_at", at)
    return changes


def _advance(
    engine: Engine, run_id: int, path: Sequence[tuple[RunStatus, str]], changes: Mapping[str, Any], *,
    source: RunStatus, actor: str, at: datetime, where: Mapping[str, Any], with_job: bool,
) -> Sequence[Any] | None:
    """The change made: the run's id, or (``with_job``) its row and its job's; ``None`` when not made."""
    hops = list(zip([source, *(status for status, _ in path)], path, strict=False))
    for before, (after, _) in hops:
        if after not in ALLOWED[before]:
            raise ValueError(f"run {run_id}: {before} → {after} is not a transition")
    params: dict[str, Any] = {"run_id": run_id, "source": source, "at": at, "actor": actor,
                              **{f"v_{key}": value for key, value in changes.items()},
                              **{f"w_{key}": value for key, value in where.items()}}
    for n, (before, (after, note)) in enumerate(hops):
        params.update({f"from_{n}": before, f"to_{n}": after, f"note_{n}": note})
    shape = _Shape(engine.dialect.name == "postgresql", len(hops), tuple(changes), tuple(where), with_job)
    if shape.postgres:
        # A single statement is atomic: no BEGIN and COMMIT round trips around it.
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            return conn.execute(_in_one_statement(shape), params).first()
    with engine.begin() as conn:
        row = conn.execute(_change(shape).returning(*_RUN.c if with_job else [_RUN.c.id]), params).first()
        if row is None:
            return None
        conn.execute(insert(_EVENT), [{"run_id": run_id, "from_status": before, "to_status": after, "at": at,
                                       "actor": actor, "note": note} for before, (after, note) in hops])
        if with_job:
            return (*row, *conn.execute(select(_JOB).where(_JOB.c.id == row.job_id)).one())
        return row


def run_and_job(conn: Connection, run_id: int) -> tuple[JobRun, Job] | None:
    """The run and its job in one query, as plain objects; ``None`` when there is no such run."""
    row = conn.execute(_RUN_AND_JOB, {"run_id": run_id}).first()
    if row is None:
        return None
    run, job = _run_and_job_of(row, with_job=True)
    assert job is not None
    return run, job


def _run_and_job_of(row: Sequence[Any], with_job: bool) -> tuple[JobRun, Job | None]:
    """The objects of a row of ``job_run``'s columns, then (``with_job``) ``job``'s."""
    width = len(_RUN.c)
    run = as_loaded(JobRun, dict(zip(_RUN.c.keys(), row[:width], strict=True)))
    job = as_loaded(Job, dict(zip(_JOB.c.keys(), row[width:], strict=True))) if with_job else None
    return run, job


def _change(shape: _Shape) -> Update:
    """The compare-and-set: ``UPDATE job_run SET … WHERE id = :run_id AND status = :source AND …``; a taken
    run's ``attempt`` counts up."""
    changes: dict[str, Any] = {key: bindparam(f"v_{key}", type_=_RUN.c[key].type) for key in shape.values}
    if shape.with_job:
        changes["attempt"] = _RUN.c.attempt + 1
    conditions = [_RUN.c[key] == bindparam(f"w_{key}", type_=_RUN.c[key].type) for key in shape.where]
    return update(_RUN).where(_RUN.c.id == bindparam("run_id"), _RUN.c.status == bindparam("source"),
                              *conditions).values(changes)


@functools.lru_cache(maxsize=32)
def _in_one_statement(shape: _Shape) -> Select[Any]:
    """``WITH changed AS (UPDATE … RETURNING), audit AS (INSERT … SELECT FROM changed) SELECT changed[, job]``:
    the audit rows are written only when the compare-and-set changed the run (PostgreSQL). Built once per
    shape, its values bound parameters: building a statement costs more CPU than running it."""
    changed = _change(shape).returning(*_RUN.c if shape.with_job else [_RUN.c.id]).cte("changed")
    rows = [select(changed.c.id, bindparam(f"from_{n}", type_=String()), bindparam(f"to_{n}", type_=String()),
                   bindparam("at", type_=UTCDateTime()), bindparam("actor", type_=String()),
                   bindparam(f"note_{n}", type_=String())) for n in range(shape.hops)]
    audit = insert(_EVENT).from_select(["run_id", "from_status", "to_status", "at", "actor", "note"],
                                       union_all(*rows) if len(rows) > 1 else rows[0]).cte("audit")
    answer = select(changed, _JOB).join_from(changed, _JOB, _JOB.c.id == changed.c.job_id) if shape.with_job \
        else select(changed)
    return answer.add_cte(audit)


M = TypeVar("M", JobRun, Job)


def as_loaded(model: type[M], row: Mapping[str, Any]) -> M:
    """A model object from a Core row, built the way the ORM builds a loaded one: its values set as read,
    without the model's constructor (which validates and instruments every field: 50 times the cost)."""
    obj: M = class_mapper(model).class_manager.new_instance()  # class_mapper: mappers configured first
    obj.__dict__.update(row)
    return obj


# -- what follows ----------------------------------------------------------------------------------


class RunHook:
    """Something that follows a run's status changes, wherever they happen (a worker, beat, a user).

    Every hook defaults to doing nothing, so a hook names only what it does (like Dramatiq's
    ``Middleware``); the standard ones — metrics, pause on failure, mail — are in :mod:`scheduler.run_hooks`.
    """

    def on_review(self, session: Session, run: JobRun, job: Job) -> None:
        """The run stopped at PREVIEW: its staged effects wait for a person."""

    def on_end(self, session: Session, run: JobRun, job: Job, counts: Mapping[str, int]) -> None:
        """The run reached a terminal status; ``counts``: its items by outcome."""


def run_ended(
    session: Session, run_id: int, *, hooks: Sequence[RunHook], counts: Mapping[str, int] | None = None
) -> None:
    """Tell ``hooks`` that run ``run_id`` ended.

    Called once per run, by whoever won its transition into a terminal status, after that commit, with
    a session free for the hooks' own transactions. ``counts``: its items by outcome, when the caller
    has them. A hook that fails is logged; the others still run.
    """
    found = _run_and_job(session, run_id)
    if found is None or found[0].status not in TERMINAL:
        return
    run, job = found
    counts = item_counts(session, run_id) if counts is None else counts
    session.rollback()  # the reads are done: on SQLite an open transaction holds the one write lock
    announce(session, run, job, hooks=hooks, counts=counts)


def announce(
    session: Session, run: JobRun, job: Job, *, hooks: Sequence[RunHook], counts: Mapping[str, int] | None = None
) -> None:
    """:func:`run_ended` (or :func:`run_awaits_review`) for a caller that has the run as it just wrote it, its
    job and its item counts in hand: nothing is read again. ``session`` is free for the hooks' own transactions."""
    assert run.id is not None
    for hook in hooks:
        if run.status in TERMINAL:
            _call(hook.on_end, run.id, session, run, job, counts or {})
        elif run.status in REVIEWABLE:
            _call(hook.on_review, run.id, session, run, job)


def run_awaits_review(session: Session, run_id: int, *, hooks: Sequence[RunHook]) -> None:
    """Tell ``hooks`` that run ``run_id`` stopped at PREVIEW (called by whoever moved it there)."""
    found = _run_and_job(session, run_id)
    if found is None or found[0].status not in REVIEWABLE:
        return
    session.rollback()
    for hook in hooks:
        _call(hook.on_review, run_id, session, *found)


def _run_and_job(session: Session, run_id: int) -> tuple[JobRun, Job] | None:
    return run_and_job(session.connection(), run_id)


def _call(hook: Callable[..., None], run_id: int, session: Session, *args: Any) -> None:
    try:
        hook(session, *args)
    except Exception:
        session.rollback()
        log.exception("run %s: %s failed", run_id, getattr(hook, "__qualname__", hook), extra={"run_id": run_id})
