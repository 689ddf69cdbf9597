"""Runs through a real Redis broker and a real ``dramatiq`` worker process, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from real_worker_kit import WorkerPool, private_redis, redis_dispatcher, wait_for
from sqlalchemy import Engine, select
from workers_testkit import AS_OF, dunning_registry

from scheduler.clock import SystemClock
from scheduler.dispatch import REQUEST_RUN_ACTOR, SCHEDULER_QUEUE, Dispatcher
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import JobRun, RunEvent, RunStatus
from scheduler.runs import RunCreate, act_on_run, create_manual_run, send_apply, send_run

pytestmark = pytest.mark.slow

S = RunStatus
REDIS_DB = 11


@pytest.fixture
def registry() -> JobTypeRegistry:
    return dunning_registry()


@pytest.fixture
def worker_redis(redis_url: str) -> Iterator[str]:
    with private_redis(redis_url, REDIS_DB) as url:
        yield url


@pytest.fixture
def worker_process(
    billing_engine: Engine, db_url: str, worker_redis: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with WorkerPool(["dunning", SCHEDULER_QUEUE], db_url=db_url, redis_url=worker_redis, tmp_path=tmp_path,
                    env={"SCHEDULER_CHUNK_SIZE": "3"}) as process:
        yield process


@pytest.fixture
def real_dispatcher(worker_redis: str) -> Iterator[Dispatcher]:
    with redis_dispatcher(worker_redis) as dispatcher:
        yield dispatcher


def test_runs_through_redis_and_a_real_worker(
    billing_engine: Engine, known_ledger: dict[str, int], registry: JobTypeRegistry,
    worker_process: subprocess.Popen[bytes], real_dispatcher: Dispatcher, tmp_path: Path,
) -> None:
    from sqlalchemy.orm import sessionmaker

    factory = sessionmaker(billing_engine, expire_on_commit=False)
    log = tmp_path / "worker.log"
    wall = SystemClock()
    with factory() as session:
        job = create_job(
            session=session, registry=registry, actor="test", clock=wall,
            # The previews below come after a run that applied everything: kept for review although empty
            job_in=JobCreate(name="Residential dunning", job_type="dunning", review_empty_previews=True, properties={
                "account_category": "RESIDENTIAL", "minimum_account_due": "10.00",
            }),
        )
        assert job.id is not None
        job_id = job.id

    def start(preview: bool) -> int:
        with factory() as session:
            run, _ = create_manual_run(
                session=session, registry=registry, actor="test", clock=wall,
                run_in=RunCreate(job_id=job_id, preview=preview, run_properties={"as_of": AS_OF.isoformat()}),
            )
            assert run.id is not None
        assert send_run(factory=factory, dispatcher=real_dispatcher, registry=registry, run_id=run.id, clock=wall)
        return run.id

    def status_is(run_id: int, *wanted: str) -> Callable[[], JobRun | None]:
        def check() -> JobRun | None:
            with factory() as session:
                run = session.get(JobRun, run_id)
                assert run is not None
                return run if run.status in wanted else None

        return check

    def statuses(run_id: int) -> list[str]:
        with factory() as session:
            events = session.scalars(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.id))  # type: ignore[arg-type]
            return [e.to_status for e in events]

    # A manual run goes all the way through
    run_id = start(preview=False)
    done = wait_for(status_is(run_id, S.COMPLETED, S.INCOMPLETE, S.FAILED), f"run {run_id} to finish", worker_process,
                    log)
    assert done.status == S.COMPLETED, done.error
    assert statuses(run_id) == ["CREATED", "PROCESSING", "SUBMITTED", "COMPLETED"]
    assert done.chunks_total == 3 and done.summary["escalated"] == 3 and done.summary["cleared"] == 1
    assert done.worker and done.worker.startswith("worker:")

    # A preview stops at PREVIEW, is submitted, and completes
    preview_id = start(preview=True)
    staged = wait_for(status_is(preview_id, S.PREVIEW, S.FAILED), "the preview", worker_process, log)
    assert staged.status == S.PREVIEW
    with factory() as session:
        act_on_run(session=session, run_id=preview_id, action="submit", actor="reviewer", clock=wall)
    assert send_apply(factory=factory, dispatcher=real_dispatcher, registry=registry, run_id=preview_id) == 3
    finished = wait_for(status_is(preview_id, S.COMPLETED, S.INCOMPLETE, S.FAILED), "the submitted preview",
                        worker_process, log)
    assert finished.status == S.COMPLETED
    assert statuses(preview_id) == ["CREATED", "PROCESSING", "PREVIEW", "SUBMITTED", "COMPLETED"]
    # The first run already escalated everyone: the second one has nothing left to change
    assert finished.summary["escalated"] == 0 and finished.summary["unchanged"] == 7

    # A preview is deleted
    deleted_id = start(preview=True)
    wait_for(status_is(deleted_id, S.PREVIEW), "the second preview", worker_process, log)
    with factory() as session:
        act_on_run(session=session, run_id=deleted_id, action="delete", actor="reviewer", clock=wall)
    assert statuses(deleted_id)[-1] == "DELETED"

    # Another service asks for a run by job name on the scheduler queue, twice with the same key
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=SCHEDULER_QUEUE, actor_name=REQUEST_RUN_ACTOR, args=("Residential dunning",),
        kwargs={"run_properties": {"as_of": AS_OF.isoformat()}, "idempotency_key": "billing-svc-42"}, options={},
    )
    real_dispatcher.broker.enqueue(message)
    real_dispatcher.broker.enqueue(message.copy(message_id=message.message_id + "-again"))

    def requested() -> JobRun | None:
        with factory() as session:
            run = session.scalar(select(JobRun).where(JobRun.idempotency_key == "billing-svc-42"))  # type: ignore[arg-type]
            return run if run is not None and run.status == S.COMPLETED else None

    by_request = wait_for(requested, "the requested run", worker_process, log)
    assert by_request.created_by == "dramatiq:request_run"
    with factory() as session:
        runs = session.scalars(select(JobRun.id).where(JobRun.job_id == job_id)).all()  # type: ignore[arg-type]
    assert len(runs) == 4
