"""`scheduler up --demo`, as `make run` starts it: the page answers and every job type's demo run finishes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

FINAL = {"COMPLETED", "INCOMPLETE", "FAILED", "PREVIEW"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read()
    return json.loads(body) if response.headers.get_content_type() == "application/json" else body.decode()


def test_up_with_demo_serves_the_page_and_runs_all_four_job_types(tmp_path: Path) -> None:
    # Given a fresh directory and no SCHEDULER_* configuration: the embedded SQLite and Redis
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    port = _free_port()
    log = (tmp_path / "up.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "up", "--demo", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    runs: list[dict[str, Any]] = []
    try:
        # When it has started
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                runs = _get(f"{base}/api/v1/runs?limit=50")["items"]
            except OSError:
                runs = []
            if {r["job_type"] for r in runs if r["status"] in FINAL} >= {
                "dunning", "usage_mediation", "gl_collector", "erp_transfer"
            }:
                break
            assert process.poll() is None, (tmp_path / "up.log").read_text()
            time.sleep(0.5)
        # Then the page is served and each type's first run reached a final status (or its review)
        assert "<title>" in _get(f"{base}/")
        by_type = {r["job_type"]: r["status"] for r in runs if r["trigger"] == "MANUAL" and r["status"] in FINAL}
        assert set(by_type) == {"dunning", "usage_mediation", "gl_collector", "erp_transfer"}, runs
        assert by_type["gl_collector"] == "COMPLETED"
        assert by_type["erp_transfer"] == "COMPLETED"
        printed = (tmp_path / "up.log").read_text()
        assert f"Billing Scheduler is up: http://127.0.0.1:{port}/" in printed
    finally:
        process.send_signal(signal.SIGTERM)  # as `kill` or a service manager stops it
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    # And stopping it exits 0 and stops its processes, the embedded Redis included
    assert process.returncode == 0, (tmp_path / "up.log").read_text()[-3000:]
    assert not (tmp_path / ".scheduler" / "redis" / "redis.sock").exists() or not _redis_alive(tmp_path)


def _redis_alive(tmp_path: Path) -> bool:
    import redis

    try:
        return bool(redis.Redis(unix_socket_path=str(tmp_path / ".scheduler/redis/redis.sock")).ping())
    except redis.RedisError:
        return False
