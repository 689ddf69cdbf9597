"""`scheduler up`: closed from the first start with one admin key minted once; `--demo` runs every job type."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
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


def _get(url: str, key: str | None = None) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
    return json.loads(body) if response.headers.get_content_type() == "application/json" else body.decode()


def _status(url: str, key: str | None = None) -> int:
    try:
        _get(url, key)
    except urllib.error.HTTPError as exc:
        return exc.code
    return 200


def _start(tmp_path: Path, port: int, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "cli", "up", "--port", str(port), *extra],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)  # as `kill` or a service manager stops it
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def _wait_until_up(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while _status_or_none(f"{base}/healthz") != 200:
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def _status_or_none(url: str) -> int | None:
    try:
        return _status(url)
    except OSError:
        return None


def test_first_start_mints_one_admin_key_and_restarts_mint_none(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    key_file = tmp_path / ".scheduler" / "initial-admin-key"

    # Given a fresh directory: the first start
    process = _start(tmp_path, port, first_log)
    try:
        _wait_until_up(base, process, first_log)
        # Then the API answers 401 without a key, from the very first request
        assert _status(f"{base}/api/v1/jobs") == 401
        # And the admin key it printed once (with the login URL) opens it, and is kept in a 0600 file
        printed = first_log.read_text()
        token = key_file.read_text().strip()
        assert token.startswith("sch_") and printed.count(token) == 1
        assert f"Log in at {base}/ with this admin API key" in printed
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        me = _get(f"{base}/api/v1/me", token)
        assert me["name"] == "initial-admin" and me["role"] == "admin"
    finally:
        _stop(process)

    # When it starts again
    process = _start(tmp_path, port, second_log)
    try:
        _wait_until_up(base, process, second_log)
        # Then no key is minted or printed: the login URL and the file's path instead
        printed = second_log.read_text()
        assert "sch_" not in printed and "with the admin API key kept in" in printed and str(key_file) in printed
        keys = _get(f"{base}/api/v1/keys", token)["items"]
        assert [k["name"] for k in keys] == ["initial-admin"]
        assert _status(f"{base}/api/v1/jobs") == 401
    finally:
        _stop(process)


def test_up_with_demo_serves_the_page_and_runs_all_four_job_types(tmp_path: Path) -> None:
    # Given a fresh directory and no SCHEDULER_* configuration: the embedded SQLite and Redis
    port = _free_port()
    process = _start(tmp_path, port, tmp_path / "up.log", "--demo")
    base = f"http://127.0.0.1:{port}"
    runs: list[dict[str, Any]] = []
    key_file = tmp_path / ".scheduler" / "initial-admin-key"
    try:
        # When it has started
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                runs = _get(f"{base}/api/v1/runs?limit=50", key_file.read_text().strip())["items"]
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
        # And nothing went wrong, so no audit trail tells of a re-send (the first runs are sent, not left to beat)
        token = key_file.read_text().strip()
        notes = [e["note"] for r in runs if r["trigger"] == "MANUAL"
                 for e in _get(f"{base}/api/v1/runs/{r['id']}", token)["events"]]
        assert notes and not [n for n in notes if "re-sent" in n], notes
        printed = (tmp_path / "up.log").read_text()
        assert f"Billing Scheduler is up: http://127.0.0.1:{port}/" in printed
    finally:
        _stop(process)
    # And stopping it exits 0 and stops its processes, the embedded Redis included
    assert process.returncode == 0, (tmp_path / "up.log").read_text()[-3000:]
    assert not (tmp_path / ".scheduler" / "redis" / "redis.sock").exists() or not _redis_alive(tmp_path)


def _redis_alive(tmp_path: Path) -> bool:
    import redis

    try:
        return bool(redis.Redis(unix_socket_path=str(tmp_path / ".scheduler/redis/redis.sock")).ping())
    except redis.RedisError:
        return False
