"""The system test's fixtures: the fault suite's process tools (``tests/faults/faultkit.py``) and a fresh
PostgreSQL database of the test's own, which the deployment migrates itself."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from scheduler.db import make_engine, normalize_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "faults"))

from faultkit import Figures, PrivateRedis, Processes

FIGURES = Figures()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Lines of measured figures for the terminal summary."""
    lines: list[str] = []
    yield lines
    for line in lines:
        FIGURES.add(request.node.name, line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES.lines:
        terminalreporter.section("system test: measured figures")
        for line in FIGURES.lines:
            terminalreporter.write_line(line)


@pytest.fixture
def fresh_database_url(postgres_url: str) -> Iterator[str]:
    """An empty PostgreSQL database (no tables: ``scheduler migrate`` makes them), dropped afterwards."""
    admin = create_engine(normalize_url(postgres_url), isolation_level="AUTOCOMMIT")
    name = f"sched_system_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield postgres_url.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def fresh_engine(fresh_database_url: str) -> Iterator[Engine]:
    """An engine on that database, disposed before it is dropped."""
    engine = make_engine(fresh_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    procs = Processes(log_dir)
    yield procs
    procs.reap()
