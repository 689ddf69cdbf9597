"""The worker's Dramatiq actors, declared on a given broker: one run-step actor per job type queue,
plus ``request_run`` on the ``scheduler`` queue for other services.

The worker environment (databases, dispatcher) is built lazily, once per worker process, on the
first message, so forking the worker processes never shares a connection pool.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.broker import Broker
from sqlalchemy import select
from sqlmodel import col

from scheduler.dispatch import REQUEST_RUN_ACTOR, SCHEDULER_QUEUE, step_actor_name
from scheduler.errors import JobNotFound, SchedulerError
from scheduler.jobtypes import JobTypeRegistry
from scheduler.metrics import REFUSED_REQUESTS
from scheduler.models import Job, JobStatus
from scheduler.runs import RunCreate, create_manual_run, send_run
from workers.runtime.env import WorkerEnv
from workers.runtime.executor import execute_step
from workers.runtime.outage import ride_out

log = logging.getLogger(__name__)

EnvProvider = Callable[[], WorkerEnv]


class LazyEnv:
    """Builds the :class:`WorkerEnv` on first use, once per process."""

    def __init__(self, build: EnvProvider) -> None:
        self._build = build
        self._env: WorkerEnv | None = None
        self._lock = threading.Lock()

    def __call__(self) -> WorkerEnv:
        if self._env is None:
            with self._lock:
                if self._env is None:
                    self._env = self._build()
        return self._env


def declare_actors(broker: Broker, registry: JobTypeRegistry, env: EnvProvider) -> dict[str, Any]:
    """Declare the step actors of every job type queue and ``request_run``; returns them by name."""
    declared: dict[str, Any] = {}
    for queue in registry.queues():
        name = step_actor_name(queue)
        declared[name] = dramatiq.actor(actor_name=name, queue_name=queue, broker=broker, max_retries=0)(
            _step_function(env)
        )

    def request_run(
        job: int | str,
        run_properties: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        preview: bool = False,
    ) -> int | None:
        """Record a manual run of ``job`` (id or name) and send it; returns the run id."""
        return record_requested_run(env(), job, run_properties or {}, idempotency_key, preview)

    declared[REQUEST_RUN_ACTOR] = dramatiq.actor(
        actor_name=REQUEST_RUN_ACTOR, queue_name=SCHEDULER_QUEUE, broker=broker, max_retries=0
    )(request_run)
    return declared


def _step_function(env: EnvProvider) -> Callable[[int, str, int], None]:
    def run_step(run_id: int, phase: str, chunk_no: int = 0) -> None:
        # A step cut off by a database outage runs again once the database answers (steps are idempotent).
        ride_out(lambda: execute_step(env(), run_id, phase, chunk_no), what=f"run {run_id}: {phase} step {chunk_no}")

    return run_step


def resolve_job_id(env: WorkerEnv, job: int | str) -> int:
    """A job id from an id or the name of a job that is not archived."""
    if isinstance(job, int) or (isinstance(job, str) and job.isdigit()):
        return int(job)
    with env.factory() as session:
        job_id = session.scalar(
            select(col(Job.id)).where(col(Job.name) == job, col(Job.status) != JobStatus.ARCHIVED)
        )
    if job_id is None:
        raise JobNotFound(job)
    return int(job_id)


def record_requested_run(
    env: WorkerEnv, job: int | str, run_properties: dict[str, Any], idempotency_key: str | None, preview: bool
) -> int | None:
    """What ``request_run`` does; a refused request is logged (a retry would be refused again)."""
    try:
        job_id = resolve_job_id(env, job)
        with env.factory() as session:
            run, created = create_manual_run(
                session=session, registry=env.registry, actor="dramatiq:request_run", clock=env.clock,
                run_in=RunCreate(job_id=job_id, preview=preview, run_properties=run_properties),
                idempotency_key=idempotency_key,
            )
            assert run.id is not None
            run_id = run.id
    except SchedulerError as exc:
        REFUSED_REQUESTS.labels(reason=exc.code).inc()
        log.warning("request_run for job %r refused: %s", job, exc.message)
        return None
    if created:
        send_run(factory=env.factory, dispatcher=env.dispatcher, registry=env.registry, run_id=run_id,
                 clock=env.clock)
    log.info("request_run: job %r → run %s (%s)", job, run_id, "new" if created else "existing")
    return run_id
