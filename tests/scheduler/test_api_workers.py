"""``scheduler api --workers 2``: two worker processes on one port, one /metrics for both, drained by SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from scheduler import auth
from scheduler.db import make_session_factory
from scheduler.migrate import upgrade

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def requests_counted(metrics: str, route: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("scheduler_http_requests_total{") and f'route="{route}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_two_workers_share_the_port_and_the_metrics_and_drain_on_sigterm(
    pg_engine: Engine, postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    # Given a migrated database with an operator key, and the API started with two workers
    upgrade(pg_engine)
    with make_session_factory(pg_engine)() as session:
        _, token = auth.create_key(session, "ops", "admin", actor="test")
    port = free_port()
    env = {**os.environ, "SCHEDULER_DATABASE_URL": postgres_url, "SCHEDULER_REDIS_URL": redis_url,
           "SCHEDULER_DATA_DIR": str(tmp_path / "data")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "api.log").open("wb")
    api = subprocess.Popen([sys.executable, "-m", "cli.main", "api", "--port", str(port), "--workers", "2"],
                           env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200 and len(children(api.pid)) == 2:
                    break
            except httpx.HTTPError:
                pass
            assert api.poll() is None and time.monotonic() < deadline, (tmp_path / "api.log").read_text()
            time.sleep(0.1)
        workers = children(api.pid)

        # When 30 requests come, each on a connection of its own
        for _ in range(30):
            answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/jobs", headers={"X-Api-Key": token})
            assert answer.status_code == 200, answer.text

        # Then one scrape counts all of them, whichever worker took each and whichever answers the scrape
        for _ in range(3):
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            assert requests_counted(metrics, "/api/v1/jobs") == 30

        # And a worker that dies is replaced
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while set(children(api.pid)) & {workers[0]} or len(children(api.pid)) < 2:
            assert time.monotonic() < deadline, (tmp_path / "api.log").read_text()
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/jobs", headers={"X-Api-Key": token}).status_code == 200

        # And SIGTERM drains both workers and exits 0
        api.send_signal(signal.SIGTERM)
        assert api.wait(30) == 0, (tmp_path / "api.log").read_text()
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()
        log.close()
