"""Riding out database outages in a worker: a step that loses the database waits for it, then runs again.

Steps are idempotent (the executor starts each from the run's status and its chunks' marks), so a
step cut off by a lost connection is simply run again once the database answers. A worker process
logs one line when an outage starts and one when it ends, however many threads wait. A step still
failing after ``patience`` seconds is dropped quietly: beat re-sends it when the run's heartbeat
goes stale, and the message does not pin a worker thread (or a shutdown) for the whole outage.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from scheduler.errors import first_line
from scheduler.outage import Outage

log = logging.getLogger(__name__)

PATIENCE = 60.0
"""Seconds a step waits for the database before it is left to beat's reclaim."""
MAX_BACKOFF = 5.0


def is_database_outage(exc: BaseException) -> bool:
    """A lost, refused or reset database connection — not a bad statement, a constraint or a job type's bug."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    if isinstance(exc.orig, sqlite3.Error):
        # SQLite reports missing tables as operational errors too; only a busy database is transient.
        return "locked" in str(exc.orig) or "busy" in str(exc.orig)
    return True


def database_outage() -> Outage:
    """A worker process's view of the database (shared by its step threads and its heartbeat)."""
    return Outage(service="database", setting="SCHEDULER_DATABASE_URL", meanwhile="worker steps wait for it",
                  resumed="worker steps resumed", log=log)


OUTAGE = database_outage()
"""This worker process's view of the database."""


def ride_out(
    step: Callable[[], None],
    *,
    what: str,
    outage: Outage = OUTAGE,
    patience: float = PATIENCE,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Run ``step``, again and again with backoff while the database is unreachable.

    Returns ``True`` when the step ran, ``False`` when it was given up after ``patience`` seconds.
    Any other exception propagates.
    """
    deadline = time.monotonic() + patience
    delay = 0.5
    while True:
        started = time.monotonic()
        try:
            step()
        except Exception as exc:
            if not is_database_outage(exc):
                raise
            outage.failed(first_line(exc))
            if time.monotonic() + delay > deadline:
                log.warning("%s: left to beat after %.0f s without the database", what, patience)
                return False
            sleep(delay)
            delay = min(MAX_BACKOFF, delay * 2)
            continue
        outage.recovered(attempt_started=started)
        return True
