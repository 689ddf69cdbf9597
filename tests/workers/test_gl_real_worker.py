"""The GL collector through a real Redis broker and a real ``dramatiq`` worker on the ``gl_collector`` queue."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from real_worker_kit import WorkerPool, private_redis, redis_dispatcher, wait_for
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import sessionmaker

from scheduler.clock import SystemClock
from scheduler.dispatch import Dispatcher
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import JobRun, RunStatus
from scheduler.runs import RunCreate, act_on_run, create_manual_run, send_apply, send_run
from workers.billing import accounts, invoices, payments
from workers.billing.gl_tables import gl_entries

pytestmark = pytest.mark.slow

S = RunStatus
REDIS_DB = 14


@pytest.fixture
def gl_redis(redis_url: str) -> Iterator[str]:
    """The test Redis server, a database index of its own."""
    with private_redis(redis_url, REDIS_DB) as url:
        yield url


@pytest.fixture
def gl_worker(billing_engine: Engine, db_url: str, gl_redis: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with WorkerPool(["gl_collector"], db_url=db_url, redis_url=gl_redis, tmp_path=tmp_path,
                    env={"SCHEDULER_CHUNK_SIZE": "2"}) as process:
        yield process


@pytest.fixture
def gl_dispatcher(gl_redis: str) -> Iterator[Dispatcher]:
    with redis_dispatcher(gl_redis) as dispatcher:
        yield dispatcher


def test_gl_runs_through_redis_and_a_real_worker(
    billing_engine: Engine, registry: JobTypeRegistry, gl_worker: subprocess.Popen[bytes],
    gl_dispatcher: Dispatcher, tmp_path: Path,
) -> None:
    factory = sessionmaker(billing_engine, expire_on_commit=False)
    log = tmp_path / "worker.log"
    wall = SystemClock()
    # Given three invoices and two payments
    with billing_engine.begin() as conn:
        account = conn.execute(insert(accounts).values(account_number="W-1", name="W").returning(accounts.c.id))
        account_id = account.scalar_one()
        conn.execute(insert(invoices), [
            {"account_id": account_id, "number": f"W-{n}", "issued_on": date(2026, 1, n), "due_on": date(2026, 2, n),
             "amount": Decimal(amount), "balance": Decimal(amount)}
            for n, amount in ((1, "10.00"), (2, "20.50"), (3, "30.25"))
        ])
        conn.execute(insert(payments), [
            {"account_id": account_id, "amount": Decimal(amount), "received_at": datetime(2026, 2, n, tzinfo=UTC)}
            for n, amount in ((1, "10.00"), (2, "5.00"))
        ])
    with factory() as session:
        job = create_job(session=session, registry=registry, actor="test", clock=wall,
                         job_in=JobCreate(name="GL", job_type="gl_collector", properties={}))
        job_id = job.id or 0

    def start(preview: bool) -> int:
        with factory() as session:
            run, _ = create_manual_run(session=session, registry=registry, actor="test", clock=wall,
                                       run_in=RunCreate(job_id=job_id, preview=preview))
        assert send_run(factory=factory, dispatcher=gl_dispatcher, registry=registry, run_id=run.id or 0, clock=wall)
        return run.id or 0

    def status_is(run_id: int, *wanted: str) -> Callable[[], JobRun | None]:
        def check() -> JobRun | None:
            with factory() as session:
                run = session.get(JobRun, run_id)
                return run if run is not None and run.status in wanted else None

        return check

    # When a preview run is sent, it stops at PREVIEW with the staged journal
    preview_id = start(preview=True)
    staged = wait_for(status_is(preview_id, S.PREVIEW, S.FAILED), "the preview", gl_worker, log)
    assert staged.status == S.PREVIEW, staged.error
    assert staged.summary["journal"] == "staged" and staged.summary["lines"] == 10
    # And after submit it posts the journal
    with factory() as session:
        act_on_run(session=session, run_id=preview_id, action="submit", actor="reviewer", clock=wall)
    assert send_apply(factory=factory, dispatcher=gl_dispatcher, registry=registry, run_id=preview_id) == 3
    done = wait_for(status_is(preview_id, S.COMPLETED, S.INCOMPLETE, S.FAILED), "the submitted preview", gl_worker,
                    log)
    assert done.status == S.COMPLETED, done.error
    assert done.summary["accounts"] == {
        "1000": {"debit": "15.00", "credit": "0.00", "lines": 2},
        "1200": {"debit": "60.75", "credit": "15.00", "lines": 5},
        "4000": {"debit": "0.00", "credit": "60.75", "lines": 3},
    }
    # Then a run without review finds nothing left to collect
    again = start(preview=False)
    second = wait_for(status_is(again, S.COMPLETED, S.INCOMPLETE, S.FAILED), "the second run", gl_worker, log)
    assert second.status == S.COMPLETED and second.summary["lines"] == 0
    with billing_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(gl_entries)).scalar_one() == 10
