"""What a worker needs to execute run steps, built once per worker process and passed down."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from scheduler.clock import Clock, SystemClock
from scheduler.db import make_engine, make_session_factory, pool_options
from scheduler.dispatch import Dispatcher
from scheduler.jobtypes import JobTypeRegistry, load_registry
from scheduler.lifecycle import RunHook
from scheduler.run_hooks import standard_hooks
from scheduler.settings import Settings
from workers.runtime.heartbeat import RunHeartbeat


@dataclass(frozen=True, kw_only=True)
class WorkerEnv:
    """Settings, databases, job types, the dispatcher and the clock of one worker process."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    billing_engine: Engine
    registry: JobTypeRegistry
    dispatcher: Dispatcher
    clock: Clock
    worker_id: str
    heartbeat: RunHeartbeat | None = None

    @property
    def run_hooks(self) -> tuple[RunHook, ...]:
        """What follows a run this worker ends or stops for review: metrics, pause on failure, mail."""
        return standard_hooks(settings=self.settings, clock=self.clock, actor=self.worker_id)


def default_worker_id() -> str:
    return f"worker:{socket.gethostname()}:{os.getpid()}"


def build_env(
    settings: Settings,
    *,
    dispatcher: Dispatcher,
    registry: JobTypeRegistry | None = None,
    clock: Clock | None = None,
    engine: Engine | None = None,
    billing_engine: Engine | None = None,
    worker_id: str | None = None,
    heartbeat: bool = True,
) -> WorkerEnv:
    """A :class:`WorkerEnv`; the billing engine is the scheduler's own when both URLs are the same."""
    pool = pool_options(settings)
    engine = engine or make_engine(settings.resolved_database_url, **pool)
    if billing_engine is None:
        same = settings.resolved_billing_database_url == settings.resolved_database_url
        billing_engine = engine if same else make_engine(settings.resolved_billing_database_url, **pool)
    factory = make_session_factory(engine)
    clock = clock or SystemClock()
    beat = None
    if heartbeat:
        interval = max(0.5, min(5.0, settings.run_heartbeat_timeout / 3))
        beat = RunHeartbeat(factory, clock, interval=interval)
    return WorkerEnv(
        settings=settings,
        engine=engine,
        factory=factory,
        billing_engine=billing_engine,
        registry=registry or load_registry(settings),
        dispatcher=dispatcher,
        clock=clock,
        worker_id=worker_id or default_worker_id(),
        heartbeat=beat,
    )
