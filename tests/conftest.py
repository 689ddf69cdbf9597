"""Fixtures per real service: SQLite and PostgreSQL databases, a Redis server, settings.

PostgreSQL tests run when ``SCHEDULER_TEST_POSTGRES_URL`` is set; with ``CI`` set they fail
instead of skipping when it is not. Redis is ``SCHEDULER_TEST_REDIS_URL`` or an embedded server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from cli.embedded import EmbeddedRedis
from scheduler.clock import FrozenClock
from scheduler.db import make_engine, make_session_factory, normalize_url
from scheduler.jobtypes import JobTypeRegistry, load_registry
from scheduler.migrate import upgrade
from scheduler.settings import Settings

IN_CI = bool(os.environ.get("CI"))


def _postgres_admin_url() -> str | None:
    url = os.environ.get("SCHEDULER_TEST_POSTGRES_URL")
    if not url:
        if IN_CI:
            pytest.fail("SCHEDULER_TEST_POSTGRES_URL is not set but CI is: PostgreSQL tests must run in CI")
        return None
    return normalize_url(url)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    admin = _postgres_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL tests need SCHEDULER_TEST_POSTGRES_URL")
    name = f"sched_test_{uuid.uuid4().hex[:10]}"
    admin_engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with admin_engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if IN_CI:
            raise
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    url = admin.rsplit("/", 1)[0] + "/" + name
    yield url
    with admin_engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin_engine.dispose()


def _truncate_all(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            tables = conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename NOT LIKE '%alembic%'")
            ).scalars().all()
            if tables:
                conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="session")
def _pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine(_pg_engine: Engine) -> Iterator[Engine]:
    """A migrated PostgreSQL engine with empty tables."""
    _truncate_all(_pg_engine)
    yield _pg_engine


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'scheduler.db'}"


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    """A migrated SQLite engine on a fresh file."""
    engine = make_engine(sqlite_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Each test using this runs on both SQLite and PostgreSQL."""
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def db_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as s:
        yield s


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis: ``SCHEDULER_TEST_REDIS_URL`` or an embedded server for the session."""
    url = os.environ.get("SCHEDULER_TEST_REDIS_URL")
    if url:
        try:
            redis.Redis.from_url(url).ping()
        except redis.RedisError as exc:
            pytest.fail(f"SCHEDULER_TEST_REDIS_URL={url} is unreachable: {exc}")
        yield url
        return
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield embedded.start()
    embedded.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        files_root=tmp_path / "files",
    )


@pytest.fixture
def registry(settings: Settings) -> JobTypeRegistry:
    return load_registry(settings)
