"""The system test's fixtures: the fault suite's process tools (``tests/faults/``) and a fresh PostgreSQL
database of the test's own, which the deployment migrates itself."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from scheduler.db import make_engine, normalize_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "faults"))

from process_fixtures import figures, print_figures, private_redis, processes  # noqa: F401  (fixtures)


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    print_figures(terminalreporter, "system", "system test: measured figures")
