"""End to end as a user meets it: the HTTP API, a real beat process, a real worker pool on Redis.

On SQLite and PostgreSQL: a seconds-cron job makes a scheduled run that goes CREATED → PROCESSING →
SUBMITTED → COMPLETED, and Prometheus can read it off beat and the worker pool; a review-required run
stops at PREVIEW, is submitted and completes; a preview is deleted; an ERP run that fails (the ERP is
down) is retried once the ERP is up, and completes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from test_api_support import TEST_ADMIN, TestClient, make_key

from cli.migrations import migrate_billing_database
from scheduler.api.app import create_app
from scheduler.dispatch import Dispatcher, make_broker
from scheduler.jobtypes import load_registry
from scheduler.settings import Settings
from workers.billing.demo import seed_demo

pytestmark = pytest.mark.slow

REDIS_DB = 12
DEADLINE = 90.0
TOKEN_ENV = "SCHEDULER_ERP_SECRET_E2E"
LADDER = [
    {"code": 1, "name": "Reminder", "min_days_past_due": 1, "actions": ["notice"]},
    {"code": 2, "name": "Late fee", "min_days_past_due": 30, "actions": ["late_fee"], "late_fee": "25.00"},
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _private(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"{url.split('?', 1)[0]}?db={REDIS_DB}"
    return urlunsplit(parts._replace(path=f"/{REDIS_DB}"))


class Erp:
    """A real HTTP ERP endpoint that records the records of every batch it accepts."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted: list[str] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        erp = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                erp.accepted.extend(str(r["id"]) for r in body["records"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass(frozen=True)
class Stack:
    client: TestClient
    logs: list[Path]
    beat_metrics: str
    worker_metrics: str


@pytest.fixture
def stack(engine: Engine, db_url: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    """The API in-process; beat and a worker pool for every job type as real processes (as the CLI starts them)."""
    migrate_billing_database(engine, load_registry(Settings()).all())
    seed_demo(engine, accounts=60)
    url = _private(redis_url)
    redis.Redis.from_url(url).flushdb()
    beat_port, worker_port = _free_port(), _free_port()
    env = {**os.environ, "SCHEDULER_DATABASE_URL": db_url, "SCHEDULER_REDIS_URL": url,
           "SCHEDULER_DATA_DIR": str(tmp_path / "data"), "SCHEDULER_CHUNK_SIZE": "25", TOKEN_ENV: "s3cret",
           "SCHEDULER_ERP_ALLOWED_HOSTS": "127.0.0.1:*",
           "SCHEDULER_BEAT_METRICS_PORT": str(beat_port), "SCHEDULER_WORKER_METRICS_PORT": str(worker_port)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    logs = [tmp_path / "beat.log", tmp_path / "worker.log"]
    commands = [[sys.executable, "-m", "cli", "beat"],
                [sys.executable, "-m", "cli", "worker", "--queues", "dunning", "erp_transfer", "scheduler",
                 "--processes", "2", "--threads", "2"]]
    handles = [log.open("wb") for log in logs]
    processes = [subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT)
                 for cmd, handle in zip(commands, handles, strict=True)]
    broker = make_broker(url)
    settings = Settings(data_dir=tmp_path / "api", database_url=db_url, redis_url=url,
                        erp_allowed_hosts=["127.0.0.1:*"])
    client = TestClient(create_app(settings, engine=engine, dispatcher=Dispatcher(broker, url)),
                        headers={"X-Api-Key": make_key(engine, "admin", TEST_ADMIN)})
    try:
        yield Stack(client, logs, f"http://127.0.0.1:{beat_port}/metrics", f"http://127.0.0.1:{worker_port}/metrics")
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for handle in handles:
            handle.close()
        broker.close()


def _wait(check: Callable[[], Any], what: str, logs: list[Path]) -> Any:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}\n" + "\n".join(log.read_text()[-2000:] for log in logs))


def _run_in(client: TestClient, run_id: int, *statuses: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}").json()
        return run if run["status"] in statuses else None

    return check


def _path(run: dict[str, Any]) -> list[str]:
    return [e["to_status"] for e in run["events"]]


