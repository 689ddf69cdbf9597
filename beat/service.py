"""The beat service: each tick turns due jobs into runs, then repairs what was left unsent or stale.

A tick (:meth:`Beat.tick`) never sleeps, so tests drive it with a frozen clock:

1. lease: acquire or renew the leader lease; a standby does nothing else;
2. due jobs: ``next_fire_at <= now``, oldest first, a bounded batch (``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL); their runs are inserted through the unique ledger and ``next_fire_at`` advanced, in
   one transaction that also checks the lease epoch; committed, *then* sent;
3. outbox: created runs never sent (or not started in time) are sent again;
4. repairs: runs over ``max_runtime`` fail (or, while applying, are ended by a worker); stale runs get
   their unfinished steps re-sent (sooner for a while after Redis lost its data, :mod:`beat.broker_loss`).

:meth:`Beat.run_forever` loops ticks, sleeping until the earliest ``next_fire_at`` (at most
``beat_max_sleep_seconds``) or a wake-up message, and rides out database and Redis outages.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import FrameType
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from beat.broker_loss import BrokerWatch
from beat.cluster_metrics import ClusterMetrics
from beat.lease import LeaderLease
from beat.metrics import BEAT_LEADER, BEAT_TICK
from beat.misfire import MissReason
from beat.recovery import (
    UNSENT_GRACE,
    Repairs,
    fail_overrunning,
    reclaim_stale,
    resend_outbox,
    stop_overrunning_submitted,
)
from beat.scheduling import TickRun, earliest_fire, record_misses, schedule_due_jobs, select_due_jobs
from beat.wakeup import WakeListener
from scheduler.clock import Clock, SystemClock
from scheduler.db import is_sqlite, make_engine, make_session_factory, pool_options
from scheduler.dispatch import SCHEDULER_QUEUE, Dispatcher, make_dispatcher
from scheduler.errors import DatabaseUnavailable, SchedulerError, StaleLeader, first_line
from scheduler.health import Pulse, Readiness
from scheduler.jobtypes import JobTypeRegistry, load_registry
from scheduler.logs import configure_logging
from scheduler.metrics import FIRE_LAG, serve_metrics, start_at_zero
from scheduler.notify import REVIEW_BLOCKING, notify_run
from scheduler.outage import Outage
from scheduler.redact import redact
from scheduler.run_hooks import standard_hooks
from scheduler.runs import send_runs
from scheduler.settings import Settings

log = logging.getLogger(__name__)

MAX_DB_BACKOFF = 30.0
BATCH_SIZE = 1_000
"""Due jobs a tick takes at most (a full batch ticks again at once); also bounds each repair pass."""
LIVENESS_GRACE = 60.0
"""Seconds a pass of beat's loop may overrun its announced sleep before ``/healthz`` calls beat stuck."""


@dataclass(kw_only=True)
class TickResult:
    """What one tick did."""

    leader: bool
    epoch: int | None = None
    due_jobs: int = 0
    created: list[int] = field(default_factory=list)
    """Ids of the runs this tick inserted."""
    sent: int = 0
    missed: dict[str, int] = field(default_factory=dict)
    """Ticks that got no run, by reason."""
    resent: int = 0
    reclaimed: int = 0
    timed_out: int = 0
    more_due: bool = False
    """The due batch was full: tick again at once."""
    next_fire_at: datetime | None = None
    """The earliest ``next_fire_at`` of any active job after this tick."""


