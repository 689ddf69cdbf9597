"""Turning due jobs into runs, inside beat's fenced write transaction.

For each due job: which ticks get a run (misfire policy, :mod:`beat.misfire`), how many the overlap
policy admits, the runs inserted through the unique ledger ``(job_id, scheduled_for)`` with
``INSERT … ON CONFLICT DO NOTHING``, one ``run_event`` per inserted run, and ``next_fire_at``
advanced past now. Nothing is sent here: the caller commits first, then sends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.orm import Session

from beat.misfire import SAMPLE, MissedTicks, MissReason, TickPlan, plan_ticks
from beat.tables import JOBS, RUNS
from scheduler.cron import CronSchedule
from scheduler.cron_hash import job_hash_seed
from scheduler.errors import InvalidInput
from scheduler.lifecycle import ACTIVE, RUNNING
from scheduler.metrics import MISSED_TICKS
from scheduler.models import JobStatus, OverlapPolicy, RunStatus, RunTrigger
from scheduler.review_blocks import record_skipped_ticks
from scheduler.run_creation import NewRun, create_runs

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TickRun:
    """A run this tick inserted, to send once the transaction has committed."""

    run_id: int
    job_id: int
    job_type: str
    scheduled_for: datetime
    hold: bool = False
    """BUFFER_ONE: another run of the job is running, so this one waits unsent (the outbox sends it)."""


@dataclass(frozen=True, kw_only=True)
class JobMisses:
    """Missed ticks of one job, counted and logged only after the transaction commits."""

    job_id: int
    job_name: str
    job_type: str
    groups: list[MissedTicks]


@dataclass(kw_only=True)
class ScheduleOutcome:
    new_runs: list[TickRun] = field(default_factory=list)
    misses: list[JobMisses] = field(default_factory=list)
    jobs: int = 0
    newly_blocking: list[int] = field(default_factory=list)
    """Previews awaiting review that made their job skip a tick for the first time (their recipients are mailed)."""


ScheduleKey = tuple[str, str, str | None]
"""What a schedule depends on: expression, zone, and the job's name only when an ``H`` field spreads by it."""


def schedule_key(cron: str, timezone: str, job_name: str) -> ScheduleKey:
    return cron, timezone, job_name if "H" in cron.upper() else None


def schedule_of(cron: str, timezone: str, job_name: str) -> CronSchedule:
    """Parsed schedules, cached: job definitions are immutable, and jobs with the same plain expression and
    zone share one parse."""
    return _parsed(*schedule_key(cron, timezone, job_name))


@lru_cache(maxsize=16384)
def _parsed(cron: str, timezone: str, job_name: str | None) -> CronSchedule:
    return CronSchedule.parse(cron, timezone, seed=job_hash_seed(job_name) if job_name is not None else None)


@dataclass(frozen=True, kw_only=True)
class DueJob:
    """What a tick reads of a due job: its schedule and policies (a job's definition never changes)."""

    id: int
    name: str
    job_type: str
    cron: str
    timezone: str
    next_fire_at: datetime
    misfire_policy: str
    catchup_window: int
    max_catchup_runs: int
    overlap_policy: str


_DUE_COLUMNS = [JOBS.c[name] for name in DueJob.__dataclass_fields__]


