"""Engine and session factory; column types that keep time aware UTC on every backend."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, DateTime, Engine, any_, bindparam, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from scheduler.errors import DatabaseUnavailable
from scheduler.settings import Settings

_SNAPSHOT = "scheduler_read_snapshot"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given where aware UTC is required")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def one_of(session: Session, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL one array parameter (``= ANY(:values)``) however many the values,
    not a bound parameter each (a batch of 1,000 keys or ids)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam("values", list(values), type_=ARRAY(column.type), unique=True))  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and foreign keys."""
    url = normalize_url(url)
    if is_sqlite(url):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Python's sqlite3 opens transactions lazily; take the write lock at BEGIN so two
            # processes never deadlock upgrading read locks.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # A read snapshot begins deferred: WAL gives it one consistent view without the write lock.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_SNAPSHOT) else "BEGIN IMMEDIATE")

        return engine
    ping = kwargs.pop("pool_pre_ping", None)
    engine = create_engine(url, pool_pre_ping=bool(ping), **kwargs)
    if ping is None:
        ping_when_idle(engine)
    return engine


PING_AFTER_IDLE_SECONDS = 5.0
"""A pooled connection unused for longer than this is pinged before it is handed out."""


def ping_when_idle(engine: Engine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> None:
    """Ping a pooled connection at checkout only when it sat idle for ``idle_seconds``; a dead one is replaced.

    A busy process does not pay a round trip per transaction (``pool_pre_ping`` pings at every checkout),
    while a connection left idle across a database restart is still found dead before it is used. One that
    dies while busy fails its statement as a lost connection (which the API answers 503 and workers and beat
    ride out), and the pool then replaces every connection older than that failure.
    """

    @event.listens_for(engine, "checkin")
    def _idle_since(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            if engine.dialect.is_disconnect(exc, dbapi_conn, None):  # type: ignore[arg-type]
                raise DisconnectionError() from exc  # the pool replaces the connection and checks out again
            raise


DEFAULT_POOL_SIZE = 5
DEFAULT_MAX_OVERFLOW = 10


def pool_options(settings: Settings) -> dict[str, int]:
    """The connection pool of this process (``SCHEDULER_DB_POOL_SIZE``, ``SCHEDULER_DB_MAX_OVERFLOW``).

    Each role sets its own in its own environment; unset, 5 + 10. Every replica of every role holds up to
    pool size + overflow connections: their sum must stay under the server's ``max_connections``. A
    connection the pool opens is kept, also one beyond the pool size: a pool that closed it again as soon
    as fewer requests were in flight (SQLAlchemy's overflow) would open and close a connection per request
    whenever more than the pool size are in flight, each a PostgreSQL backend started and stopped. SQLite
    keeps SQLAlchemy's pool for its kind of database unless the settings say otherwise.
    """
    if is_sqlite(normalize_url(settings.resolved_database_url)):
        options = {"pool_size": settings.db_pool_size, "max_overflow": settings.db_max_overflow}
        return {k: v for k, v in options.items() if v is not None}
    size = settings.db_pool_size if settings.db_pool_size is not None else DEFAULT_POOL_SIZE
    overflow = settings.db_max_overflow if settings.db_max_overflow is not None else DEFAULT_MAX_OVERFLOW
    return {"pool_size": size + overflow, "max_overflow": 0}


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def read_snapshot(engine: Engine) -> Iterator[Session]:
    """A session whose reads all see one consistent snapshot, for exports that span many queries.

    REPEATABLE READ on PostgreSQL; on SQLite a deferred read transaction (WAL), which does not hold
    the write lock, so writers go on while it reads.
    """
    options: dict[str, Any] = (
        {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {_SNAPSHOT: True}
    )
    with engine.connect().execution_options(**options) as conn, Session(bind=conn) as session:
        yield session


def check_database(engine: Engine) -> None:
    """Raise :class:`DatabaseUnavailable` naming the setting when the database is unreachable."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except OperationalError as exc:
        raise DatabaseUnavailable(
            engine.url.render_as_string(hide_password=True), str(exc.orig).strip().splitlines()[0]
        ) from exc
