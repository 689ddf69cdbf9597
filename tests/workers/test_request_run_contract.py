"""The request_run contract as another service meets it: a separate process that imports only dramatiq and
redis sends messages to a real worker pool; runs are found by key, refusals are counted and listed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from real_worker_kit import WorkerPool, private_redis, redis_dispatcher, wait_for
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker
from workers_testkit import AS_OF, dunning_registry

from scheduler import auth
from scheduler.api.app import create_app
from scheduler.clock import SystemClock
from scheduler.dispatch import SCHEDULER_QUEUE
from scheduler.jobs import JobCreate, create_job
from scheduler.metrics_dir import MULTIPROC_ENV
from scheduler.settings import Settings
from workers.runtime.metrics import DRAMATIQ_DIR_ENV

with warnings.catch_warnings():
    # Starlette warns once, at import, that it prefers the httpx2 fork; httpx works.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.slow

REDIS_DB = 12
SENDER = Path(__file__).with_name("outside_sender.py")
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_sender() -> str:
    """The sender the README shows under "Request runs from another service"."""
    section = README.read_text().split("### Request runs from another service", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def worker_redis(redis_url: str) -> Iterator[str]:
    with private_redis(redis_url, REDIS_DB) as url:
        yield url


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _send(redis_url: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Send as the other service would: its own process, its own interpreter state."""
    done = subprocess.run([sys.executable, str(SENDER), redis_url, json.dumps(messages)], capture_output=True,
                          text=True, timeout=60, check=True)
    return dict(json.loads(done.stdout))


def test_an_outside_service_gets_one_run_per_key_and_sees_its_refusals(
    billing_engine: Engine, db_url: str, settings: Settings, worker_redis: str, tmp_path: Path
) -> None:
    # Given a job, a real worker pool on the job's queue and the scheduler queue, and the API
    factory = sessionmaker(billing_engine, expire_on_commit=False)
    registry = dunning_registry()
    with factory() as session:
        create_job(session=session, registry=registry, actor="test", clock=SystemClock(),
                   job_in=JobCreate(name="Residential dunning", job_type="dunning",
                                    properties={"account_category": "RESIDENTIAL"}))
        _, admin = auth.create_key(session, "ops", "admin", actor="test")
    port, metrics_dir = _free_port(), tmp_path / "pool-metrics"
    metrics_dir.mkdir()
    with redis_dispatcher(worker_redis) as dispatcher, WorkerPool(
        ["dunning", SCHEDULER_QUEUE], db_url=db_url, redis_url=worker_redis, tmp_path=tmp_path,
        env={"SCHEDULER_WORKER_METRICS_PORT": str(port), MULTIPROC_ENV: str(metrics_dir),
             DRAMATIQ_DIR_ENV: str(metrics_dir)},
    ) as pool:
        api = TestClient(create_app(settings, engine=billing_engine, registry=registry, dispatcher=dispatcher),
                         headers={"Authorization": f"Bearer {admin}"})

        # When another service sends the same request twice under one key, and three it should not send
        sent = _send(worker_redis, [
            {"args": ["Residential dunning"],
             "kwargs": {"run_properties": {"as_of": AS_OF.isoformat()}, "idempotency_key": "billing-svc:cycle-7"}},
            {"args": ["Residential dunning", {"as_of": AS_OF.isoformat()}, "billing-svc:cycle-7"]},
            {"args": ["Commercial dunning"], "kwargs": {"idempotency_key": "billing-svc:cycle-8"}},
            {"args": ["Residential dunning"], "kwargs": {"run_properties": {"as_of": "last tuesday"}}},
            {"args": ["Residential dunning"], "kwargs": {"priority": "high"}},
        ])
        # Then the sender needed nothing of ours
        assert sent == {"sent": 5, "imported": []}
        # And the README's sender, run as it is shown (its Redis and job name swapped for this test's), works
        shown = readme_sender().replace("redis://redis:6379/0", worker_redis)
        subprocess.run([sys.executable, "-c", shown.replace("Month-end GL close", "Residential dunning")],
                       check=True, timeout=60)

        # And the run its key made is found by the key, once, and completes
        def run_of_key() -> dict[str, Any] | None:
            items = api.get("/api/v1/runs", params={"idempotency_key": "billing-svc:cycle-7"}).json()["items"]
            return items[0] if items and items[0]["status"] == "COMPLETED" else None

        run = wait_for(run_of_key, "the requested run", pool, pool_log := tmp_path / "worker.log")
        assert run["created_by"] == "dramatiq:request_run" and run["run_properties"]["as_of"] == "2026-06-01"
        readme_run = wait_for(lambda: api.get("/api/v1/runs", params={"idempotency_key": "ledger-svc:close-2026-06"})
                              .json()["items"], "the README sender's run", pool, pool_log)
        assert len(api.get("/api/v1/runs").json()["items"]) == 2 and readme_run[0]["id"] != run["id"]

        # And each refusal is listed with its reason, for an operator
        def refusals() -> list[dict[str, Any]] | None:
            items = api.get("/api/v1/refused-requests").json()["items"]
            return items if len(items) == 3 else None

        listed = wait_for(refusals, "three refusals", pool, pool_log)
        assert sorted((r["reason"], r["job"], r["idempotency_key"]) for r in listed) == [
            ("invalid_message", "Residential dunning", None),
            ("invalid_properties", "Residential dunning", None),
            ("job_not_found", "Commercial dunning", "billing-svc:cycle-8"),
        ]
        assert all(r["message_id"] for r in listed)

        # And counted in the pool's metrics (served by a process of the pool that may still be starting)
        def counted() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
                    metrics = answer.read().decode()
            except OSError:
                return False
            return all(f'scheduler_refused_requests_total{{reason="{reason}"}} 1.0' in metrics
                       for reason in ("job_not_found", "invalid_properties", "invalid_message"))

        wait_for(counted, "the refusals in the pool's metrics", pool, pool_log)

    # And the pool logged no warning per message: no Results-middleware complaint, no traceback
    log = pool_log.read_text()
    assert "Results middleware" not in log and "returned a value" not in log
    assert "Traceback" not in log
    assert log.count("request_run refused") == 3 and log.count("request_run: job") == 3
