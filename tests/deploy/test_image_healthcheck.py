"""deploy/healthcheck.py, the image's HEALTHCHECK, against real HTTP servers on the loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from deploy_kit import DEPLOY

ROLE_SETTINGS = ("SCHEDULER_API_PORT", "SCHEDULER_BEAT_METRICS_PORT", "SCHEDULER_WORKER_METRICS_PORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def health_server() -> Iterator[Callable[[int], int]]:
    """Start an HTTP server whose /healthz answers the given status; returns its port."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int) -> int:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status if self.path == "/healthz" else 404)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return int(server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def healthcheck(**ports: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ROLE_SETTINGS}
    # Ports nobody listens on for the roles this container does not run.
    env.update({name: str(free_port()) for name in ROLE_SETTINGS})
    env.update({name: str(port) for name, port in ports.items()})
    return subprocess.run([sys.executable, str(DEPLOY / "healthcheck.py")], env=env, capture_output=True,
                          text=True, timeout=30, check=False)


@pytest.mark.parametrize("setting", ROLE_SETTINGS)
def test_healthy_when_the_role_of_the_container_answers(health_server: Callable[[int], int], setting: str) -> None:
    assert healthcheck(**{setting: health_server(200)}).returncode == 0


def test_unhealthy_when_the_role_answers_an_error(health_server: Callable[[int], int]) -> None:
    result = healthcheck(SCHEDULER_WORKER_METRICS_PORT=health_server(503))
    assert result.returncode == 1
    assert result.stderr.startswith("no /healthz answered on ports ")


def test_unhealthy_when_nothing_listens() -> None:
    result = healthcheck()
    assert result.returncode == 1
    assert "no /healthz answered" in result.stderr


def test_a_role_without_an_endpoint_is_not_tried(health_server: Callable[[int], int]) -> None:
    # Port 0 turns a role's endpoint off; the check still finds the API.
    result = healthcheck(SCHEDULER_BEAT_METRICS_PORT=0, SCHEDULER_WORKER_METRICS_PORT=0,
                         SCHEDULER_API_PORT=health_server(200))
    assert result.returncode == 0
    off = healthcheck(SCHEDULER_BEAT_METRICS_PORT=0, SCHEDULER_WORKER_METRICS_PORT=0)
    assert off.returncode == 1 and off.stderr.count(",") == 0, off.stderr


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"the process (exit {process.poll()}) never listened on port {port}")


@pytest.mark.slow
@pytest.mark.parametrize(("role", "setting"), [("api", "SCHEDULER_API_PORT"), ("beat", "SCHEDULER_BEAT_METRICS_PORT")])
def test_healthy_against_a_real_process(tmp_path: Path, redis_url: str, role: str, setting: str) -> None:
    port = free_port()
    env = {**os.environ, "SCHEDULER_DATA_DIR": str(tmp_path / "data"),
           "SCHEDULER_DATABASE_URL": f"sqlite:///{tmp_path / 'scheduler.db'}",
           "SCHEDULER_REDIS_URL": redis_url, setting: str(port)}
    subprocess.run([sys.executable, "-m", "cli", "migrate"], env=env, check=True, capture_output=True, timeout=90)
    process = subprocess.Popen([sys.executable, "-m", "cli", role], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        # Given the role running, the image's healthcheck passes
        wait_for_port(port, process)
        assert healthcheck(**{setting: port}).returncode == 0
    finally:
        process.terminate()
        process.wait(timeout=30)
    # When it has stopped, the healthcheck fails
    assert healthcheck(**{setting: port}).returncode == 1
