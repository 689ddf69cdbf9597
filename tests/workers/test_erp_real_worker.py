"""An ERP transfer through a real Redis broker and a real ``dramatiq`` worker on the ``erp_transfer`` queue.

The worker process gets the token through its environment (the job names the variable); the ERP
endpoint runs in the test process and fails some requests on purpose.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from erp_sink import ErpSink
from erp_testkit import SINK_HOSTS, TOKEN, TOKEN_ENV, Ledger, delivered, http_target, seed_ledger
from real_worker_kit import WorkerPool, private_redis, wait_for
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from scheduler.clock import SystemClock
from scheduler.dispatch import Dispatcher, make_broker
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import JobRun, RunStatus
from scheduler.runs import RunCreate, create_manual_run, send_run

pytestmark = pytest.mark.slow

S = RunStatus
REDIS_DB = 15


@pytest.fixture
def erp_redis(redis_url: str) -> Iterator[str]:
    """The test Redis server, a database index of our own."""
    with private_redis(redis_url, REDIS_DB) as url:
        yield url


@pytest.fixture
def erp_worker(
    billing_engine: Engine, db_url: str, erp_redis: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with WorkerPool(["erp_transfer"], db_url=db_url, redis_url=erp_redis, tmp_path=tmp_path,
                    env={TOKEN_ENV: TOKEN, "SCHEDULER_ERP_ALLOWED_HOSTS": ",".join(SINK_HOSTS)}) as process:
        yield process


def test_an_erp_transfer_through_redis_and_a_real_worker_delivers_each_record_once(
    billing_engine: Engine, registry: JobTypeRegistry, erp_worker: subprocess.Popen[bytes], erp_redis: str,
    tmp_path: Path,
) -> None:
    ledger: Ledger = seed_ledger(billing_engine)
    factory = sessionmaker(billing_engine, expire_on_commit=False)
    wall = SystemClock()
    broker = make_broker(erp_redis)
    dispatcher = Dispatcher(broker, erp_redis)
    with ErpSink(token=TOKEN) as sink, factory() as session:
        # Given an HTTP ERP job in batches of 2, and an ERP that fails batch 2 once and drops batch 3's answer
        job = create_job(
            session=session, registry=registry, actor="test", clock=wall,
            job_in=JobCreate(name="ERP invoices", job_type="erp_transfer",
                             properties={"dataset": "invoices", "target": http_target(sink.url), "batch_size": 2}),
        )
        assert job.id is not None
        run, _ = create_manual_run(
            session=session, registry=registry, actor="test", clock=wall,
            run_in=RunCreate(job_id=job.id, run_properties={"date_from": "2026-05-01", "date_to": "2026-05-31"}),
        )
        assert run.id is not None
        run_id = run.id
        sink.inject(f"{run_id}:2", "500")
        sink.inject(f"{run_id}:3", "drop")
        # When the run is sent to the erp_transfer queue
        assert send_run(factory=factory, dispatcher=dispatcher, registry=registry, run_id=run_id, clock=wall)

        def finished() -> JobRun | None:
            with factory() as check:
                current = check.get(JobRun, run_id)
                assert current is not None
                return current if current.status in (S.COMPLETED, S.INCOMPLETE, S.FAILED) else None

        done = wait_for(finished, "the run", erp_worker, tmp_path / "worker.log")
        # Then it completed, and the ERP took each of May's 5 invoices exactly once
        assert done.status == S.COMPLETED, done.error
        assert done.summary["delivered"] == 5 and done.worker.startswith("worker:")
        taken = Counter(sink.accepted_ids())
        assert set(taken.values()) == {1}
        assert sorted(taken) == sorted(
            str(ledger.invoices[n]) for n in ("INV-0501", "INV-0510", "LF-0515", "INV-0520", "INV-0531"))
        assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in sink.requests)
    assert len(delivered(billing_engine)) == 5
    broker.close()
