"""Cluster-wide gauges, read by the beat that holds the lease and served by it alone.

Runs in each status, stale runs, each job's last success and expected interval, queue depths and the
outbox backlog describe the whole installation, not one process: every replica counting them would
double them in ``sum()``. The leader reads them from the database and Redis every few seconds in a
thread of its own (never in the tick), and :meth:`ClusterMetrics.collect` serves the last reading; a
standby (or a leader that stepped down) serves none. Because they are read, not counted, they survive
restarts: the last success of every job is what the database says.

Each reading is a handful of aggregate queries (``GROUP BY`` over the indexed status of active runs) and
one Redis pipeline; every :data:`SLOW_EVERY` seconds the active scheduled jobs are listed and the runs
completed since the last reading read (``(status, finished_at)`` index; a new leader reads every job's
last success once); a job's expected interval is computed once per cron expression and zone.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from beat.tables import JOBS, RUNS
from scheduler.clock import Clock
from scheduler.cron import CronSchedule
from scheduler.errors import SchedulerError
from scheduler.lifecycle import ACTIVE, WORKING
from scheduler.models import JobStatus, RunStatus

log = logging.getLogger(__name__)

REFRESH_EVERY = 5.0
"""Seconds between two readings of the cheap gauges (run counts, queues, outbox)."""
SLOW_EVERY = 30.0
"""Seconds between two readings of each job's last success (one aggregate over completed runs)."""
REBUILD_EVERY = 600.0
"""Seconds after which the job list is read again even if its fingerprint did not change."""
LATE_COMMIT = timedelta(minutes=5)
"""A run's ``finished_at`` is written by its worker; one committed this much later than another with a later
``finished_at`` is still read (the readings overlap by this much)."""
INTERVAL_FIRES = 25
"""Fires looked at for a job's expected interval: the longest gap between them."""
QUEUE_STATES = ("ready", "delayed", "dead")


@dataclass
class Reading:
    """One reading of the cluster-wide figures."""

    runs_in_status: dict[tuple[str, str], int] = field(default_factory=dict)
    stale_runs: dict[str, int] = field(default_factory=dict)
    last_success: dict[tuple[str, str], float] = field(default_factory=dict)
    """``(job_name, job_type)`` → Unix time of the job's last COMPLETED run."""
    expected_interval: dict[tuple[str, str], float] = field(default_factory=dict)
    queue_depth: dict[tuple[str, str], int] = field(default_factory=dict)
    """``(queue, state)`` → messages; absent while Redis is unreachable."""
    outbox_backlog: int = 0
    outbox_oldest_seconds: float = 0.0


