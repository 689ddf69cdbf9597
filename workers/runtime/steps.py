"""The worker's Dramatiq actors, declared on a given broker: one run-step actor per job type queue,
plus ``request_run`` on the ``scheduler`` queue for other services.

The worker environment (databases, dispatcher) is built lazily, once per worker process, on the
first message, so forking the worker processes never shares a connection pool.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.broker import Broker
from dramatiq.middleware import CurrentMessage

from scheduler.dispatch import REQUEST_RUN_ACTOR, SCHEDULER_QUEUE, step_actor_name
from scheduler.jobtypes import JobTypeRegistry
from scheduler.run_requests import RequestDesk
from workers.runtime.env import WorkerEnv
from workers.runtime.executor import execute_step
from workers.runtime.outage import is_database_outage, ride_out

log = logging.getLogger(__name__)

EnvProvider = Callable[[], WorkerEnv]
REQUEST_RETRIES = 10
"""Tries of a ``request_run`` message cut off by a database outage before it is dead-lettered."""
REQUEST_MIN_BACKOFF_MS = 1_000
REQUEST_MAX_BACKOFF_MS = 60_000


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

    def request_run(*args: Any, **kwargs: Any) -> None:
        """Record and send the run another service asks for; nothing is returned (see scheduler.run_requests)."""
        current = CurrentMessage.get_current_message()
        request_desk(env()).handle(args, kwargs, message_id=current.message_id if current is not None else None)

    if not any(isinstance(m, CurrentMessage) for m in broker.middleware):
        broker.add_middleware(CurrentMessage())
    declared[REQUEST_RUN_ACTOR] = dramatiq.actor(
        actor_name=REQUEST_RUN_ACTOR, queue_name=SCHEDULER_QUEUE, broker=broker,
        retry_when=_retry_request, min_backoff=REQUEST_MIN_BACKOFF_MS, max_backoff=REQUEST_MAX_BACKOFF_MS,
    )(request_run)
    return declared


def _step_function(env: EnvProvider) -> Callable[[int, str, int], None]:
    def run_step(run_id: int, phase: str, chunk_no: int = 0) -> None:
        # A step cut off by a database outage runs again once the database answers (steps are idempotent).
        ride_out(lambda: execute_step(env(), run_id, phase, chunk_no), what=f"run {run_id}: {phase} step {chunk_no}")

    return run_step


def _retry_request(retries: int, exc: BaseException) -> bool:
    """A request cut off by a database outage is retried (with backoff), then dead-lettered; nothing else is."""
    return retries < REQUEST_RETRIES and is_database_outage(exc)


def request_desk(env: WorkerEnv) -> RequestDesk:
    return RequestDesk(factory=env.factory, registry=env.registry, dispatcher=env.dispatcher, clock=env.clock,
                       retention=timedelta(days=env.settings.refused_requests_retention_days))
