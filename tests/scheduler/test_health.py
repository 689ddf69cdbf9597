"""Liveness and readiness as beat and worker pools serve them next to their metrics."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from scheduler.health import Pulse, Readiness
from scheduler.metrics import serve_metrics
from scheduler.redact import Redactor
from workers.runtime.liveness import STALE_AFTER, pool_liveness

SECRET = "pr0be-s3cret"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_loop_is_alive_while_its_passes_keep_their_word() -> None:
    clock = FakeClock()
    pulse = Pulse(grace=60, clock=clock)
    assert pulse.answer() == (200, {"status": "ok", "passes": 0})  # starting
    pulse.beat(30)  # e.g. backing off 30 s while the database is down
    clock.now += 85
    assert pulse.answer()[0] == 200
    clock.now += 10  # 95 s after a pass that promised the next within 30 s (+ 60 s grace)
    status, body = pulse.answer()
    assert status == 503 and body["status"] == "stuck" and body["detail"] == "the loop is 5 s overdue"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_readiness_names_the_unreachable_service_without_its_url(sqlite_url: str, redis_url: str) -> None:
    dead_redis = f"redis://:{SECRET}@127.0.0.1:1/0"
    redactor = Redactor.of_urls(dead_redis)
    assert Readiness.of_urls(sqlite_url, redis_url, redactor).answer() == (
        200, {"status": "ready", "checks": {"database": "ok", "redis": "ok"}})

    status, body = Readiness.of_urls(sqlite_url, dead_redis, redactor).answer()
    assert status == 503 and body["code"] == "broker_unavailable"
    assert body["details"]["setting"] == "SCHEDULER_REDIS_URL"
    assert body["details"]["checks"]["database"] == "ok"
    assert body["details"]["checks"]["redis"].startswith("unreachable: ")
    assert body["message"].startswith("Redis is unreachable (SCHEDULER_REDIS_URL): ")
    assert SECRET not in json.dumps(body) and "redis://" not in json.dumps(body)


def test_beat_and_pools_serve_metrics_health_and_readiness_on_one_port() -> None:
    port = _free_port()
    clock = FakeClock()
    pulse = Pulse(grace=5, clock=clock)
    scrapes: list[int] = []
    server = serve_metrics("127.0.0.1", port, what="test", liveness=pulse.answer,
                           readiness=lambda: (503, {"code": "database_unavailable"}),
                           before_scrape=lambda: scrapes.append(1))
    assert server is not None
    base = f"http://127.0.0.1:{port}"
    try:
        assert _get(base + "/healthz") == (200, json.dumps({"status": "ok", "passes": 0}))
        clock.now += 6
        assert _get(base + "/healthz")[0] == 503
        assert _get(base + "/readyz") == (503, json.dumps({"code": "database_unavailable"}))
        status, text = _get(base + "/metrics")
        assert status == 200 and "scheduler_runs_total" in text and scrapes == [1]
        assert _get(base + "/nothing")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_a_pool_is_alive_while_its_processes_show_their_pulse(tmp_path: Path) -> None:
    parent = os.getppid()
    own = tmp_path / str(os.getpid())
    own.touch()
    # Given one live process that touched its file, and a file left by a process that is gone
    (tmp_path / "999999999").touch()
    assert pool_liveness(tmp_path, processes=1, parent=parent, started=time.monotonic())[0] == 200
    status, body = pool_liveness(tmp_path, processes=2, parent=parent, started=time.monotonic())
    assert status == 200 and body["status"] == "starting"  # booting: the second may still come
    status, body = pool_liveness(tmp_path, processes=2, parent=parent, started=time.monotonic() - 3600)
    assert status == 503 and body == {"status": "dead", "detail": "1 worker process(es) gone or stuck",
                                      "processes": 1, "expected": 2}
    # A process whose threads died stops touching its file
    old = time.time() - STALE_AFTER - 1
    os.utime(own, (old, old))
    assert pool_liveness(tmp_path, processes=1, parent=parent, started=time.monotonic() - 3600)[0] == 503
    assert pool_liveness(tmp_path, processes=0, parent=parent + 1, started=time.monotonic())[0] == 503


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_default_probes_answer_ok(path: str) -> None:
    port = _free_port()
    server = serve_metrics("127.0.0.1", port, what="test")
    assert server is not None
    try:
        assert _get(f"http://127.0.0.1:{port}{path}") == (200, json.dumps({"status": "ok"}))
    finally:
        server.shutdown()
        server.server_close()
