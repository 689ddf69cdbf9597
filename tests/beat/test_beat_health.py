"""A real beat process answers /healthz and /readyz on its metrics port: alive while it rides out a
database outage (so an orchestrator does not restart it in a loop), not ready, and never a password."""

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

SECRET = "b3at-db-s3cret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, Any]] | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None  # not listening yet


def test_beat_stays_alive_but_not_ready_while_the_database_is_down(redis_url: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    env.update({"SCHEDULER_DATABASE_URL": f"postgresql://scheduler:{SECRET}@127.0.0.1:1/nowhere",
                "SCHEDULER_REDIS_URL": redis_url, "SCHEDULER_DATA_DIR": str(tmp_path / "data"),
                "SCHEDULER_BEAT_METRICS_PORT": str(port)})
    log_path = tmp_path / "beat.log"
    with log_path.open("wb") as log_file:
        beat = subprocess.Popen([sys.executable, "-m", "beat"], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while (ready := _get(base + "/readyz")) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready is not None, log_path.read_text()
        status, body = ready
        assert status == 503 and body["details"]["setting"] == "SCHEDULER_DATABASE_URL"
        assert body["details"]["checks"]["redis"] == "ok"
        # Beat backs off (0.5, 1, 2 … s) through the outage and is alive all along
        for _ in range(8):
            alive = _get(base + "/healthz")
            assert alive is not None and alive[0] == 200 and alive[1]["status"] == "ok", alive
            time.sleep(0.5)
        text = json.dumps(body)
        assert SECRET not in text and "postgresql://" not in text
    finally:
        beat.send_signal(signal.SIGTERM)
        beat.wait(30)
    log = log_path.read_text()
    assert "database unreachable" in log and "scheduler:***@127.0.0.1:1/nowhere" in log
    assert SECRET not in log