def queue_depths(client: Any, queues: list[str], namespace: str = "dramatiq") -> dict[tuple[str, str], int]:
    """Messages per Dramatiq queue on Redis: ready (the queue's list), delayed (its ``.DQ`` messages, waiting
    or held by a worker until due) and dead-lettered (its ``.XQ`` set)."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(f"{namespace}:{queue}")
        pipe.hlen(f"{namespace}:{queue}.DQ.msgs")
        pipe.zcard(f"{namespace}:{queue}.XQ")
    counts = pipe.execute()
    return {(queue, state): int(counts[3 * n + k]) for n, queue in enumerate(queues)
            for k, state in enumerate(QUEUE_STATES)}


def expected_interval(cron: str, timezone: str, now: datetime) -> float | None:
    """The longest gap, in seconds, between the next :data:`INTERVAL_FIRES` fires of a schedule."""
    try:
        fires = [f.utc for f in CronSchedule.parse(cron, timezone).next_fires(now, INTERVAL_FIRES)]
    except SchedulerError:
        return None
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(fires)]
    return max(gaps) if gaps else None


class ClusterMetrics(Collector):
    """The leader's cluster-wide gauges: :meth:`refresh` reads them, :meth:`collect` serves the last reading."""

    def __init__(
        self,
        *,
        factory: sessionmaker[Session],
        redis_client: Any,
        job_types: Callable[[], list[str]],
        queues: Callable[[], list[str]],
        clock: Clock,
        heartbeat_timeout: timedelta,
        unsent_grace: timedelta,
    ) -> None:
        self.factory = factory
        self.redis_client = redis_client
        self.job_types = job_types
        self.queues = queues
        self.clock = clock
        self.heartbeat_timeout = heartbeat_timeout
        self.unsent_grace = unsent_grace
        self.reading: Reading | None = None
        self._slow_at = 0.0
        self._intervals: dict[tuple[str, str], float | None] = {}
        self._generation = 0
        """Counts :meth:`clear` calls: a reading under way when this beat stepped down is not served."""
        self._successes: dict[int, float] = {}
        self._fingerprint: tuple[Any, ...] = ()
        """Count, sum and max of the active scheduled jobs' ids at the last listing: unchanged, no new listing."""
        self._rebuild_at = 0.0
        self._jobs: dict[int, tuple[tuple[str, str], tuple[str, str]]] = {}
        """Job id → ``(job_name, job_type)`` and ``(cron, timezone)``: fixed for a job's life."""
        self._watermark: datetime | None = None
        """The latest ``finished_at`` read: the next reading asks only for runs completed after it."""
        self._lock = threading.Lock()

    def describe(self) -> list[Any]:
        return []  # nothing fixed: registering must not read

    def refresh(self) -> Reading:
        """Read every figure now; the last successes only every :data:`SLOW_EVERY` seconds."""
        now = self.clock.now()
        with self._lock:
            previous, generation = self.reading, self._generation
        reading = Reading()
        with self.factory() as session:
            self._read_runs(session, reading, now)
            if previous is None or time.monotonic() - self._slow_at >= SLOW_EVERY:
                self._read_jobs(session, reading, previous, now)
                self._slow_at = time.monotonic()
            else:
                reading.last_success = previous.last_success
                reading.expected_interval = previous.expected_interval
        try:
            reading.queue_depth = queue_depths(self.redis_client, self.queues())
        except (redis.RedisError, OSError):
            reading.queue_depth = {}  # unknown while Redis is down: scheduler_broker_up says so
        with self._lock:
            if generation == self._generation:  # not cleared meanwhile (this beat stepped down)
                self.reading = reading
        return reading

    def clear(self) -> None:
        """Serve nothing (a standby, or a leader that stepped down)."""
        with self._lock:
            self._generation += 1
            self.reading = None
            self._slow_at = 0.0
            self._successes = {}
            self._fingerprint = ()
            self._watermark = None  # a new leadership restores them from the database

    def _read_runs(self, session: Session, reading: Reading, now: datetime) -> None:
        job_types = self.job_types()
        counts = session.execute(
            select(RUNS.c.job_type, RUNS.c.status, func.count())
            .where(RUNS.c.status.in_(ACTIVE))
            .group_by(RUNS.c.job_type, RUNS.c.status)
        ).all()
        found = {(str(job_type), str(status)): int(n) for job_type, status, n in counts}
        for job_type in sorted(set(job_types) | {t for t, _ in found}):
            for status in sorted(ACTIVE):
                reading.runs_in_status[(job_type, status.value)] = found.get((job_type, status.value), 0)
        last_sign = func.coalesce(RUNS.c.heartbeat_at, RUNS.c.started_at, RUNS.c.created_at)
        stale = {str(job_type): int(n) for job_type, n in session.execute(
            select(RUNS.c.job_type, func.count())
            .where(RUNS.c.status.in_(WORKING),
                   last_sign < now - self.heartbeat_timeout)
            .group_by(RUNS.c.job_type)
        )}
        reading.stale_runs = {job_type: stale.get(job_type, 0) for job_type in
                              sorted(set(job_types) | set(stale))}
        backlog, oldest = session.execute(
            select(func.count(), func.min(RUNS.c.created_at))
            .where(RUNS.c.status == RunStatus.CREATED, RUNS.c.enqueued_at.is_(None),
                   RUNS.c.created_at < now - self.unsent_grace)
        ).one()
        reading.outbox_backlog = int(backlog)
        reading.outbox_oldest_seconds = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0

    def _read_jobs(self, session: Session, reading: Reading, previous: Reading | None, now: datetime) -> None:
        scheduled = (JOBS.c.status == JobStatus.ACTIVE, JOBS.c.cron.is_not(None))
        fingerprint = tuple(session.execute(
            select(func.count(), func.coalesce(func.sum(JOBS.c.id), 0), func.max(JOBS.c.id)).where(*scheduled)
        ).one())
        new_successes = self._read_successes(session)
        if previous is not None and fingerprint == self._fingerprint and time.monotonic() < self._rebuild_at:
            # The same jobs as last time: patch the last reading with the runs completed since.
            reading.last_success = dict(previous.last_success)
            reading.expected_interval = previous.expected_interval
            for job_id, finished in new_successes.items():
                if job_id in self._jobs:
                    reading.last_success[self._jobs[job_id][0]] = finished
            return
        active = session.scalars(select(JOBS.c.id).where(*scheduled)).all()
        # A job's definition never changes: only the jobs not seen yet are read in full.
        unseen = [job_id for job_id in active if job_id not in self._jobs]
        for start in range(0, len(unseen), 10_000):
            for job_id, name, job_type, cron, zone in session.execute(
                select(JOBS.c.id, JOBS.c.name, JOBS.c.job_type, JOBS.c.cron, JOBS.c.timezone)
                .where(JOBS.c.id.in_(unseen[start:start + 10_000]))
            ):
                self._jobs[job_id] = ((str(name), str(job_type)), (str(cron), str(zone or "UTC")))
        for job_id in active:
            key, schedule = self._jobs[job_id]
            if (success := self._successes.get(job_id)) is not None:
                reading.last_success[key] = success
            if schedule not in self._intervals:
                self._intervals[schedule] = expected_interval(*schedule, now)
            if (interval := self._intervals[schedule]) is not None:
                reading.expected_interval[key] = interval
        self._fingerprint = fingerprint
        self._rebuild_at = time.monotonic() + REBUILD_EVERY

    def _read_successes(self, session: Session) -> dict[int, float]:
        """Each job's last COMPLETED run (Unix time): all of them at a leader's first reading (restored from
        the database), then only the runs completed since (the ``(status, finished_at)`` index).

        Returns the jobs whose last success is new since the last reading; :attr:`_successes` holds all.
        """
        stmt = (
            select(RUNS.c.job_id, func.max(RUNS.c.finished_at))
            .where(RUNS.c.status == RunStatus.COMPLETED, RUNS.c.finished_at.is_not(None))
            .group_by(RUNS.c.job_id)
        )
        if self._watermark is not None:
            stmt = stmt.where(RUNS.c.finished_at > self._watermark - LATE_COMMIT)
        changed: dict[int, float] = {}
        for job_id, finished in session.execute(stmt):
            if finished is None:
                continue
            moment = finished.timestamp()
            if moment > self._successes.get(job_id, 0.0):
                self._successes[job_id] = changed[job_id] = moment
            if self._watermark is None or finished > self._watermark:
                self._watermark = finished
        if self._watermark is None:
            self._watermark = self.clock.now()
        return changed

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            reading = self.reading
        if reading is None:
            return
        families = [
            _family("scheduler_runs_in_status", "Runs currently in each non-terminal status.",
                    ["job_type", "status"], reading.runs_in_status),
            _family("scheduler_stale_runs", "PROCESSING/SUBMITTED runs whose heartbeat is older than the timeout.",
                    ["job_type"], {(k,): v for k, v in reading.stale_runs.items()}),
            _family("scheduler_job_last_success_timestamp_seconds", "Unix time of the job's last COMPLETED run.",
                    ["job_name", "job_type"], reading.last_success),
            _family("scheduler_job_expected_interval_seconds",
                    "The longest gap between the job's next fire times.", ["job_name", "job_type"],
                    reading.expected_interval),
            _family("scheduler_queue_depth", "Messages per queue: ready, delayed, dead (dead-lettered).",
                    ["queue", "state"], reading.queue_depth),
            _family("scheduler_outbox_backlog", "Runs recorded but not yet sent to Redis.", [],
                    {(): reading.outbox_backlog}),
            _family("scheduler_outbox_oldest_seconds", "Age of the oldest run recorded but not yet sent.", [],
                    {(): reading.outbox_oldest_seconds}),
        ]
        yield from families

    def run(self, stop: threading.Event, leading: Callable[[], bool]) -> None:
        """Refresh every :data:`REFRESH_EVERY` seconds while ``leading()``; clear otherwise; until ``stop``."""
        failing = False
        while not stop.is_set():
            if not leading():
                self.clear()
            else:
                try:
                    self.refresh()
                    failing = False
                except Exception as exc:
                    if not failing:
                        log.warning("cluster-wide metrics not refreshed (kept the last reading): %s",
                                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                    failing = True
            stop.wait(REFRESH_EVERY)


def _family(name: str, documentation: str, labels: list[str], values: Mapping[Any, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), float(value))
    return family
