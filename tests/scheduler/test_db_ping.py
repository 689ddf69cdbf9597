"""Pooled connections are pinged only after sitting idle: a dead idle one is replaced before use; a busy
process pays no round trip per transaction, and a connection that dies while hot fails once and is replaced."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError

from scheduler.db import make_engine, normalize_url, ping_when_idle, pool_options
from scheduler.settings import Settings

pytestmark = pytest.mark.postgres


@pytest.fixture
def one_connection(postgres_url: str) -> Iterator[Engine]:
    engine = create_engine(normalize_url(postgres_url), pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def kill_backend(pg_engine: Engine, pid: int) -> None:
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()


def test_an_idle_connection_that_died_is_replaced_before_use(one_connection: Engine, pg_engine: Engine) -> None:
    ping_when_idle(one_connection, idle_seconds=0.0)
    first = backend_pid(one_connection)
    kill_backend(pg_engine, first)
    # The next checkout finds it dead and hands out a fresh connection: the statement succeeds
    assert backend_pid(one_connection) != first


def test_a_busy_connection_is_not_pinged_and_one_that_died_fails_once(
    one_connection: Engine, pg_engine: Engine
) -> None:
    ping_when_idle(one_connection, idle_seconds=3600.0)
    statements: list[str] = []
    first = backend_pid(one_connection)

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(one_connection, "before_cursor_execute", record)
    assert backend_pid(one_connection) == first
    assert statements == ["SELECT pg_backend_pid()"]  # no ping before it
    kill_backend(pg_engine, first)
    with pytest.raises(OperationalError) as failed:
        backend_pid(one_connection)
    assert failed.value.connection_invalidated
    assert backend_pid(one_connection) != first


def test_a_pool_keeps_every_connection_it_opened_up_to_size_plus_overflow(postgres_url: str) -> None:
    # Given a process's pool with the default settings (5 + 10)
    engine = make_engine(postgres_url, **pool_options(Settings(database_url=postgres_url)))
    try:
        # When 8 requests are in flight at once, then none
        connections = [engine.connect() for _ in range(8)]
        pids = {int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in connections}
        for conn in connections:
            conn.close()
        # Then all 8 stay open for the next requests (none closed beyond the pool size), up to 15 at once
        assert engine.pool.checkedin() == 8  # type: ignore[attr-defined]
        again = [engine.connect() for _ in range(8)]
        assert {int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in again} == pids
        for conn in again:
            conn.close()
        assert pool_options(Settings(database_url=postgres_url, db_pool_size=2, db_max_overflow=1)) == {
            "pool_size": 3, "max_overflow": 0}
    finally:
        engine.dispose()
