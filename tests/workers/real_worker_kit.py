"""Shared scaffolding of the real-worker tests: a private Redis database, a worker pool process, a poll."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from scheduler.dispatch import Dispatcher, make_broker
from workers.runtime.worker import worker_command

DEADLINE = 60.0
ROOT = Path(__file__).resolve().parents[2]


def private_redis_url(url: str, db: int) -> str:
    """The same Redis server, database index ``db``, so other test suites' flushes cannot touch ours."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"{url.split('?', 1)[0]}?db={db}"
    return urlunsplit(parts._replace(path=f"/{db}"))


@contextmanager
def private_redis(url: str, db: int) -> Iterator[str]:
    """``private_redis_url``, flushed before and after."""
    private = private_redis_url(url, db)
    client = redis.Redis.from_url(private)
    client.flushdb()
    try:
        yield private
    finally:
        client.flushdb()
        client.close()


@contextmanager
def redis_dispatcher(url: str) -> Iterator[Dispatcher]:
    """A dispatcher on a real Redis broker, closed afterwards."""
    broker = make_broker(url)
    try:
        yield Dispatcher(broker, url)
    finally:
        broker.close()


class WorkerPool:
    """A real ``dramatiq`` worker pool process on ``queues``, its output in ``tmp_path / "worker.log"``."""

    def __init__(
        self, queues: Sequence[str], *, db_url: str, redis_url: str, tmp_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.command = worker_command(queues, processes=1, threads=2)
        self.env = {
            **os.environ,
            "SCHEDULER_DATABASE_URL": db_url,
            "SCHEDULER_REDIS_URL": redis_url,
            "SCHEDULER_DATA_DIR": str(tmp_path / "worker-data"),
            **(env or {}),
        }
        self.log = tmp_path / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.output: IO[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        self.output = self.log.open("wb")
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=self.output, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        return self.process

    def stop(self) -> None:
        """SIGTERM, then a kill if the pool has not stopped within 30 s."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.output is not None:
            self.output.close()

    def __enter__(self) -> subprocess.Popen[bytes]:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def wait_for(check: Callable[[], Any], what: str, process: subprocess.Popen[bytes], log: Path) -> Any:
    """Poll ``check`` until it returns something truthy, the worker dies, or the deadline passes."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if process.poll() is not None:
            pytest.fail(f"the worker exited ({process.returncode}) waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")
