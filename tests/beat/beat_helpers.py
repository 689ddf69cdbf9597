"""Helpers for beat's tests: a dispatcher whose Redis can be "lost", and row readers."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scheduler.dispatch import Dispatcher, make_broker
from scheduler.models import Job, JobRun, RunEvent

DEAD_REDIS = "redis://127.0.0.1:1/0"

Step = tuple[int, str, int]


class SwitchableDispatcher(Dispatcher):
    """A real Redis dispatcher that can be pointed at a dead Redis to simulate an outage."""

    def __init__(self, url: str) -> None:
        super().__init__(make_broker(url), url)
        self.live = self.broker
        self.dead = make_broker(DEAD_REDIS)

    def set_down(self, down: bool) -> None:
        self.broker = self.dead if down else self.live

    def queued(self, queue: str) -> list[Step]:
        """The ``(run_id, phase, chunk_no)`` of every message waiting on ``queue``, in order."""
        client: Any = self.live.client
        ids = client.lrange(f"dramatiq:{queue}", 0, -1)
        if not ids:
            return []
        bodies = client.hmget(f"dramatiq:{queue}.msgs", ids)
        steps: list[Step] = []
        for body in bodies:
            run_id, phase, chunk_no = json.loads(body)["args"]
            steps.append((run_id, phase, chunk_no))
        return steps

    def close(self) -> None:
        for broker in (self.live, self.dead):
            broker.client.connection_pool.disconnect()

    def drain(self, queue: str) -> list[Step]:
        """The waiting messages, removed from the queue."""
        steps = self.queued(queue)
        self.live.client.delete(f"dramatiq:{queue}", f"dramatiq:{queue}.msgs")
        return steps


def runs_of(factory: sessionmaker[Session], job_id: int) -> list[JobRun]:
    with factory() as session:
        stmt = (
            select(JobRun)
            .where(JobRun.job_id == job_id)  # type: ignore[arg-type]
            .order_by(JobRun.scheduled_for, JobRun.id)  # type: ignore[arg-type]
        )
        return list(session.scalars(stmt))


def job_row(factory: sessionmaker[Session], job_id: int) -> Job:
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def run_row(factory: sessionmaker[Session], run_id: int) -> JobRun:
    with factory() as session:
        run = session.get(JobRun, run_id)
        assert run is not None
        return run


def events_of(factory: sessionmaker[Session], run_id: int) -> list[RunEvent]:
    with factory() as session:
        stmt = select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.id)  # type: ignore[arg-type]
        return list(session.scalars(stmt))


def count_runs(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.execute(select(func.count()).select_from(JobRun)).scalar_one())


def metric(name: str, **labels: str) -> float:
    """The current value of a Prometheus sample (0 when never set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
