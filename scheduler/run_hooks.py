"""The standard run hooks: what follows every run's end (and its stop for review), wherever it happens.

- :class:`RunMetrics`: ``scheduler_runs_total``, the run's duration and its items by outcome (the
  dead-man gauge of each job's last success is the beat leader's, read from the database);
- :class:`PauseOnFailure`: a FAILED run that completes its job's ``pause_on_failure`` streak pauses the job;
- :class:`MailRecipients`: mail to the job's recipients on the events they chose.

:func:`standard_hooks` gives all three, in that order, for a process's settings and actor.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy.orm import Session

from scheduler.clock import Clock
from scheduler.jobs import pause_if_failing
from scheduler.lifecycle import RunHook
from scheduler.metrics import ITEMS_TOTAL, RUN_DURATION, RUNS_TOTAL
from scheduler.models import Job, JobRun, RunStatus
from scheduler.notify import notify_run
from scheduler.settings import Settings

log = logging.getLogger(__name__)


class RunMetrics(RunHook):
    """Counts every ended run, its duration and its items (called once per run, so never twice)."""

    def on_end(self, session: Session, run: JobRun, job: Job, counts: Mapping[str, int]) -> None:
        RUNS_TOTAL.labels(job_type=run.job_type, trigger=run.trigger, status=run.status).inc()
        if run.started_at is not None and run.finished_at is not None:
            RUN_DURATION.labels(job_type=run.job_type).observe(
                max(0.0, (run.finished_at - run.started_at).total_seconds()))
        for outcome, count in counts.items():
            ITEMS_TOTAL.labels(job_type=run.job_type, outcome=outcome).inc(count)


class PauseOnFailure(RunHook):
    """Pauses a job whose FAILED run completes its ``pause_on_failure`` streak (audited as ``actor``)."""

    def __init__(self, *, clock: Clock, actor: str) -> None:
        self.clock = clock
        self.actor = actor

    def on_end(self, session: Session, run: JobRun, job: Job, counts: Mapping[str, int]) -> None:
        if run.status != RunStatus.FAILED or not job.pause_on_failure or job.id is None:
            return
        if pause_if_failing(session=session, job_id=job.id, actor=self.actor, clock=self.clock):
            log.warning("job %s paused after %s consecutive failed runs", job.id, job.pause_on_failure,
                        extra={"job_id": job.id})


class MailRecipients(RunHook):
    """Mails the job's recipients when the run raises an event they chose; best effort."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def on_review(self, session: Session, run: JobRun, job: Job) -> None:
        self._mail(session, run)

    def on_end(self, session: Session, run: JobRun, job: Job, counts: Mapping[str, int]) -> None:
        self._mail(session, run)

    def _mail(self, session: Session, run: JobRun) -> None:
        if self.settings.smtp_url and run.id is not None:
            notify_run(settings=self.settings, session=session, run_id=run.id)


def standard_hooks(*, settings: Settings | None, clock: Clock, actor: str) -> tuple[RunHook, ...]:
    """Metrics, pause on failure and mail (when ``settings`` are given), for a process acting as ``actor``."""
    hooks: tuple[RunHook, ...] = (RunMetrics(), PauseOnFailure(clock=clock, actor=actor))
    return (*hooks, MailRecipients(settings)) if settings is not None else hooks
