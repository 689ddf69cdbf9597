"""Fixtures for beat: a fake job type on a private queue, a real Redis dispatcher, beats, rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from beat_fake_types import FakeJobType, fake_type
from beat_helpers import SwitchableDispatcher
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from beat.service import Beat
from scheduler.clock import Clock, FrozenClock
from scheduler.db import make_session_factory
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import Job, JobRun, RunChunk, RunTrigger
from scheduler.settings import Settings


@pytest.fixture
def job_type() -> FakeJobType:
    return fake_type(f"beat_test_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def beat_registry(job_type: FakeJobType) -> JobTypeRegistry:
    return JobTypeRegistry([job_type])


@pytest.fixture
def dispatcher(redis_url: str, job_type: FakeJobType) -> Iterator[SwitchableDispatcher]:
    d = SwitchableDispatcher(redis_url)
    yield d
    d.drain(job_type.queue)
    d.close()


@pytest.fixture
def beat_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        beat_lease_seconds=10,
        beat_max_sleep_seconds=1,
        run_heartbeat_timeout=30,
        outbox_resend_after=30,
    )


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def make_beat(
    beat_settings: Settings,
    factory: sessionmaker[Session],
    beat_registry: JobTypeRegistry,
    dispatcher: SwitchableDispatcher,
    clock: FrozenClock,
) -> Callable[..., Beat]:
    """Beats on the test database; each may have its own id and clock."""

    def make(beat_id: str = "beat-a", *, beat_clock: Clock | None = None, **kwargs: Any) -> Beat:
        return Beat(beat_settings, factory, beat_registry, dispatcher, beat_clock or clock, beat_id, **kwargs)

    return make


@pytest.fixture
def beat(make_beat: Callable[..., Beat]) -> Beat:
    return make_beat()


@pytest.fixture
def add_job(factory: sessionmaker[Session], job_type: FakeJobType) -> Callable[..., Job]:
    """Insert an ACTIVE job of the fake type, due at ``next_fire_at``."""

    def add(*, next_fire_at: datetime, cron: str = "* * * * *", **fields: Any) -> Job:
        with factory() as session:
            job = Job(
                name=fields.pop("name", f"job-{uuid.uuid4().hex[:8]}"),
                job_type=job_type.name,
                cron=cron,
                next_fire_at=next_fire_at,
                created_at=next_fire_at - timedelta(days=1),
                **fields,
            )
            session.add(job)
            session.commit()
            return job

    return add


@pytest.fixture
def add_run(factory: sessionmaker[Session], job_type: FakeJobType, clock: FrozenClock) -> Callable[..., JobRun]:
    """Insert a run of a job in a given status; ``chunks`` as (evaluated, applied) flags."""

    def add(job: Job, *, status: str, chunks: list[tuple[bool, bool]] | None = None, **fields: Any) -> JobRun:
        created_at = fields.pop("created_at", clock.now() - timedelta(hours=1))
        assert job.id is not None
        with factory() as session:
            run = JobRun(
                job_id=job.id, job_type=job_type.name, trigger=RunTrigger.MANUAL, status=status,
                created_at=created_at, **fields,
            )
            session.add(run)
            session.flush()
            assert run.id is not None
            session.add_all(
                RunChunk(
                    run_id=run.id,
                    chunk_no=number,
                    evaluated_at=created_at if evaluated else None,
                    applied_at=created_at if applied else None,
                )
                for number, (evaluated, applied) in enumerate(chunks or [])
            )
            session.commit()
            return run

    return add