def new_beat_id() -> str:
    return f"beat-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Beat:
    """One beat replica. Only the holder of the leader lease schedules anything."""

    def __init__(
        self,
        settings: Settings,
        db: Engine | sessionmaker[Session],
        registry: JobTypeRegistry,
        dispatcher: Dispatcher,
        clock: Clock,
        beat_id: str | None = None,
        *,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.settings = settings
        self.factory = db if isinstance(db, sessionmaker) else make_session_factory(db)
        self.registry = registry
        self.dispatcher = dispatcher
        self.clock = clock
        self.beat_id = beat_id or new_beat_id()
        self.batch_size = batch_size
        self.grace = timedelta(seconds=max(5.0, 2 * settings.beat_max_sleep_seconds))
        self.lease = LeaderLease(
            self.factory, holder=self.beat_id, lease_seconds=settings.beat_lease_seconds, clock=clock
        )
        self.repairs = Repairs(
            factory=self.factory,
            run_hooks=standard_hooks(settings=settings, clock=clock, actor=self.beat_id),
            dispatcher=dispatcher,
            registry=registry,
            clock=clock,
            actor=self.beat_id,
            heartbeat_timeout=timedelta(seconds=settings.run_heartbeat_timeout),
            resend_after=timedelta(seconds=settings.outbox_resend_after),
            batch_size=batch_size,
            write=self.fenced,
        )
        self.wakeups = WakeListener(dispatcher.broker.client)
        self.leading = False
        self.cluster_metrics = ClusterMetrics(
            factory=self.factory, redis_client=dispatcher.broker.client, job_types=registry.names,
            queues=lambda: [*registry.queues(), SCHEDULER_QUEUE], clock=clock,
            heartbeat_timeout=timedelta(seconds=settings.run_heartbeat_timeout), unsent_grace=UNSENT_GRACE,
        )
        """Served by :func:`run` while this beat leads (see :mod:`beat.cluster_metrics`)."""
        self.pulse = Pulse(grace=LIVENESS_GRACE)
        """``/healthz``: alive while each pass (a tick, or a failed tick waited out with backoff while the
        database is down) ends within its sleep plus :data:`LIVENESS_GRACE`; a tick stuck in a call is not."""
        self.broker_watch = BrokerWatch(
            client=dispatcher.broker.client, holder=self.beat_id,
            heartbeat_timeout=timedelta(seconds=settings.run_heartbeat_timeout),
        )

    @contextmanager
    def fenced(self) -> Iterator[Session]:
        """A write transaction that first checks this beat still holds the lease (else StaleLeader)."""
        with self.factory() as session, session.begin():
            self.lease.fence(session)
            yield session

    def _set_leading(self, leading: bool) -> None:
        """Record whether this beat leads: ``scheduler_beat_leader``, and whether it serves the cluster gauges."""
        self.leading = leading
        BEAT_LEADER.set(1 if leading else 0)
        if not leading:
            self.cluster_metrics.clear()

    def tick(self) -> TickResult:
        """One pass: lease, due jobs, outbox, repairs. Database errors propagate to the caller."""
        started = time.perf_counter()
        leader = self.lease.ensure()
        self._set_leading(leader)
        result = TickResult(leader=leader, epoch=self.lease.epoch)
        if not leader:
            self.broker_watch.ping()  # scheduler_broker_up and the outage lines, on a standby too
            return result
        try:
            self._tick_as_leader(result)
        except StaleLeader as exc:
            log.warning("%s", exc.message)
            self._set_leading(False)
            result.leader = False
        BEAT_TICK.observe(time.perf_counter() - started)
        return result

    def _tick_as_leader(self, result: TickResult) -> None:
        now = self.clock.now()
        job_types = self.registry.names()
        self.broker_watch.check(now)
        with self.fenced() as session:
            jobs = select_due_jobs(session, now=now, job_types=job_types, limit=self.batch_size)
            outcome = schedule_due_jobs(session, jobs, now=now, grace=self.grace, actor=self.beat_id)
        # Committed: the runs exist whatever happens next. Count the misses, then send.
        result.due_jobs = outcome.jobs
        result.more_due = outcome.jobs >= self.batch_size
        result.created = [r.run_id for r in outcome.new_runs]
        result.missed = record_misses(outcome.misses)
        self._mail_review_blocks(outcome.newly_blocking)
        result.timed_out = fail_overrunning(self.repairs, now)
        if self.broker_watch.reachable:
            # While Redis is down the runs stay recorded (the outbox); the first tick after sends them all.
            result.sent = self._send_new(outcome.new_runs)
            lost_at = self.broker_watch.window(now)
            result.resent = resend_outbox(self.repairs, now, lost_at=lost_at)
            stop_overrunning_submitted(self.repairs, now)
            result.reclaimed = reclaim_stale(
                self.repairs, now, timeout=self.broker_watch.idle_after if lost_at is not None else None
            )
        result.more_due = result.more_due or result.resent >= self.batch_size
        with self.factory() as session:
            result.next_fire_at = earliest_fire(session, job_types=job_types)

    def _mail_review_blocks(self, run_ids: list[int]) -> None:
        """Mail the recipients of each preview that has just made its job skip a tick (once per preview)."""
        for run_id in run_ids:
            log.warning("run %s awaits review and its job skips its scheduled ticks until then", run_id,
                        extra={"run_id": run_id})
            with self.factory() as session:
                notify_run(settings=self.settings, session=session, run_id=run_id, events=[REVIEW_BLOCKING])

    def _send_new(self, runs: list[TickRun]) -> int:
        """Send the runs this tick recorded in one Redis round trip; held runs wait for the outbox."""
        for run in runs:
            if run.hold:
                log.info("run %s of job %s waits for the job's running run (BUFFER_ONE)", run.run_id, run.job_id,
                         extra={"run_id": run.run_id, "job_id": run.job_id, "job_type": run.job_type})
        to_send = [run for run in runs if not run.hold]
        sent = set(send_runs(factory=self.factory, dispatcher=self.dispatcher, registry=self.registry,
                             runs=[(run.run_id, run.job_type) for run in to_send], clock=self.clock))
        # Recorded but not sent (Redis down): the outbox sends them on a later tick.
        now = self.clock.now()
        for run in to_send:
            if run.run_id in sent:
                FIRE_LAG.labels(job_type=run.job_type).observe(max(0.0, (now - run.scheduled_for).total_seconds()))
        if sent:
            log.info("%d run(s) sent, ticks %s to %s", len(sent), min(r.scheduled_for for r in to_send).isoformat(),
                     max(r.scheduled_for for r in to_send).isoformat())
            for run in to_send:
                log.debug("run %s of job %s sent for tick %s", run.run_id, run.job_id, run.scheduled_for.isoformat(),
                          extra={"run_id": run.run_id, "job_id": run.job_id, "job_type": run.job_type})
        return len(sent)

    def sleep_seconds(self, result: TickResult) -> float:
        """Until the earliest fire, at most ``beat_max_sleep_seconds``; nothing when more is due."""
        longest = self.settings.beat_max_sleep_seconds
        if result.more_due:
            return 0.0
        if not result.leader or result.next_fire_at is None:
            return longest
        return max(0.0, min(longest, (result.next_fire_at - self.clock.now()).total_seconds()))

    def run_forever(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set, then release the lease. Outages are logged once and waited out."""
        log.info("beat %s started (lease %s s, max sleep %s s; database %s, Redis %s)", self.beat_id,
                 self.settings.beat_lease_seconds, self.settings.beat_max_sleep_seconds,
                 redact(self.settings.resolved_database_url), redact(self.dispatcher.url))
        outage = Outage(service="database", setting="SCHEDULER_DATABASE_URL", meanwhile="beat paused until it is back",
                        resumed="beat resumed", log=log)
        failures = 0
        try:
            while not stop.is_set():
                try:
                    result = self.tick()
                except (DBAPIError, DatabaseUnavailable) as exc:
                    # The lease may be lost meanwhile: re-acquire it (same epoch if nobody took it).
                    led = self.lease.epoch
                    self.lease.forget()
                    self._set_leading(False)
                    outage.failed(_outage_reason(exc, stepped_down=led))
                    failures += 1
                    self._wait(_backoff(failures), stop)
                    continue
                except Exception:
                    log.exception("beat tick failed; retrying")
                    failures += 1
                    self._wait(_backoff(failures), stop)
                    continue
                outage.recovered()
                failures = 0
                sleep = self.sleep_seconds(result)
                self.pulse.beat(sleep)
                self.wakeups.wait(sleep, stop)
        finally:
            self.wakeups.close()
            try:
                if self.lease.state is not None:
                    self.lease.release()
                    self.dispatcher.wake_beat()  # a standby sleeping on the wake channel takes over at once
            except DBAPIError as exc:
                log.warning("beat %s could not release the lease (it expires by itself): %s", self.beat_id,
                            first_line(exc))
            self._set_leading(False)
            log.info("beat %s stopped", self.beat_id)


    def _wait(self, backoff: float, stop: threading.Event) -> None:
        """Wait out a failed tick: deliberately, so the loop counts as alive (see :attr:`pulse`)."""
        self.pulse.beat(backoff)
        stop.wait(backoff)


def _backoff(failures: int) -> float:
    """Seconds to wait after the ``failures``-th failed tick in a row: doubling from 0.5 s, at most the maximum."""
    return float(min(MAX_DB_BACKOFF, 0.5 * 2 ** min(failures - 1, 6)))


def _outage_reason(exc: BaseException, *, stepped_down: int | None) -> str:
    """The database's complaint, with a hint when it looks unmigrated and whether this beat stepped down as the
    leader (``stepped_down``: the epoch it held)."""
    reason = first_line(exc)
    if isinstance(exc, ProgrammingError) or "no such table" in reason:
        reason += " (is the database migrated? run `scheduler migrate`)"
    if stepped_down is not None:
        reason += f"; this beat is no longer the leader (epoch {stepped_down}) until it holds the lease again"
    return reason


def engine_options(settings: Settings) -> dict[str, Any]:
    """On PostgreSQL, end a transaction of this beat left idle for half a lease.

    A beat frozen (SIGSTOP, a paused VM) inside a tick holds the lease row and its due jobs locked;
    without a limit no standby could take over until it woke. The server ends such a session, the
    frozen tick rolls back, and a standby takes over once the lease expires.
    """
    if is_sqlite(settings.resolved_database_url):
        return {}
    idle_ms = max(2000, int(settings.beat_lease_seconds * 1000 / 2))
    return {"connect_args": {"options": f"-c idle_in_transaction_session_timeout={idle_ms}"}}


def run(settings: Settings) -> None:
    """Run beat until SIGTERM or SIGINT (``python -m beat`` and ``scheduler beat``)."""
    configure_logging(settings, service="beat")
    settings.require("database_url", "redis_url", process="beat")
    engine = make_engine(settings.resolved_database_url, **engine_options(settings), **pool_options(settings))
    registry = load_registry(settings)
    dispatcher = make_dispatcher(settings)
    beat = Beat(settings, engine, registry, dispatcher, SystemClock())
    start_at_zero(registry.names(), missed_reasons=MissReason.ALL)
    readiness = Readiness.of_urls(settings.resolved_database_url, dispatcher.url, settings.redactor(), settings)
    stop = threading.Event()
    REGISTRY.register(beat.cluster_metrics)
    threading.Thread(target=beat.cluster_metrics.run, args=(stop, lambda: beat.leading), name="cluster metrics",
                     daemon=True).start()
    metrics = serve_metrics(settings.metrics_host, settings.beat_metrics_port, what="beat",
                            liveness=beat.pulse.answer, readiness=readiness.answer)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("beat %s got %s; stopping and releasing the lease", beat.beat_id, signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        beat.run_forever(stop)
    finally:
        engine.dispose()
        if metrics is not None:
            metrics.shutdown()
            metrics.server_close()


def main(settings: Settings | None = None) -> int:
    """Entry point of ``python -m beat``; returns the exit status (2 with one line on a known error)."""
    try:
        run(settings or Settings())
    except SchedulerError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return 2
    return 0
