"""Health of a process: liveness (its loop is alive) and readiness (the database and Redis answer now).

Every process answers ``/healthz`` and ``/readyz`` (the API on its port; beat and worker pools on their
metrics port, see :func:`scheduler.metrics.serve_metrics`). Readiness probes use short timeouts and
fresh connections, and their answers carry the setting to look at and a redacted reason, never a URL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.pool import NullPool

from scheduler.db import is_sqlite, make_engine, normalize_url
from scheduler.errors import first_line
from scheduler.metrics import BROKER_UP
from scheduler.redact import Redactor
from scheduler.redis_client import redis_client
from scheduler.settings import Settings

PROBE_TIMEOUT = 2.0
"""Seconds a readiness probe waits for a database or Redis connection."""

Answer = tuple[int, dict[str, Any]]
"""An HTTP status and a JSON body."""


class Pulse:
    """A loop's sign of life: each pass says how long until the next; overdue by ``grace`` means dead.

    A loop that deliberately waits (its sleep, or its backoff while the database is down) stays alive,
    so an outage does not get the process restarted in a loop; a loop stuck in a call does not.
    """

    def __init__(self, *, grace: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self.clock = clock
        self._due = clock() + grace
        self._passes = 0
        self._lock = threading.Lock()

    def beat(self, next_within: float) -> None:
        """A pass finished; the next one is due within ``next_within`` seconds."""
        with self._lock:
            self._due = self.clock() + next_within + self.grace
            self._passes += 1

    def answer(self) -> Answer:
        with self._lock:
            overdue = self.clock() - self._due
            passes = self._passes
        if overdue > 0:
            return 503, {"status": "stuck", "detail": f"the loop is {overdue:.0f} s overdue", "passes": passes}
        return 200, {"status": "ok", "passes": passes}


@dataclass(frozen=True, kw_only=True)
class Dependency:
    """One service a process needs: a probe that raises when it does not answer."""

    name: str
    setting: str
    code: str
    what: str
    probe: Callable[[], None]


def database_probe(url: str) -> Callable[[], None]:
    """``SELECT 1`` on a fresh connection (no pool), giving up after :data:`PROBE_TIMEOUT`."""
    args: dict[str, Any] = {} if is_sqlite(url) else {"connect_args": {"connect_timeout": int(PROBE_TIMEOUT)}}
    engine: Engine = make_engine(normalize_url(url), poolclass=NullPool, **args)

    def probe() -> None:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    return probe


def redis_probe(url: str, settings: Settings | None = None) -> Callable[[], None]:
    """``PING`` with short timeouts, TLS and Sentinel settings applied; the outcome sets ``scheduler_broker_up``."""
    client = redis_client(settings or Settings.model_construct(redis_url=url), url, timeout=PROBE_TIMEOUT)

    def probe() -> None:
        try:
            client.ping()
        except Exception:
            BROKER_UP.set(0)
            raise
        BROKER_UP.set(1)

    return probe


def database(probe: Callable[[], None]) -> Dependency:
    return Dependency(name="database", setting="SCHEDULER_DATABASE_URL", code="database_unavailable",
                      what="the database", probe=probe)


def broker(probe: Callable[[], None]) -> Dependency:
    return Dependency(name="redis", setting="SCHEDULER_REDIS_URL", code="broker_unavailable", what="Redis",
                      probe=probe)


class Readiness:
    """Probes every dependency; ``200`` when all answer, else ``503`` naming the first that did not."""

    def __init__(self, dependencies: list[Dependency], redactor: Redactor) -> None:
        self.dependencies = dependencies
        self.redactor = redactor

    @classmethod
    def of_urls(
        cls, database_url: str, redis_url: str, redactor: Redactor, settings: Settings | None = None
    ) -> Readiness:
        return cls([database(database_probe(database_url)), broker(redis_probe(redis_url, settings))], redactor)

    def answer(self) -> Answer:
        checks: dict[str, str] = {}
        failed: list[tuple[Dependency, str]] = []
        for dependency in self.dependencies:
            try:
                dependency.probe()
            except Exception as exc:
                reason = self.redactor(first_line(exc))
                checks[dependency.name] = "unreachable: " + reason
                failed.append((dependency, reason))
            else:
                checks[dependency.name] = "ok"
        if not failed:
            return 200, {"status": "ready", "checks": checks}
        first, reason = failed[0]
        return 503, {
            "code": first.code,
            "message": f"{first.what} is unreachable ({first.setting}): {reason}",
            "details": {"setting": first.setting, "checks": checks},
        }
