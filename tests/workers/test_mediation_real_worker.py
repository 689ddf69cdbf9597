"""Usage mediation through a real Redis broker and a real ``dramatiq`` worker on the ``usage_mediation`` queue."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from real_worker_kit import WorkerPool, private_redis, redis_dispatcher, wait_for
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import sessionmaker
from workers_testkit import add_account

from scheduler.clock import SystemClock
from scheduler.dispatch import Dispatcher, Phase, RunStep
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import JobRun, RunStatus
from scheduler.runs import RunCreate, act_on_run, create_manual_run, send_apply, send_run
from workers.mediation import JOB_TYPE
from workers.mediation.tables import usage_daily, usage_events

pytestmark = pytest.mark.slow

S = RunStatus
REDIS_DB = 13
METERS = [{"meter": "data_gb", "unit": "GB", "price_per_unit": "0.10"}]


@pytest.fixture
def registry() -> JobTypeRegistry:
    return JobTypeRegistry([JOB_TYPE])


@pytest.fixture
def usage_redis(redis_url: str) -> Iterator[str]:
    """The test Redis server, a database index of its own."""
    with private_redis(redis_url, REDIS_DB) as url:
        yield url


@pytest.fixture
def files_root(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    (root / "usage" / "incoming").mkdir(parents=True)
    return root


@pytest.fixture
def usage_worker(billing_engine: Engine, db_url: str, usage_redis: str, files_root: Path,
                 tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with WorkerPool(["usage_mediation"], db_url=db_url, redis_url=usage_redis, tmp_path=tmp_path,
                    env={"SCHEDULER_FILES_ROOT": str(files_root)}) as process:
        yield process


@pytest.fixture
def usage_dispatcher(usage_redis: str) -> Iterator[Dispatcher]:
    with redis_dispatcher(usage_redis) as dispatcher:
        yield dispatcher


def test_mediation_runs_through_redis_and_a_real_worker(
    billing_engine: Engine, registry: JobTypeRegistry, usage_worker: subprocess.Popen[bytes],
    usage_dispatcher: Dispatcher, files_root: Path, tmp_path: Path,
) -> None:
    factory = sessionmaker(billing_engine, expire_on_commit=False)
    log = tmp_path / "worker.log"
    wall = SystemClock()
    # Given two files, one with a bad line
    add_account(billing_engine, "W-1")
    incoming = files_root / "usage" / "incoming"
    header = "event_id,account_number,meter,quantity,occurred_at\n"
    (incoming / "a.csv").write_text(header + "W1,W-1,data_gb,1.5,2026-05-01T10:00:00Z\n"
                                             "W2,W-1,data_gb,-1,2026-05-01T10:00:00Z\n")
    (incoming / "b.csv").write_text(header + "W3,W-1,data_gb,2,2026-05-01T11:00:00Z\n")
    with factory() as session:
        job = create_job(session=session, registry=registry, actor="test", clock=wall, job_in=JobCreate(
            name="Usage", job_type="usage_mediation",
            properties={"source_dir": "usage/incoming", "pattern": "*.csv", "meters": METERS}))
        run, _ = create_manual_run(session=session, registry=registry, actor="test", clock=wall,
                                   run_in=RunCreate(job_id=job.id or 0, preview=True))
    run_id = run.id or 0
    assert send_run(factory=factory, dispatcher=usage_dispatcher, registry=registry, run_id=run_id, clock=wall)

    def status_is(*wanted: str) -> Callable[[], JobRun | None]:
        def check() -> JobRun | None:
            with factory() as session:
                found = session.get(JobRun, run_id)
                return found if found is not None and found.status in wanted else None

        return check

    # When the preview is evaluated by the worker, it waits with the staged counts
    staged = wait_for(status_is(S.PREVIEW, S.FAILED), "the preview", usage_worker, log)
    assert staged.status == S.PREVIEW, staged.error
    assert (staged.summary["files"], staged.summary["mediated"], staged.summary["failed"]) == (2, 2, 1)
    # And once submitted, each file is posted, and the apply messages delivered twice change nothing
    with factory() as session:
        act_on_run(session=session, run_id=run_id, action="submit", actor="reviewer", clock=wall)
    assert send_apply(factory=factory, dispatcher=usage_dispatcher, registry=registry, run_id=run_id) == 2
    for chunk_no in (0, 1):
        usage_dispatcher.send_step("usage_mediation", RunStep(run_id=run_id, phase=Phase.APPLY, chunk_no=chunk_no))
    done = wait_for(status_is(S.COMPLETED, S.INCOMPLETE, S.FAILED), "the submitted preview", usage_worker, log)
    assert done.status == S.INCOMPLETE, done.error
    assert done.summary["rated_amount"] == "0.350000"
    with billing_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(usage_events)).scalar_one() == 2
        assert conn.execute(select(usage_daily.c.events, usage_daily.c.amount)).one()[0] == 2
    assert sorted(p.name for p in (incoming / "processed").iterdir()) == ["a.csv", "b.csv"]
