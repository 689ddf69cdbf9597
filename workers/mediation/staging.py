"""The run-scoped staging table of one file: created and filled at evaluate, read at apply, then dropped.

PostgreSQL fills it with ``COPY … FROM STDIN`` (psycopg's ``cursor.copy()``) into an ``UNLOGGED``
table; SQLite with ``executemany`` in batches. Rows stream from the reader, so memory stays flat.
A staging table lives from evaluation until the file is applied (a preview may wait days); the
tables of runs that ended without applying are dropped by the next run's plan (:func:`sweep`).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterable

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import Connection

from scheduler.models import RunStatus
from workers.mediation.records import StagedRow

log = logging.getLogger(__name__)

PREFIX = "usage_stage_r"
BATCH = 5_000
COLUMNS = ("line_no", "event_id", "account_number", "meter", "quantity", "amount", "occurred_at", "usage_day",
           "reason", "message")
_NAME = re.compile(rf"{PREFIX}(\d+)_c(\d+)")
FINISHED = (RunStatus.COMPLETED, RunStatus.INCOMPLETE, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.DELETED)


def table_name(run_id: int, chunk_no: int) -> str:
    return f"{PREFIX}{int(run_id)}_c{int(chunk_no)}"


def create(conn: Connection, name: str) -> None:
    """(Re)create an empty staging table."""
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"CREATE UNLOGGED TABLE {name} (line_no integer NOT NULL, event_id text, account_number text, "
            "meter text, quantity numeric, amount numeric, occurred_at timestamptz, usage_day date, "
            "reason text, message text)"
        )
    else:
        conn.exec_driver_sql(
            f"CREATE TABLE {name} (line_no INTEGER NOT NULL, event_id TEXT, account_number TEXT, meter TEXT, "
            "quantity NUMERIC, amount NUMERIC, occurred_at TEXT, usage_day TEXT, reason TEXT, message TEXT)"
        )


def load(conn: Connection, name: str, rows: Iterable[StagedRow]) -> None:
    """Stream ``rows`` into the staging table, in the connection's transaction."""
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            with cursor.copy(f"COPY {name} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                write = copy.write_row
                for row in rows:
                    write(row)
        finally:
            cursor.close()
        return
    insert = f"INSERT INTO {name} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        iterator = iter(rows)
        while batch := list(itertools.islice(iterator, BATCH)):
            cursor.executemany(insert, batch)
    finally:
        cursor.close()


def count(conn: Connection, name: str) -> int | None:
    """Rows in a staging table, ``None`` when the table does not exist."""
    if not inspect(conn).has_table(name):
        return None
    return int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {name}").scalar_one())


def drop(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def sweep(billing: Engine, scheduler: Engine, *, keep_run: int | None = None) -> int:
    """Drop staging tables whose run has ended (or no longer exists); returns how many were dropped."""
    with billing.connect() as conn:
        tables = [t for t in inspect(conn).get_table_names() if _NAME.fullmatch(t)]
    if not tables:
        return 0
    run_ids = sorted({int(_NAME.fullmatch(t).group(1)) for t in tables})  # type: ignore[union-attr]
    with scheduler.connect() as conn:
        live = {
            r.id for r in conn.execute(
                text("SELECT id, status FROM job_run WHERE id IN ({})".format(", ".join(map(str, run_ids))))
            )
            if r.status not in FINISHED
        }
    stale = [t for t in tables if int(_NAME.fullmatch(t).group(1)) not in live  # type: ignore[union-attr]
             and int(_NAME.fullmatch(t).group(1)) != keep_run]  # type: ignore[union-attr]
    for name in stale:
        drop(billing, name)
    if stale:
        log.info("dropped %d staging table(s) of finished runs", len(stale))
    return len(stale)
