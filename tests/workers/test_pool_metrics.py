"""Where a worker pool keeps its multiprocess metrics, and a metrics port that is taken."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from scheduler.metrics import serve_metrics
from scheduler.settings import Settings
from workers.runtime.metrics import DRAMATIQ_DIR_ENV, MULTIPROC_ENV, prepare_environment


def test_each_pool_gets_a_fresh_directory_and_those_of_pools_gone_are_removed(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    metrics = tmp_path / "metrics"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for pid in (gone.pid, 1):  # a pool that is gone; one that still runs (pid 1 always does)
        (metrics / f"worker-{pid}").mkdir(parents=True)
        (metrics / f"worker-{pid}" / "counter_1.db").write_bytes(b"old")
    (metrics / "worker-4242424").mkdir()  # the pool about to start left values from an earlier life
    (metrics / "worker-4242424" / "counter_2.db").write_bytes(b"old")

    env = prepare_environment(settings, {"PATH": "/bin"}, pool_id=4242424)

    assert env[MULTIPROC_ENV] == env[DRAMATIQ_DIR_ENV] == str(metrics.resolve() / "worker-4242424")
    assert env["PATH"] == "/bin"
    assert sorted(p.name for p in metrics.iterdir()) == ["worker-1", "worker-4242424"]
    assert list((metrics / "worker-4242424").iterdir()) == []


def test_an_operators_directory_is_kept_and_no_port_means_no_directory(tmp_path: Path) -> None:
    own = {MULTIPROC_ENV: str(tmp_path / "mine")}
    kept = prepare_environment(Settings(data_dir=tmp_path), own, pool_id=7)
    assert kept == {**own, DRAMATIQ_DIR_ENV: own[MULTIPROC_ENV]}
    assert (tmp_path / "mine").is_dir()
    assert prepare_environment(Settings(data_dir=tmp_path, worker_metrics_port=0), {}, pool_id=7) == {}
    assert not (tmp_path / "metrics").exists()


def test_a_taken_port_is_one_warning_and_the_process_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="scheduler.metrics"):
            assert serve_metrics("127.0.0.1", port, what="beat") is None
    assert [r.getMessage() for r in caplog.records] == [
        f"beat metrics not served on 127.0.0.1:{port}: [Errno 98] Address already in use"]
    assert serve_metrics("127.0.0.1", 0, what="beat") is None


def test_metrics_are_served_until_shut_down() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve_metrics("127.0.0.1", port, what="beat")
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert "scheduler_runs_total" in response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
