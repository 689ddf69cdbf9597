"""The run-scoped staging tables of one file: filled at evaluate, read at apply, then dropped.

Evaluate streams the file into ``usage_stage_r<run>_c<chunk>_in`` — ``COPY … FROM STDIN`` through
psycopg's ``cursor.copy()`` on PostgreSQL (rows one at a time, or a block of rows the reader already
formatted as ``COPY`` text), ``executemany`` in batches on SQLite; memory stays flat — then classifies it
into ``usage_stage_r<run>_c<chunk>`` and drops the first. On PostgreSQL both are ``UNLOGGED`` (no WAL for
data that is re-read from the file if lost; apply checks the row count before posting anything). A preview
may wait days, so the tables live until the file is applied; those of runs that ended otherwise are
dropped by the next run's plan (:func:`sweep`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from sqlalchemy import Engine, inspect
from sqlalchemy.engine import Connection

from scheduler.jobkit import RunContext, ended_runs
from workers.mediation.reader import Sink, TextSink
from workers.mediation.records import StagedRow

log = logging.getLogger(__name__)

BATCH = 5_000
COLUMNS = ("line_no", "event_id", "account_number", "meter", "quantity", "amount", "occurred_at", "usage_day",
           "reason", "message")
_NAME = re.compile(r"usage_stage_r(\d+)_c(\d+)(?:_in)?")


def table_name(run_id: int, chunk_no: int) -> str:
    """The classified records of a file (what apply posts)."""
    return f"usage_stage_r{int(run_id)}_c{int(chunk_no)}"


def raw_name(run_id: int, chunk_no: int) -> str:
    """The records of a file as read, before classification."""
    return f"{table_name(run_id, chunk_no)}_in"


def create(conn: Connection, name: str) -> None:
    """(Re)create an empty table for the reader's rows."""
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f'CREATE UNLOGGED TABLE {name} (line_no integer NOT NULL, event_id text COLLATE "C", account_number text, '
            "meter text, quantity numeric, amount numeric, occurred_at timestamptz, usage_day date, "
            "reason text, message text)"
        )
    else:
        conn.exec_driver_sql(
            f"CREATE TABLE {name} (line_no INTEGER NOT NULL, event_id TEXT, account_number TEXT, meter TEXT, "
            "quantity NUMERIC, amount NUMERIC, occurred_at TEXT, usage_day TEXT, reason TEXT, message TEXT)"
        )


def load(engine: Engine, name: str, fill: Callable[[Sink, TextSink | None], None]) -> None:
    """Create ``name`` and stream rows into it: ``fill`` hands each row to the sinks it is given (the second,
    for rows in ``COPY`` text format, only on PostgreSQL).

    PostgreSQL: one ``COPY`` in one transaction. SQLite: a transaction per batch, so the one writer
    the database allows is free between batches for the scheduler's own writes; a half-loaded table
    is harmless (it is private to this evaluation, which starts over if it fails).
    """
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            create(conn, name)
            driver = conn.connection.driver_connection
            assert driver is not None
            with driver.cursor() as cursor, cursor.copy(f"COPY {name} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                # No ANALYZE afterwards: the planner sizes a never-analyzed table from its pages, enough here.
                fill(copy.write_row, copy.write)
        return
    with engine.begin() as conn:
        create(conn, name)
    insert = f"INSERT INTO {name} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    batch: list[StagedRow] = []
    with engine.connect() as conn:

        def flush() -> None:
            with conn.begin():
                conn.exec_driver_sql(insert, batch)
            batch.clear()

        def write(row: StagedRow) -> None:
            batch.append(row)
            if len(batch) >= BATCH:
                flush()

        fill(write, None)
        if batch:
            flush()


def exists(conn: Connection, name: str) -> bool:
    return bool(inspect(conn).has_table(name))


def drop(engine: Engine, *names: str) -> None:
    with engine.begin() as conn:
        for name in names:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def sweep(ctx: RunContext) -> int:
    """Drop the staging tables of runs that have ended (or no longer exist), not this run's; returns how many."""
    with ctx.billing_engine.connect() as conn:
        tables = {t: int(m.group(1)) for t in inspect(conn).get_table_names() if (m := _NAME.fullmatch(t))}
    ended = ended_runs(ctx, set(tables.values()) - {ctx.run_id})
    stale = sorted(t for t, run_id in tables.items() if run_id in ended)
    if stale:
        drop(ctx.billing_engine, *stale)
        log.info("dropped %d staging table(s) of finished runs", len(stale))
    return len(stale)
