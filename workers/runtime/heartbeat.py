"""Run heartbeats: while a worker executes a step of a run, ``job_run.heartbeat_at`` moves every few seconds.

Beat reclaims a ``PROCESSING``/``SUBMITTED`` run whose heartbeat is older than the timeout, so a
long chunk must keep beating. One daemon thread per process beats every run that has a step running.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from scheduler.clock import Clock
from scheduler.errors import first_line
from scheduler.lifecycle import WORKING
from scheduler.models import JobRun
from workers.runtime.outage import OUTAGE, is_database_outage

log = logging.getLogger(__name__)


class RunHeartbeat:
    """Beats the runs registered with :meth:`beating` every ``interval`` seconds."""

    def __init__(self, factory: sessionmaker[Session], clock: Clock, *, interval: float) -> None:
        self._factory = factory
        self._clock = clock
        self.interval = interval
        self._runs: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def beating(self, run_id: int) -> Iterator[None]:
        """Keep ``run_id`` beating for the duration of the block."""
        with self._lock:
            self._runs[run_id] += 1
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="run-heartbeat", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._runs[run_id] -= 1
                if self._runs[run_id] <= 0:
                    del self._runs[run_id]

    def active_runs(self) -> list[int]:
        with self._lock:
            return sorted(self._runs)

    def beat_once(self) -> int:
        """Stamp every active run that is still being worked on; returns how many were stamped."""
        runs = self.active_runs()
        if not runs:
            return 0
        with self._factory() as session:
            result = session.execute(
                update(JobRun)
                .where(
                    col(JobRun.id).in_(runs),
                    col(JobRun.status).in_(WORKING),
                )
                .values(heartbeat_at=self._clock.now())
            )
            session.commit()
            return int(result.rowcount)  # type: ignore[attr-defined]

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat_once()
            except SQLAlchemyError as exc:
                if is_database_outage(exc):
                    OUTAGE.failed(first_line(exc))  # one line per outage, shared with the steps
                else:
                    log.warning("run heartbeat failed (will retry): %s", exc)

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self.interval + 1)