def select_due_jobs(session: Session, *, now: datetime, job_types: list[str], limit: int) -> list[DueJob]:
    """Due jobs, oldest first; on PostgreSQL locked, skipping rows another beat holds."""
    stmt = (
        select(*_DUE_COLUMNS)
        .where(
            JOBS.c.status == JobStatus.ACTIVE,
            JOBS.c.next_fire_at <= now,
            JOBS.c.cron.is_not(None),
            JOBS.c.job_type.in_(job_types),
        )
        .order_by(JOBS.c.next_fire_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [DueJob(**row._mapping) for row in session.execute(stmt)]


def earliest_fire(session: Session, *, job_types: list[str]) -> datetime | None:
    stmt = select(func.min(JOBS.c.next_fire_at)).where(
        JOBS.c.status == JobStatus.ACTIVE, JOBS.c.job_type.in_(job_types)
    )
    earliest: datetime | None = session.execute(stmt).scalar_one_or_none()
    return earliest


def active_run_counts(session: Session, job_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Per job, how many runs are in each active status."""
    stmt = (
        select(RUNS.c.job_id, RUNS.c.status, func.count())
        .where(RUNS.c.job_id.in_(list(job_ids)), RUNS.c.status.in_(ACTIVE))
        .group_by(RUNS.c.job_id, RUNS.c.status)
    )
    counts: dict[int, dict[str, int]] = {}
    for job_id, status, count in session.execute(stmt).all():
        counts.setdefault(job_id, {})[status] = count
    return counts


def overlap_capacity(policy: str, *, waiting: int, running: int) -> int | None:
    """How many new runs the overlap policy admits now (``None``: no limit)."""
    if policy == OverlapPolicy.ALLOW:
        return None
    if policy == OverlapPolicy.BUFFER_ONE:
        return max(0, 1 - waiting)
    return 0 if waiting or running else 1


@dataclass(frozen=True, kw_only=True)
class _JobTicks:
    """One due job's part of a tick: the ticks admitted, where it fires next, the ticks it misses."""

    job: DueJob
    admitted: list[datetime]
    next_fire: datetime | None
    hold: bool
    groups: list[MissedTicks]


def schedule_due_jobs(
    session: Session,
    jobs: list[DueJob],
    *,
    now: datetime,
    grace: timedelta,
    actor: str,
) -> ScheduleOutcome:
    """Insert the runs of ``jobs`` (already selected and, on PostgreSQL, locked) and advance them.

    The runs of every job are inserted together, set-based, through the unique ledger.
    """
    outcome = ScheduleOutcome(jobs=len(jobs))
    counts = active_run_counts(session, [job.id for job in jobs])
    planner = _Planner(now=now, grace=grace)
    planned = [_plan_job(job, planner=planner, counts=counts) for job in jobs]
    wanted = [
        NewRun(job_id=p.job.id, job_type=p.job.job_type, trigger=RunTrigger.SCHEDULED, scheduled_for=tick)
        for p in planned for tick in p.admitted
    ]
    created = {(run.job_id, run.scheduled_for): run.run_id
               for run in create_runs(session=session, runs=wanted, actor=actor, at=now)}
    advances: list[tuple[int, datetime | None, datetime | None]] = []
    for p in planned:
        job = p.job
        latest_run: datetime | None = None
        for tick in p.admitted:
            run_id = created.get((job.id, tick))
            if run_id is None:
                # Already in the ledger (another beat, a backfill): that tick has its run.
                log.info("job %s tick %s already has a run", job.id, tick.isoformat(), extra={"job_id": job.id})
                continue
            latest_run = tick
            outcome.new_runs.append(
                TickRun(run_id=run_id, job_id=job.id, job_type=job.job_type, scheduled_for=tick, hold=p.hold)
            )
        advances.append((job.id, p.next_fire, latest_run))
        for group in p.groups:
            if group.reason == MissReason.AWAITING_REVIEW:
                ticks = list(group.sample) or ([group.last] if group.last else [])
                noted = record_skipped_ticks(session, job.id, count=group.count, ticks=ticks, at=now, actor=actor)
                if noted is not None and noted[1]:
                    outcome.newly_blocking.append(noted[0])
        if p.groups:
            outcome.misses.append(JobMisses(job_id=job.id, job_name=job.name, job_type=job.job_type,
                                            groups=p.groups))
    advance_jobs(session, advances)
    return outcome


class _Planner:
    """One tick's plans: jobs due together with the same schedule and policies (month-end: thousands of jobs
    on a few expressions) share one misfire plan and one next fire time, computed once."""

    def __init__(self, *, now: datetime, grace: timedelta) -> None:
        self.now = now
        self.grace = grace
        self._plans: dict[tuple[Any, ...], TickPlan] = {}
        self._next: dict[ScheduleKey, datetime | None] = {}

    def plan(self, key: ScheduleKey, schedule: CronSchedule, job: DueJob) -> TickPlan:
        memo = (key, job.next_fire_at, job.misfire_policy, job.catchup_window, job.max_catchup_runs)
        if (plan := self._plans.get(memo)) is None:
            plan = self._plans[memo] = plan_ticks(
                schedule, next_fire_at=job.next_fire_at, now=self.now, grace=self.grace, policy=job.misfire_policy,
                catchup_window=timedelta(seconds=job.catchup_window), max_catchup_runs=job.max_catchup_runs,
            )
        return plan

    def next_fire(self, key: ScheduleKey, schedule: CronSchedule) -> datetime | None:
        """The schedule's first fire after now; ``None`` when it never fires again."""
        if key not in self._next:
            try:
                self._next[key] = schedule.next_after(self.now)
            except InvalidInput:
                self._next[key] = None
        return self._next[key]


def _plan_job(job: DueJob, *, planner: _Planner, counts: dict[int, dict[str, int]]) -> _JobTicks:
    """Which ticks of a due job get a run now (misfire, then overlap policy), and its next fire time."""
    key = schedule_key(job.cron, job.timezone, job.name)
    try:
        schedule = _parsed(*key)
    except InvalidInput as exc:
        # Refused at creation, so only a hand-edited row gets here: stop it firing, say why.
        log.error("job %s has an unusable schedule and will not fire: %s", job.id, exc.message,
                  extra={"job_id": job.id})
        return _JobTicks(job=job, admitted=[], next_fire=None, hold=False, groups=[])
    plan = planner.plan(key, schedule, job)
    by_status = counts.get(job.id, {})
    waiting = by_status.get(RunStatus.CREATED, 0)
    running = sum(by_status.get(s, 0) for s in RUNNING)
    groups = list(plan.missed)
    reason = MissReason.AWAITING_REVIEW if by_status.get(RunStatus.PREVIEW) else MissReason.OVERLAP
    admitted = _admit(plan, job.overlap_policy, waiting=waiting, running=running, groups=groups, reason=reason)
    next_fire = planner.next_fire(key, schedule)
    if next_fire is None:
        log.info("job %s has no fire time after %s; it will not fire again", job.id, planner.now.isoformat(),
                 extra={"job_id": job.id})
    hold = job.overlap_policy == OverlapPolicy.BUFFER_ONE and running > 0
    return _JobTicks(job=job, admitted=admitted, next_fire=next_fire, hold=hold, groups=groups)


def _admit(
    plan: TickPlan, policy: str, *, waiting: int, running: int, groups: list[MissedTicks], reason: str
) -> list[datetime]:
    """The planned ticks the overlap policy lets through (the latest ones); records the others under ``reason``."""
    capacity = overlap_capacity(policy, waiting=waiting, running=running)
    ticks = plan.run_ticks
    if capacity is None or len(ticks) <= capacity:
        return ticks
    refused = ticks[: len(ticks) - capacity]
    groups.append(
        MissedTicks(reason=reason, count=len(refused), sample=tuple(refused[:SAMPLE]), last=refused[-1])
    )
    return ticks[len(ticks) - capacity :]


def advance_jobs(session: Session, advances: list[tuple[int, datetime | None, datetime | None]]) -> None:
    """Set each ``(job_id, next_fire_at, last_scheduled_for)`` in one statement (a ``None`` last tick keeps
    the job's own): on PostgreSQL one ``UPDATE … FROM json_to_recordset``, elsewhere one executemany."""
    if not advances:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "UPDATE job SET next_fire_at = u.next_fire_at, "
                "last_scheduled_for = COALESCE(u.last_scheduled_for, job.last_scheduled_for) "
                "FROM json_to_recordset(CAST(:jobs AS json)) "
                "AS u(id integer, next_fire_at timestamptz, last_scheduled_for timestamptz) WHERE job.id = u.id"
            ),
            {"jobs": json.dumps([
                {"id": job_id, "next_fire_at": _iso(next_fire), "last_scheduled_for": _iso(last)}
                for job_id, next_fire, last in advances
            ])},
        )
        return
    session.execute(
        update(JOBS)
        .where(JOBS.c.id == bindparam("job_id"))
        .values(next_fire_at=bindparam("next_fire", type_=JOBS.c.next_fire_at.type),
                last_scheduled_for=func.coalesce(bindparam("last", type_=JOBS.c.last_scheduled_for.type),
                                                 JOBS.c.last_scheduled_for)),
        [{"job_id": job_id, "next_fire": next_fire, "last": last} for job_id, next_fire, last in advances],
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def record_misses(misses: Iterable[JobMisses]) -> dict[str, int]:
    """Count every tick that got no run in ``scheduler_missed_ticks_total`` and log it; never silent."""
    totals: dict[str, int] = {}
    for job in misses:
        for group in job.groups:
            MISSED_TICKS.labels(job_type=job.job_type, reason=group.reason).inc(group.count)
            totals[group.reason] = totals.get(group.reason, 0) + group.count
            expected = group.reason in (MissReason.OVERLAP, MissReason.AWAITING_REVIEW)
            level = logging.INFO if expected else logging.WARNING
            extra = {"job_id": job.job_id, "reason": group.reason}
            for tick in group.sample:
                log.log(level, "job %s (%s): tick %s not run: %s", job.job_id, job.job_name, tick.isoformat(),
                        group.reason, extra=extra)
            rest = group.count - len(group.sample)
            if rest > 0:
                log.log(
                    level,
                    "job %s (%s): %s%s more tick(s) up to %s not run: %s",
                    job.job_id,
                    job.job_name,
                    "at least " if group.at_least else "",
                    rest,
                    group.last.isoformat() if group.last else "the runs made",
                    group.reason,
                    extra=extra,
                )
    return totals