class Scrape:
    """The samples at a Prometheus endpoint."""

    def __init__(self, url: str) -> None:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        self.samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples ``name`` whose labels include ``labels``."""
        return sum(s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items())


def test_scheduled_reviewed_deleted_and_retried_runs_end_to_end(stack: Stack) -> None:
    client, logs = stack.client, stack.logs
    dunning = {"job_type": "dunning", "properties": {"minimum_account_due": "5.00", "tiers": LADDER}}

    # A job every two seconds (Quartz, with seconds) is scheduled by beat and run by the worker
    job = client.post("/api/v1/jobs", json={**dunning, "name": "every 2 s", "cron": "*/2 * * * * ?"}).json()

    def scheduled_done() -> dict[str, Any] | None:
        runs = client.get("/api/v1/runs", params={"job_id": job["id"], "status": "COMPLETED"}).json()["items"]
        return runs[0] if runs else None

    first = _wait(scheduled_done, "a scheduled run to complete", logs)
    assert first["trigger"] == "SCHEDULED" and first["scheduled_for"]
    detail = client.get(f"/api/v1/runs/{first['id']}").json()
    assert _path(detail) == ["CREATED", "PROCESSING", "SUBMITTED", "COMPLETED"]
    assert client.post(f"/api/v1/jobs/{job['id']}/pause").status_code == 200

    # Prometheus reads the leader and its fire lag off beat, and the runs off the worker pool (both of its
    # processes, with Dramatiq's own message counts)
    beat = Scrape(stack.beat_metrics)
    assert beat.total("scheduler_beat_leader") == 1
    assert beat.total("scheduler_fire_lag_seconds_count", job_type="dunning") >= 1
    completed = {"job_type": "dunning", "trigger": "SCHEDULED", "status": "COMPLETED"}

    def pool_counted() -> Scrape | None:
        # The pool serves its metrics from a process of its own, started once its workers are up.
        try:
            scraped = Scrape(stack.worker_metrics)
        except OSError:
            return None
        return scraped if scraped.total("scheduler_runs_total", **completed) else None

    pool = _wait(pool_counted, "the pool's metrics", logs)
    assert pool.total("scheduler_start_lag_seconds_count", job_type="dunning") >= 1
    assert pool.total("scheduler_status_lag_seconds_count", job_type="dunning") >= 1  # earlier steps of the run
    assert pool.total("dramatiq_messages_total", queue_name="dunning") >= 3

    # A review-required job's run stops at PREVIEW, is submitted, and completes (the scheduled runs left the
    # ledger with nothing to do: the job asks to review empty previews too)
    reviewed = client.post("/api/v1/jobs", json={**dunning, "name": "reviewed", "requires_review": True,
                                                 "review_empty_previews": True}).json()
    run = client.post("/api/v1/runs", json={"job_id": reviewed["id"]}).json()
    staged = _wait(_run_in(client, run["id"], "PREVIEW", "FAILED"), "the preview", logs)
    assert staged["status"] == "PREVIEW" and staged["actions"] == ["submit", "delete"]
    assert client.post(f"/api/v1/runs/{run['id']}/submit").status_code == 200
    done = _wait(_run_in(client, run["id"], "COMPLETED", "INCOMPLETE", "FAILED"), "the submitted run", logs)
    assert _path(done) == ["CREATED", "PROCESSING", "PREVIEW", "SUBMITTED", "COMPLETED"]

    # Another preview is deleted: the record stays, nothing is applied
    other = client.post("/api/v1/runs", json={"job_id": reviewed["id"]}).json()
    _wait(_run_in(client, other["id"], "PREVIEW"), "the second preview", logs)
    deleted = client.post(f"/api/v1/runs/{other['id']}/delete").json()
    assert deleted["status"] == "DELETED" and deleted["actions"] == []

    # An ERP transfer while the ERP is down fails; once it is up, the retry delivers every record once
    erp = Erp(_free_port())
    target = {"kind": "http", "url": f"http://127.0.0.1:{erp.port}/batches", "token_env": TOKEN_ENV,
              "timeout_seconds": 1, "max_attempts": 2, "retry_backoff_seconds": 0.05}
    erp_job = client.post("/api/v1/jobs", json={"name": "ERP invoices", "job_type": "erp_transfer", "properties": {
        "dataset": "invoices", "target": target, "batch_size": 100}}).json()
    assert "id" in erp_job, erp_job
    failed_run = client.post("/api/v1/runs", json={"job_id": erp_job["id"]}).json()
    failed = _wait(_run_in(client, failed_run["id"], "COMPLETED", "INCOMPLETE", "FAILED"), "the ERP run", logs)
    assert failed["status"] == "FAILED", failed
    assert failed["actions"] == ["retry"]
    erp.start()
    try:
        retry = client.post(f"/api/v1/runs/{failed_run['id']}/retry").json()
        assert retry["trigger"] == "RETRY" and retry["retry_of"] == failed_run["id"]
        retried = _wait(_run_in(client, retry["id"], "COMPLETED", "INCOMPLETE", "FAILED"), "the retry", logs)
    finally:
        erp.stop()
    assert retried["status"] == "COMPLETED", retried
    assert erp.accepted and len(erp.accepted) == len(set(erp.accepted))
    assert retried["summary"]["delivered"] == len(erp.accepted)
